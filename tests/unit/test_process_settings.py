"""Each process's own settings: it reads and validates its variables and the shared ones, and no other's."""

from __future__ import annotations

import inspect

import pytest

from bridge.settings import BridgeSettings
from orders.bench.settings import BenchSettings
from orders.core.celery_config import check_dedupe_window
from orders.core.settings import Settings, SettingsError, same_database
from orders.dashboard.settings import DashboardSettings
from orders.registry.settings import RegistrySettings
from worker.settings import WorkerSettings

PROCESSES: list[type[Settings]] = [
    Settings,
    BridgeSettings,
    WorkerSettings,
    DashboardSettings,
    RegistrySettings,
    BenchSettings,
]


@pytest.mark.parametrize(
    ("variable", "bad", "readers"),
    [
        ("DASHBOARD_PUBLIC_URLS", "localhost:8050", {DashboardSettings}),
        ("REGISTRY_BASIC_AUTH", "no-colon", {RegistrySettings}),
        ("REGISTRY_REDIS_URL", "http://x", {RegistrySettings}),
        ("FAILURE_RATE", "1.5", {WorkerSettings, BenchSettings}),
        ("DEDUPE_TTL_SECONDS", "0", {WorkerSettings, BenchSettings}),
        ("TASK_EVENTS", "maybe", {WorkerSettings, BenchSettings}),
        ("TASK_SUCCESS_LOG", "maybe", {WorkerSettings, BenchSettings}),
        ("MAX_QUEUE_DEPTH", "1", {BridgeSettings}),
        ("BRIDGE_BATCH_SIZE", "0", {BridgeSettings}),
        ("BRIDGE_REJOIN_TIMEOUT", "-1", {BridgeSettings}),
        ("BRIDGE_HANDOFF", "fast", {BridgeSettings}),
    ],
)
def test_a_bad_variable_stops_only_the_processes_that_read_it(
    variable: str, bad: str, readers: set[type[Settings]]
) -> None:
    """A malformed DASHBOARD_PUBLIC_URLS used to stop every worker and bridge: one class read it all."""
    for kind in PROCESSES:
        if kind in readers:
            with pytest.raises(SettingsError, match=variable):
                kind.from_env({variable: bad}, env_file=None)
        else:
            assert variable not in kind.from_env({variable: bad}, env_file=None).redacted(), kind.__name__


@pytest.mark.parametrize("kind", PROCESSES)
def test_a_bad_shared_variable_stops_every_process(kind: type[Settings]) -> None:
    with pytest.raises(SettingsError, match="MAX_RETRIES"):
        kind.from_env({"MAX_RETRIES": "three"}, env_file=None)


def test_each_variable_has_one_owner() -> None:
    """No process re-declares a shared variable or another's (a second default could drift)."""
    owners: dict[str, str] = {}
    for kind in (Settings, BridgeSettings, WorkerSettings, DashboardSettings, RegistrySettings):
        for name in inspect.get_annotations(kind):  # the fields this class declares itself
            assert name not in owners, f"{name}: {owners[name]} and {kind.__name__}"
            owners[name] = kind.__name__
    assert owners["dashboard_token"] == "DashboardSettings"
    assert owners["registry_basic_auth"] == "RegistrySettings"
    assert owners["max_queue_depth"] == "BridgeSettings"
    assert owners["failure_injection"] == "WorkerSettings"


def test_the_worker_defaults() -> None:
    s = WorkerSettings.from_env({}, env_file=None)
    assert (s.failure_injection, s.failure_rate, s.task_events, s.max_products) == (False, 0.0, False, 1000)
    assert WorkerSettings.from_env({"FAILURE_INJECTION": "true"}, env_file=None).failure_injection is True
    check_dedupe_window(s, s.dedupe_ttl_seconds)  # the default (a day) is enough


def test_the_bridge_defaults() -> None:
    s = BridgeSettings.from_env({}, env_file=None)
    assert (s.max_queue_depth, s.bridge_batch_size, s.bridge_rejoin_timeout) == (10_000, 500, 360.0)
    assert s.bridge_handoff == "template"


