"""`orders bench`: throughput, latency and cost per order against Celery's ceiling and a blocking baseline."""
