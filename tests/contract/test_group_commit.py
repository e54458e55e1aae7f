"""What group commit on the solo pool (worker/group_commit.py) relies on: which pool a worker runs, a solo
task running and acked inside the transport's delivery, and a restored message marked redelivered."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis
from celery import Celery
from celery.concurrency import get_implementation
from celery.concurrency.solo import TaskPool as SoloPool
from celery.signals import worker_init
from kombu import Connection

from tests.contract.contract import Contract
from tests.contract.rig import FAST, ONE_LIST, publish
from tests.harness.services import REPO_ROOT

C7 = Contract(
    "C7", "celery", "worker_init's sender (the WorkController) carrying pool_cls, an alias or a class "
    "celery.concurrency.get_implementation resolves (solo: celery.concurrency.solo.TaskPool)",
    "worker/fast_path.py (install_group_commit)", "turning group commit on for the solo pool only; if the "
    "pool can no longer be told, it stays off (every write per task: slower, never wrong)",
    "celery/worker/worker.py: WorkController.__init__, setup_defaults; celery/concurrency/__init__.py",
)  # fmt: skip
C8 = Contract(
    "C8", "celery", "the solo pool running a task inside the transport's delivery of its message "
    "(Transport._deliver -> consumer callback -> strategy -> TaskPool.apply_async run inline), and "
    "deferring a late-ack task's ack (Request.acknowledge -> call_soon) to the event loop's next turn",
    "worker/transport.py (_deliver_fetched) and worker/group_commit.py", "a tick's writes joining one "
    "flush, made before any of the tick's acks can reach Redis; a task run later writes on its own "
    "(join returns False); an ack sent during the delivery would reach Redis before its order's write",
    "celery/concurrency/solo.py, celery/concurrency/base.py: apply_target; celery/worker/strategy.py; "
    "celery/worker/request.py: execute_using_pool, on_success, acknowledge; celery/worker/consumer/"
    "consumer.py: call_soon; kombu/asynchronous/hub.py: create_loop",
)  # fmt: skip
K17 = Contract(
    "K17", "kombu", "QoS.restore_by_tag(tag, leftmost=True) putting the message back with "
    "properties.delivery_info.redelivered = true (Channel._do_restore_message)",
    "worker/acks.py (hand_back) and worker/group_commit.py (Tick.deliver)", "a handed-back message "
    "writing on its own when it comes back: without the mark, an order claimed for the DLQ would join "
    "every batch, be handed back by every flush and never be dead-lettered",
    "kombu/transport/redis.py: QoS.restore_by_tag, Channel._do_restore_message",
)  # fmt: skip


# Building a WorkController finalizes the app, which takes in the shared tasks other tests registered.
@pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning")
def test_c7_worker_init_says_which_pool_the_worker_runs() -> None:
    app = Celery("contract-c7", broker="redis://127.0.0.1:1/0", set_as_current=False)
    seen: list[object] = []

    def receiver(sender: object, **_: object) -> None:
        seen.append(sender.pool_cls)  # type: ignore[attr-defined]

    worker_init.connect(receiver, weak=False)
    try:
        with C7.holds():
            for pool in ("solo", SoloPool, "prefork"):
                app.WorkController(pool_cls=pool, hostname="c7@localhost")
            resolved = [get_implementation(p) for p in seen]
            assert resolved[:2] == [SoloPool, SoloPool], f"solo resolved to {resolved[:2]}"
            assert not issubclass(resolved[2], SoloPool), f"prefork resolved to {resolved[2]}"
    finally:
        worker_init.disconnect(receiver)


def test_c8_a_solo_task_runs_inside_the_delivery_and_its_ack_comes_after_it(redis_url: str) -> None:
    """A real solo worker, in a process of its own (tests/contract/group_commit_probe.py)."""
    with C8.holds():
        probe = [sys.executable, "-m", "tests.contract.group_commit_probe", redis_url]
        done = subprocess.run(probe, capture_output=True, text=True, timeout=90, cwd=REPO_ROOT)
        last = (done.stdout.strip() or done.stderr.strip()).splitlines()[-1:] or ["no output"]
        assert done.returncode == 0, last[0]


def test_k17_a_handed_back_message_comes_back_marked_redelivered(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    publish(redis_url, "k17", range(1))
    with K17.holds(), Connection(redis_url, transport=FAST, transport_options=ONE_LIST) as conn:
        queue = conn.SimpleQueue("k17")
        message = queue.get(timeout=5)
        assert not message.delivery_info.get("redelivered"), "a first delivery is marked redelivered"
        queue.channel.qos.hand_back(message.delivery_tag)
        raw = client.lrange("k17", 0, -1)
        assert len(raw) == 1 and client.hlen("unacked") == 0, (
            f"queue {len(raw)}, unacked {client.hlen('unacked')}"
        )
        info = json.loads(raw[0])["properties"]["delivery_info"]
        assert info.get("redelivered") is True, f"restored with delivery_info {info}"
        queue.channel.qos._delivered.clear()  # nothing for the channel's close to restore