def test_dashboard_origins_are_checked() -> None:
    def build(**env: str) -> DashboardSettings:
        return DashboardSettings.from_env(env, env_file=None)

    s = build(DASHBOARD_PUBLIC_URLS="http://LocalHost:8050/, https://dash.example.com")
    assert s.dashboard_public_urls == ("http://localhost:8050", "https://dash.example.com")
    assert build().dashboard_public_urls == ()
    for bad in ("localhost:8050", "http://x.example/dashboard", "ftp://x.example"):
        with pytest.raises(SettingsError, match="DASHBOARD_PUBLIC_URLS"):
            build(DASHBOARD_PUBLIC_URLS=bad)


def test_the_dashboard_token_never_shows() -> None:
    s = DashboardSettings.from_env({"DASHBOARD_TOKEN": "hunter2hunter2hunter2"}, env_file=None)
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.redacted())
    assert s.dashboard_token is not None and s.dashboard_token.get_secret_value() == "hunter2hunter2hunter2"


def test_registry_credentials_are_checked_and_never_echoed() -> None:
    for bad in ("user", "user:", ":pw"):
        with pytest.raises(SettingsError, match="REGISTRY_BASIC_AUTH") as raised:
            RegistrySettings.from_env({"REGISTRY_BASIC_AUTH": bad}, env_file=None)
        assert "got" not in str(raised.value)
    s = RegistrySettings.from_env({"REGISTRY_BASIC_AUTH": "registry:hunter2"}, env_file=None)
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.redacted())


def test_the_registrys_rediss_url_must_say_how_the_certificate_is_checked() -> None:
    with pytest.raises(SettingsError, match=r"REGISTRY_REDIS_URL: .*ssl_cert_reqs=required"):
        RegistrySettings.from_env({"REGISTRY_REDIS_URL": "rediss://:hunter2@redis:6380/2"}, env_file=None)


@pytest.mark.parametrize(
    ("redis_url", "registry_url"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/2"),
        ("redis://:pw@redis:6380/7", "redis://:pw@redis:6380/2"),
        ("unix:///run/redis.sock?db=0", "unix:///run/redis.sock?db=2"),
    ],
)
def test_the_dev_registry_keeps_its_schemas_in_a_database_of_its_own(
    redis_url: str, registry_url: str
) -> None:
    def build(**env: str) -> RegistrySettings:
        return RegistrySettings.from_env(env, env_file=None)

    s = build(REDIS_URL=redis_url)
    assert s.registry_redis_url == registry_url
    assert not same_database(s.registry_redis_url, s.redis_url)
    assert build(REDIS_URL=redis_url, REGISTRY_REDIS_URL="redis://other:6379/0").registry_redis_url == (
        "redis://other:6379/0"
    )


def test_from_env_reads_the_mapping_it_is_given_and_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    """pydantic-settings' own sources read os.environ behind the mapping: a process environment's
    DASHBOARD_PUBLIC_URLS (compose sets one) failed JSON parsing there, in an error showing every variable."""
    monkeypatch.setenv("ORDERS_TOPIC", "from-os-environ")
    monkeypatch.setenv("DASHBOARD_PUBLIC_URLS", "http://localhost:8050")
    monkeypatch.setenv("SOME_SECRET", "hunter2")
    assert Settings.from_env({}, env_file=None).orders_topic == "orders"
    assert DashboardSettings.from_env({}, env_file=None).dashboard_public_urls == ()
    # Without a mapping, the process environment is the mapping: parsed by our validators alone.
    from_process = DashboardSettings.from_env(env_file=None)
    assert from_process.dashboard_public_urls == ("http://localhost:8050",)
    assert from_process.orders_topic == "from-os-environ"
    monkeypatch.setenv("DASHBOARD_PUBLIC_URLS", "localhost:8050")
    with pytest.raises(SettingsError, match="DASHBOARD_PUBLIC_URLS") as raised:
        DashboardSettings.from_env(env_file=None)
    assert "hunter2" not in str(raised.value)
