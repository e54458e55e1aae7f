"""The ``checker`` fixture: a run's :class:`History`, saved under test-artifacts/, with logs on failure.

After the test: ``test-artifacts/checker/<test>/history.json`` always (and ``verdict.json`` when the
test called :meth:`CheckerRun.check`); if the test failed, the logs of every process the test's
pipeline started and of the Kafka cluster's nodes are copied beside them (with CHECKER_KEEP_LOGS set,
for a run that passed too).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.checker.history import History
from tests.checker.verdict import Target, Verdict, check

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "checker"
OUTCOME = pytest.StashKey[dict[str, pytest.TestReport]]()
KEEP_LOGS = "CHECKER_KEEP_LOGS"  # set: the logs are kept for a run that passed too


@dataclass
class CheckerRun:
    history: History
    directory: Path
    logs: list[Path] = field(default_factory=list)
    verdict: Verdict | None = None

    def check(self, target: Target, settle: float = 60.0) -> Verdict:
        self.verdict = check(target, settle)
        self.history.record("checked", target.orders_topic, self.verdict.summary())
        return self.verdict

    def keep_logs(self, *paths: Path) -> None:
        self.logs.extend(paths)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report = yield
    item.stash.setdefault(OUTCOME, {})[report.when] = report
    return report


@pytest.fixture
def checker(request: pytest.FixtureRequest) -> Iterator[CheckerRun]:
    name = re.sub(r"[^\w.-]+", "_", request.node.name)[:120]
    run = CheckerRun(History(request.node.nodeid), ARTIFACTS / name)
    shutil.rmtree(run.directory, ignore_errors=True)
    yield run
    run.history.save(run.directory)
    if run.verdict is not None:
        (run.directory / "verdict.json").write_text(run.verdict.to_json())
    reports = request.node.stash.get(OUTCOME, {})
    if any(report.failed for report in reports.values()) or os.environ.get(KEEP_LOGS):
        _copy_logs(run, request)


def _copy_logs(run: CheckerRun, request: pytest.FixtureRequest) -> None:
    paths = list(run.logs)
    for name in ("cluster_pipeline", "pipeline"):
        pipeline = request.node.funcargs.get(name)
        if pipeline is not None:
            paths += [service.log_path for service in pipeline.processes]
    cluster = request.node.funcargs.get("kafka_cluster")
    if cluster is not None:
        paths += [node.service.log_path for node in cluster.nodes]
    logs = run.directory / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for path in paths:
        if path.exists():
            shutil.copy(path, logs / path.name)
