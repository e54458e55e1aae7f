"""What the bridge and the worker share, importing nothing else of ours.

Settings, the order model, the codec (with the schema as package data), the librdkafka configs, the
error hierarchy, the dead-letter format, the Celery settings both sides use and the aggregate's layout.
"""
