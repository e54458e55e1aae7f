"""The Celery worker: `celery -A worker worker` finds the app in ``worker.celery``.

The task, its retry and dead-letter hooks, the Redis transport and the aggregate writes. It talks to the
bridge only through the Celery message and ``orders.core``, never by importing it.
"""
