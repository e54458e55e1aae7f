"""Reliability fixtures: the profile, the Kafka lanes per scenario, services of a test's own, the report.

The short profile runs with every `make test`; `pytest --long` adds the long one (items marked
`long`). `--reliability-report` writes the figures of the run to docs/reliability.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import LANES, _next_db
from tests.harness import services
from tests.reliability.profiles import PROFILES, Profile
from tests.reliability.report import REPORT_PROPERTY, Collector, Row, ScenarioRows

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep a reliability item only for its profile (long: with --long) and the lanes it applies to."""
    run_long = config.getoption("--long")
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if HERE not in item.path.parents or callspec is None:
            keep.append(item)
            continue
        profile = callspec.params.get("profile", "short")
        lane = callspec.params.get("kafka_broker")
        marker = item.get_closest_marker("lanes")
        lanes = LANES if marker is None else marker.kwargs.get(profile) or marker.args or LANES
        # `long` items (the long profile, or a variant only it runs) need --long, and never run short
        is_long = item.get_closest_marker("long") is not None
        if (is_long and (not run_long or profile == "short")) or (lane is not None and lane not in lanes):
            drop.append(item)
            continue
        pools = item.get_closest_marker("pools")  # pools(short="solo"): one pool in the short profile
        wanted = pools.kwargs.get(profile) if pools is not None else None
        if wanted is not None and callspec.params.get("pool") not in (None, wanted):
            drop.append(item)
            continue
        # a module may need more than its profile's timeout (the long nemesis run): PROFILE_TIMEOUTS
        timeout = getattr(item.module, "PROFILE_TIMEOUTS", {}).get(profile, PROFILES[profile].timeout)
        item.add_marker(pytest.mark.timeout(timeout))
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(params=["short", pytest.param("long", marks=pytest.mark.long)])
def profile(request: pytest.FixtureRequest) -> Profile:
    return PROFILES[request.param]


@pytest.fixture(params=["solo", "prefork"])
def pool(request: pytest.FixtureRequest) -> str:
    """The worker scenarios run on both pools: solo (`orders up`, compose) and prefork (the default)."""
    return str(request.param)


COLLECTOR = Collector()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the rows scenarios reported, in the process that runs the session (xdist's controller)."""
    for name, value in report.user_properties:
        if name == REPORT_PROPERTY and report.when == "call":
            COLLECTOR.add(Row.from_json(value))  # type: ignore[arg-type]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Every scenario's figures, whether or not the report is written; the report if asked for."""
    if not COLLECTOR.rows:
        return
    terminalreporter.section("reliability figures")
    for line in COLLECTOR.table():
        terminalreporter.write_line(line)
    path = config.getoption("--reliability-report")
    if path:
        COLLECTOR.write(Path(config.rootpath, path))


@pytest.fixture
def reliability_report(request: pytest.FixtureRequest) -> ScenarioRows:
    return ScenarioRows(request.node.user_properties)


@pytest.fixture
def spare_redis_db(redis_server: services.Running) -> str:
    """An empty database of the session Redis, for a service of the test's own (a registry)."""
    return f"{redis_server.url}/{next(_next_db)}"


@pytest.fixture
def own_redis(service_logs: Path) -> Iterator[Callable[..., services.Running]]:
    """Start redis-servers of the test's own (to kill, restart, or measure alone); stopped afterwards."""
    started: list[services.Running] = []

    def start(*extra_args: str) -> services.Running:
        running = services.start_redis(service_logs, extra_args=extra_args)
        started.append(running)
        return running

    yield start
    for running in started:
        running.service.stop()
