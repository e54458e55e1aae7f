"""Contract tests: the private names and behaviours of kombu, Celery and billiard the fast path relies on.

worker/transport.py, fetch.lua and worker/retry_info.py (the fast path, listed in worker/fast_path.py)
and the bridge's hand-off reach into their libraries' internals for speed and for guarantees stock kombu
lacks. A minor release may rename or change any of them, and some changes would not fail loudly: the
speed-up would stop, or a message would be recorded in a format kombu no longer reads back. Each test
here checks one of them, by behaviour where it can (on a real redis-server, never a fake), and names it
with the id worker/fast_path.py's docstring gives it (K1-K13 kombu, C1-C4 Celery, B1-B2 billiard, H1-H3
the hand-off).

A broken contract fails with one message and no traceback: the contract's id, the installed version,
what is gone or changed, which of our files relies on it and for what, the upstream file and function to
re-read, and the versions it was last checked against (``CHECKED_AGAINST`` in contract.py). Until the
override is fixed, ``ORDERS_STOCK_CELERY=true`` runs the pipeline without the fast path (the stock lane).

Running them:
- ``make test`` runs this directory first, as a pytest call of its own, so a broken contract stops it
  before any pipeline test; the suite's second call leaves this directory out.
- ``make canary`` (not part of CI) installs the newest kombu and Celery 5.x into a scratch virtualenv and
  runs only these: do that before moving a pin (README, "Pinned versions"), fix what fails, then raise the
  pins and ``CHECKED_AGAINST`` together.
- ``python -m pytest tests/contract -q`` on its own needs only redis-server.
"""
