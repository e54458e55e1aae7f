"""The fast path: where the worker overrides Celery's, kombu's and billiard's private internals.

- **The Redis transport** (worker/transport.py + fetch.lua): one client per channel; a message taken off
  the queue and recorded unacknowledged in one script, so a worker killed in between loses nothing
  (celery/kombu#305); up to the prefetch budget per fetch, acks riding with the next fetch; leases renewed
  while a worker holds a message, so the visibility timeout can be short. Chosen by Celery's
  ``broker_transport`` setting (orders/core/celery_config.py), in the workers and the bridge's sender.
- **Lazy retry tracebacks** (worker/retry_info.py): a Retry's traceback is formatted only if read.
  :func:`install` puts it in place when a worker starts, before any pool forks.
- **Group commit on the solo pool** (worker/group_commit.py, with the transport): the aggregate writes of
  one fetch's tasks in one pipeline at the end of the tick, their acks held until it answers.
  :func:`install_group_commit` turns it on at ``worker_init`` for the solo pool (WORKER_GROUP_COMMIT).
- **Delayed delivery through one node** (worker/delayed_delivery.py): on a RabbitMQ cluster with a node
  down, Celery's own setup waits on that node at every connection (a fix, not a speed-up).

``ORDERS_STOCK_CELERY=true`` turns off all of them: kombu's Redis transport, Celery's tracer and its
consumer as shipped (the stock lane), and the bridge's message templates with them (H4, H5 below). The
README says which guarantees differ there; docs/benchmarks.md measures both paths.

Every non-public name or behaviour the fast path relies on is below, with the id of its contract test in
tests/contract/ (run first by ``make test``). Each test names what breaks without it and what to re-read
upstream; ``make canary`` runs them on the newest kombu and Celery 5.x before a pin moves. All were
checked against kombu 5.7.0, Celery 5.7.0, billiard 4.3.2 and py-amqp 5.4.2 (``CHECKED_AGAINST`` in
tests/contract/contract.py).

kombu, kombu/transport/redis.py (used by worker/transport.py, acks.py, sentinel_transport.py,
publish_wait.py and fetch.lua):
  K1  ``super(kombu_redis.QoS, self).append/ack`` skip the Redis QoS on purpose: the parent,
      ``virtual.QoS``, keeps only the in-memory bookkeeping (fetch.lua recorded the message already;
      the ack rides with the next fetch).
  K2  ``QoS._delivered`` and ``QoS._dirty``: the tags a channel holds and those acked but not yet
      flushed; the lease renewal reads them.
  K3  the unacked hash and index fetch.lua writes itself: ``unacked[tag] = [message, exchange,
      routing_key]`` and ``unacked_index[tag] = time``, as ``QoS.append`` writes them, taking from the
      right of the list kombu pushes to on the left; the message's ``properties.delivery_tag`` and
      ``delivery_info``.
  K4  kombu's restore paths read those entries back: the sweep (``QoS.restore_visible``), a requeue
      (``restore_by_tag``) and a closing channel (``Channel._restore``).
  K5  the fetch hooks: ``MultiChannelPoller`` fetches through ``Channel._brpop_start(timeout)`` and
      ``handlers["BRPOP"]`` (``_brpop_read(**options)``); ``_in_poll`` and ``_brpop_sent_at`` mark the
      command in flight (pause and health check); ``_flush_brpop_reauth()`` after each reply; ``Empty``.
  K6  a fetched message is delivered by ``_queue_cycle.rotate(queue)`` and ``connection._deliver(message,
      queue)``, as ``_brpop_read`` does.
  K7  ``_q_for_pri(queue, 0)`` names a queue's one list (``priority_steps`` [0]); ``global_keyprefix``
      and ``active_queues`` decide when kombu's BRPOP serves instead.
  K8  ``QoS.can_consume_max_estimate()``: the prefetch budget left, how many one fetch may take.
  K9  ``Channel.conn_or_acquire(client=None)`` is how the channel and its QoS get a client to publish,
      ack and restore; ``_create_client()`` builds one on ``pool``; ``_pool`` is None once
      ``_disconnect_pools`` dropped a broken pool (the kept client is then rebuilt).
  K10 ``Transport.__init__`` makes ``self.cycle`` the MultiChannelPoller every channel adds itself to
      (``_channels``), and ``register_with_event_loop`` calls its ``on_poll_init(poller)`` once and
      ``on_poll_start()`` every tick: replaced by ours, which sends the acks no fetch took and renews
      leases each tick.
  K11 ``Channel.basic_consume(queue, no_ack, ...)``: a no-ack consumer's messages are not recorded.
  K12 ``Channel.close`` restores what the channel holds through ``QoS.restore_unacked(client=None)``;
      ours sends pending acks first.
  K13 the ``unacked_restore_interval`` and ``unacked_restore_throttle`` transport options (new in 5.7,
      public): a dead worker's orders come back within the visibility timeout + 10 s, not + 100 s.
  K14 ``SentinelChannel._sentinel_managed_pool(asynchronous)`` makes the pool ``_get_pool`` uses, from
      ``_connparams`` and the ``master_name``/``sentinel_kwargs`` options, and keeps the client in
      ``_sentinel_manager``; ``Connection.switch`` to the next ``;`` URL takes its scheme as the transport,
      so one URL is given (worker/sentinel_transport.py: the broker on Sentinel).
  K15 ``PublishBatch.pipeline``: the redis-py pipeline ``flush()`` executes once per batch
      (worker/publish_wait.py appends the hand-off's WAIT to it).
  K16 ``QoS.reject`` writes to Redis before ``virtual.QoS.ack`` forgets the tag (worker/acks.py: a
      reject the broker refuses leaves the message unacknowledged for the sweep).
  K17 ``QoS.restore_by_tag(tag, leftmost=True)`` puts a message back marked
      ``properties.delivery_info.redelivered`` (``Channel._do_restore_message``): the group commit hands
      a message back that way, and a redelivered message writes on its own, never in a batch.

Celery (used by worker/retry_info.py, worker/group_commit.py and this module):
  C1  ``celery.app.trace`` looks ``ExceptionInfo`` up as a module global each time a task raises Retry,
      so :func:`worker.retry_info.install` replacing it reaches the tracer.
  C2  ``Request.on_retry(exc_info)``: acks a late-ack task, then sends ``task-retried`` with the
      exception's repr and the traceback text. ``RetryAwareRequest.on_retry`` repeats that body.
  C3  ``Request._eventer``: ``send_event`` sends if it is enabled and ``task.send_events``;
      ``EventDispatcher.send`` drops a group missing from a non-empty ``groups``.
  C4  ``Task.Request`` is read when the worker's consumer builds its strategies, after ``worker_init``
      (public, but :func:`install` depends on the order).
  C6  ``Consumer.Blueprint.default_steps`` names ``celery.worker.consumer.delayed_delivery:DelayedDelivery``
      (included when a quorum queue is configured, after ``Tasks``): worker/delayed_delivery.py swaps it
      for a step that sets native delayed delivery up through one node that answers (Celery's public
      ``worker_consumer`` setting selects that consumer).

  C7  ``worker_init``'s sender carries ``pool_cls`` (an alias or a class), which
      ``celery.concurrency.get_implementation`` resolves: group commit is turned on for the solo pool only.
  C8  the solo pool runs a task inside the transport's delivery of its message (``Transport._deliver``,
      the consumer's strategy, ``TaskPool.apply_async`` inline), and a late-ack task's ack is deferred
      (``Request.acknowledge`` -> ``call_soon``) to the loop's next turn: worker/transport.py's
      ``_deliver_fetched`` is a group commit's tick, flushed before any of its acks can be sent.

Celery's per-task log lines (used by worker/task_log.py, TASK_SUCCESS_LOG; not part of the fast path):
  C5  "Task ... received" is logged on ``celery.worker.strategy`` (its only INFO line, gated by one
      ``isEnabledFor(INFO)`` when the consumer builds its strategies); "Task ... succeeded" on
      ``celery.app.trace`` with ``LOG_SUCCESS`` as the record's msg, beside the retry and failure lines.

billiard, billiard/einfo.py (used by worker/retry_info.py):
  B1  ``ExceptionInfo.__init__`` sets ``type``, ``exception``, ``tb``, ``traceback`` and ``internal``,
      nothing else: RetryInfo skips it and computes each when read.
  B2  ``ExceptionWithTraceback(exc, tb)`` keeps ``exc`` and ``tb`` (the text between triple quotes) and
      pickles as ``rebuild_exc(exc, tb)``; the lazy one skips its ``__init__``.

The bridge's hand-off (bridge/handoff.py, amqp_handoff.py; the bridge never imports this module):
  H1  Celery's ``app.amqp.create_task_message`` and ``send_task_message(..., declare=)`` build and send
      what ``send_task`` sends (``anon_nodename()`` and ``app.thread_oid`` as its origin and reply-to);
      ``declare=[]`` declares nothing, so the queue is declared with the first batch only.
  H2  kombu's ``Producer.batch`` (public, new in 5.7) pipelines a batch on the Redis transport; where
      ``supports_batch_publish`` is false it publishes one by one without a word.
  H3  py-amqp's ``Channel.events["basic_ack" | "basic_nack" | "basic_return"]`` callbacks and their
      arguments: the per-batch publisher confirms.
  H4  kombu's Redis message (bridge/task_message.py): virtual ``Channel.prepare_message`` and
      ``_inplace_augment_message`` lay it out (base64 body, content type and encoding, headers,
      properties with delivery mode, delivery info, priority, body encoding, a uuid4 delivery tag) and
      ``Channel._put`` pushes it as one JSON string; ``Channel.create_publish_batch(max_size).pipeline``
      is a redis-py pipeline executed once per batch (bridge/handoff.py pushes a batch's messages there).
  H5  py-amqp's frame writer (bridge/amqp_message.py) takes a message's encoded properties from
      ``content._serialize_properties()`` and a bytes body as it is; ``Message.PROPERTIES`` and
      ``serialization.dumps`` encode them as the template does.

redis-py's Cluster client (orders/core/redis_cluster.py, the aggregate on a Redis Cluster; not the fast
path, listed here so that every contract test has one list; checked against redis-py 8.2.0):
  R1  ``RedisCluster.get_node_from_key(key)`` answers from the cached slot map with the slot's primary,
      and ``get_redis_connection(node)`` is that node's own ``redis.Redis`` (node_for: a script and its
      WAIT on the node that took the write).
  R2  ``nodes_manager.initialize()`` re-reads ``CLUSTER SLOTS`` at once (refresh_routes).
  R3  ``connection_pool_class`` reaches ``NodesManager``, which builds each node's pool with it (the
      one way to give nodes ``health_check_interval``, which RedisCluster drops); node clients never
      retry on their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Task
from celery.concurrency import get_implementation
from celery.concurrency.solo import TaskPool as SoloPool

from worker import group_commit, metrics, retry_info
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)

# The task's Request class on the fast path (C4); Celery's own otherwise.
REQUEST = "worker.retry_info:RetryAwareRequest"


def install(settings: WorkerSettings, task_class: type[Task]) -> None:
    """The worker's half of the fast path (the transport is chosen by the Celery settings), unless
    ``ORDERS_STOCK_CELERY`` asks for Celery as shipped. Call it before the consumer starts: at
    ``worker_init`` (worker/tasks.py does), with the tasks' base class."""
    if settings.stock_celery:
        log.info("ORDERS_STOCK_CELERY: kombu's Redis transport and Celery's retry tracebacks, as shipped")
        return
    retry_info.install()
    task_class.Request = REQUEST


def install_group_commit(
    settings: WorkerSettings,
    pool: Any,
    writer: Callable[[], group_commit.BatchWriter],
    tracing: group_commit.Tracing | None = None,
) -> bool:
    """Group commit (worker/group_commit.py) where it applies: solo pool, fast path, WORKER_GROUP_COMMIT.

    ``pool`` is the ``worker_init`` sender's ``pool_cls``, an alias or a class (C7). On prefork the child
    runs the task and the parent acks it: nothing to batch, so every pool but solo writes per task.
    """
    solo = isinstance(cls := get_implementation(pool), type) and issubclass(cls, SoloPool)
    if not (solo and settings.group_commit and not settings.stock_celery):
        group_commit.disable()
        return False
    group_commit.enable(group_commit.Setup(writer, settings.test_kill_at, tracing, _observe_flush))
    log.info("group commit on: a tick's aggregate writes in one pipeline, its acks after it")
    return True


def _observe_flush(orders: int, handed_back: int) -> None:
    metrics.GROUP_COMMIT_ORDERS.observe(orders)
    metrics.GROUP_COMMIT_HANDED_BACK.inc(handed_back)
