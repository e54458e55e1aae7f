"""An independent checker of a pipeline run: what the topics and Redis say, read with code of its own.

It shares no code with the reliability suite's audit (tests/reliability/accounting.py, scenario.py) nor
with the product's codec or aggregate reads: its own topic reader (:mod:`.reader`), its own decoding of
the wire format with the writer schema fetched from the registry over HTTP (:mod:`.decode`), its own
Redis reads of the documented layout (:mod:`.redis_state`). A bug in one cannot hide in the other.

Use: ``verdict = check(Target(...), settle=60)``, then ``verdict.assert_clean()``; a :class:`History` of
the faults a test injected is saved under test-artifacts/ with the logs of a failed run
(:mod:`.fixtures`: the ``checker`` fixture).
"""

from tests.checker.history import History
from tests.checker.verdict import Target, Verdict, check

__all__ = ["History", "Target", "Verdict", "check"]
