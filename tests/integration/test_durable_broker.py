"""`orders up --broker kafka`: Apache Kafka in KRaft mode with its log in --data-dir, so a restart keeps
the topics and their records, and everyday Kafka tools (Debian's kcat) talk to it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from confluent_kafka.admin import AdminClient

from orders.core.settings import Settings
from orders.stack import services
from orders.stack.stack import Stack, StackOptions, new_stack, start_services
from tests.conftest import unavailable
from tests.harness.kafka_io import produce_raw, read_topic


def started(options: StackOptions) -> Stack:
    stack = new_stack(Settings.from_env({}, env_file=None), options)
    try:
        start_services(stack)
    except BaseException:
        stack.stop()
        raise
    return stack


def test_a_restart_keeps_the_topics_and_records_and_kcat_reads_them(tmp_path: Path) -> None:
    try:
        services.ensure_kafka_jars()
    except services.Unavailable as exc:
        unavailable(str(exc))
    if shutil.which("kcat") is None:
        unavailable("kcat is not on PATH: apt-get install kcat (or make setup)")
    data = tmp_path / "data"
    # Free ports, not the conventional ones: other tests may run `orders up` meanwhile.
    options = StackOptions(broker="kafka", data_dir=data, kafka_port=0, redis_port=0, registry_port=0)

    first = started(options)
    try:
        assert first.env["KAFKA_BOOTSTRAP_SERVERS"] == first.urls["kafka"]
        assert "KAFKA_SESSION_TIMEOUT_MS" not in first.env  # Tansu's workaround only
        produce_raw(first.urls["kafka"], "orders", [(b"o-1", b"kept across the restart")])
        produce_raw(first.urls["kafka"], "orders-dlq", [(b"o-2", b"dead letter")])
    finally:
        first.stop()
    assert (data / "kafka" / "logs" / "meta.properties").exists()

    second = started(options)
    try:
        bootstrap = second.urls["kafka"]
        topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
        assert len(topics["orders"].partitions) == 3 and len(topics["orders-dlq"].partitions) == 1
        assert [m.value() for m in read_topic(bootstrap, "orders", 1)] == [b"kept across the restart"]
        listing = subprocess.run(["kcat", "-b", bootstrap, "-L"], capture_output=True, text=True, timeout=30)
        assert listing.returncode == 0, listing.stderr
        assert 'topic "orders" with 3 partitions' in listing.stdout
        letters = subprocess.run(
            ["kcat", "-b", bootstrap, "-C", "-t", "orders-dlq", "-e", "-f", "%k=%s\\n"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert letters.returncode == 0 and "o-2=dead letter" in letters.stdout, letters.stderr
    finally:
        second.stop()
