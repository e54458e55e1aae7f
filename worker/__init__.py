"""The Celery side of the order pipeline; `celery -A worker worker` finds the app in `worker.celery`."""
