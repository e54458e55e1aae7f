"""How each figure of `orders bench` is measured: the text of docs/benchmarks.md's section of that name."""

from __future__ import annotations

METHODS = (
    "**no-op ceilings**: N no-op tasks are published (pipelined batches of 500) under a staging key while "
    "the workers start; once every worker is ready the list is renamed into the queue in one step. "
    "Completed = N - queue length - kombu's unacked hash, polled every 5 ms; the rate runs from the first "
    "completion seen to the queue and the unacked hash being empty. *Project configuration*: the "
    "workers' own Celery settings (late acks, task events, ...) on our Redis transport, or on kombu's "
    "(`ORDERS_STOCK_CELERY=true`). *Plain Celery app*: `orders/bench/plain.py`, every setting at its "
    "default (early acks, prefetch 4, kombu's transport), with `-E` for events on.",
    "**drain**: N orders are produced into a fresh topic (3 partitions) first; then the workers start, "
    "then `orders bridge`. The clock runs from the bridge joining its consumer group to the last "
    "aggregate write. No producer in the clock. *As shipped*: the same drain in the same bench run, "
    "with `ORDERS_STOCK_CELERY=true` on the workers and the bridge (kombu's Redis transport and "
    "Celery's retry tracebacks instead of the fast path, `worker/fast_path.py`).",
    "**ratio phases, interleaved**: the project ceiling, the plain ceiling and the drain are measured in "
    "rounds (ceiling, plain, drain, ceiling, plain, drain, ...), one run of each per round, so a "
    "round's runs are minutes apart at most. A ratio of two of them is the median of the per-round "
    "ratios, with their range (lowest and highest pair); other ratios are ratios of medians.",
    "**A/B phases** (`orders/bench/ab.py`): the drain with one change off, then on, in turns, "
    "`--repeat` pairs; each side's figures are medians, the on / off ratios are per pair (median and "
    "range). The switch is an environment variable of the bridge or the workers.",
    "**e2e live**: workers and bridge running; the bench's producer (its own process) sends N orders "
    "as fast as it can; rate = N / (last aggregate write - first send): producer, broker and pipeline "
    "share the two cores. *Intake*: N / (last order's first attempt - first send). The *backlog wait* "
    "is each order's time from its record timestamp to being aggregated: at full speed that is time "
    "spent queued, not a latency.",
    "**latency at half the drain rate**: the producer paces N orders at half the median drain rate; "
    "each order's latency runs from its *intended* send time (first send + sequence / rate, so a "
    "producer held back hides no wait) to the end of the task that aggregated it, recorded by every "
    "worker (`orders/bench/probe.py`, a `task_postrun` receiver). Quantiles are exact (nearest rank "
    "over all N values).",
    "**10% transient failures**: the same live run with `FAILURE_RATE=0.1`, a fixed `FAILURE_SEED` "
    "and fixed order ids, so every repeat meets the same failures, on the product's backoff "
    "(`RETRY_BACKOFF_BASE=2`: 2, 4, 8 s, then the DLQ). Intake as above; *settled per second* = N / "
    "(last order settled - first send); the last settle is also given after the last intake.",
    "**bridge alone**: N orders pre-produced, no worker, `MAX_QUEUE_DEPTH` above N; rate from the first "
    "batch landing in the Celery queue to the queue holding N.",
    "**baseline**: one consumer (`orders/bench/baseline.py`) that decodes and records each order inline "
    "and, on an injected transient failure, sleeps in its poll loop on the same 2, 4, 8 s schedule, "
    "then gives up; over the first orders of the failure runs' topic with the same seed, so it meets "
    "the same failures; orders done / time from its first record.",
    "**CPU per order**: user + system CPU (psutil) of every process of the run (and its children) over "
    "the measured window, divided by N: the bench's producer (its own figure), the Kafka broker, the "
    "bridge, the workers, RabbitMQ, Redis, the registry. *Redis command time* is the server's own "
    "execution time from `INFO commandstats` (no network I/O). The ceilings count the workers and Redis.",
    "**Apache Kafka / RabbitMQ lanes**: the drain and the half-rate latency again with Apache Kafka "
    "4.1.1 (from the cached jars) in place of Tansu, then also with a private RabbitMQ node as Celery's "
    "broker; half of that lane's own drain rate.",
)
