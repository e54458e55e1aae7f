"""The replicated Kafka lane itself: three replicas everywhere, two in sync required, and a follower cut off
silently leaves the ISR while acks=all writes go on (min.insync.replicas=2)."""

from __future__ import annotations

import time

from confluent_kafka import Producer
from confluent_kafka.admin import ConfigResource, ResourceType

from orders.stack.kafka_cluster import KafkaCluster
from orders.stack.supervisor import wait_for
from tests.harness.kafka_fixtures import NetworkPipeline
from tests.harness.netns import TestNetwork

INTERNAL = "__consumer_offsets"


def topic_config(cluster: KafkaCluster, topic: str) -> dict[str, str]:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    admin = cluster.admin()  # kept until the future resolves
    entries = admin.describe_configs([resource])[resource].result(timeout=10)
    return {name: entry.value for name, entry in entries.items()}


def test_every_topic_has_three_replicas_two_in_sync_and_no_unclean_election(
    cluster_pipeline: NetworkPipeline,
) -> None:
    cluster = cluster_pipeline.cluster
    metadata = cluster.metadata()
    assert len(metadata.brokers) == 3
    for topic in (cluster_pipeline.orders_topic, cluster_pipeline.dlq_topic, INTERNAL):
        partitions = metadata.topics[topic].partitions.values()
        assert partitions and all(len(p.replicas) == 3 and len(p.isrs) == 3 for p in partitions), topic
        config = topic_config(cluster, topic)
        assert config["min.insync.replicas"] == "2", topic
        assert config["unclean.leader.election.enable"] == "false", topic


def test_a_follower_cut_off_silently_leaves_the_isr_and_acks_all_writes_go_on(
    cluster_pipeline: NetworkPipeline, test_network: TestNetwork
) -> None:
    cluster, topic = cluster_pipeline.cluster, cluster_pipeline.orders_topic
    leader = cluster.leader_of(topic, 0)
    follower = next(node for node in cluster.nodes if node is not leader)
    test_network.isolate(test_network.node_at(follower.host.address))
    cut_at = time.monotonic()
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True})
    errors: list[object] = []
    for i in range(20):
        producer.produce(
            topic, b"x", f"k{i}".encode(), partition=0, on_delivery=lambda e, _m: e and errors.append(e)
        )
    assert producer.flush(60) == 0 and not errors, errors
    acked_after = time.monotonic() - cut_at

    def isr() -> list[int]:
        return sorted(cluster.metadata().topics[topic].partitions[0].isrs)

    wait_for(lambda: follower.node_id not in isr(), 30, "the isolated follower to leave the ISR")
    assert len(isr()) == 2
    print(f"acks=all writes acknowledged {acked_after:.1f}s after the cut; ISR now {isr()}")
