"""The bridge process: consume `orders`, decode, validate, hand each order to Celery, commit.

Run it with `orders bridge` or `python -m bridge`. It talks to the worker only through the Celery
message and ``orders.core`` (task name, payload shape, Celery settings), never by importing it.
"""
