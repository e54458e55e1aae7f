"""docker-compose.yml, Dockerfile and .env.example, checked without a Docker engine.

The file is validated by Debian's `docker-compose config` (the Compose Specification schema plus
references between services and volumes); the rest reads the YAML: every project command must exist
in `orders` or be a valid `celery -A worker` invocation, and the start order, persistence, secrets
and scaling the README promises must be in the file.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from dotenv import dotenv_values

from bridge.settings import BridgeSettings
from orders.cli import TOOLS
from orders.cli import main as orders_cli
from orders.core.settings import KAFKA_PREFIX, Settings
from orders.dashboard.settings import DashboardSettings
from orders.registry.settings import RegistrySettings
from tests.harness import imports
from worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
# Replicated Redis: `docker compose -f docker-compose.yml -f docker-compose.ha.yml up`
HA_FILE = ROOT / "docker-compose.ha.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROJECT_IMAGE = "orders-pipeline:local"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# Services whose `orders` subcommand has not landed yet. Each must sit behind a compose profile, so a
# plain `docker compose up` never starts it; once the command exists this list must drop it.
PENDING_COMMANDS: dict[str, str] = {}

# What each project service must wait for, and how.
HEALTHY, COMPLETED = "service_healthy", "service_completed_successfully"
REQUIRED_DEPENDENCIES = {
    "worker": {"redis": HEALTHY, "kafka-init": COMPLETED},
    "bridge": {"redis": HEALTHY, "schema-registry": HEALTHY, "kafka-init": COMPLETED},
    "producer": {"schema-registry": HEALTHY, "kafka-init": COMPLETED},
    "flower": {"redis": HEALTHY},
}

# --- reading the file -----------------------------------------------------------------------------

_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))"
)


def interpolate(text: str, env: dict[str, str], seen: set[str] | None = None) -> str:
    """Compose's interpolation: ``$$``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?e}``."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        if seen is not None:
            seen.add(name)
        value = env.get(name)
        missing = not value if op and op.startswith(":") else value is None
        if op and op.endswith("?") and missing:
            raise ValueError(f"{name} is required: {arg}")
        if op and op.endswith("-") and missing:
            return arg
        return value or ""

    return _REFERENCE.sub(replace, text)


def _walk_strings(node: Any, change: Callable[[str], str]) -> Any:
    if isinstance(node, dict):
        return {key: _walk_strings(value, change) for key, value in node.items()}
    if isinstance(node, list):
        return [_walk_strings(value, change) for value in node]
    return change(node) if isinstance(node, str) else node


def raw_compose() -> dict[str, Any]:
    """The YAML as written (anchors merged, variables not substituted)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def env_example() -> dict[str, str]:
    return {key: value or "" for key, value in dotenv_values(ENV_EXAMPLE).items()}


# The secrets .env.example leaves empty, as a user fills them in (values made up for the tests).
SECRETS = {
    "REDIS_PASSWORD": "test-redis-password",
    "FLOWER_BASIC_AUTH": "admin:test-flower-password",
    "DASHBOARD_ACCESS_TOKEN": "test-dashboard-token-0123456789",
    "GRAFANA_ADMIN_PASSWORD": "test-grafana-password",
    "REDIS_SENTINEL_PASSWORD": "test-sentinel-password",
}


def filled_env() -> dict[str, str]:
    """`.env.example` copied to `.env` with its secrets set, as the README says to."""
    return {**env_example(), **SECRETS}


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The file as `docker compose` sees it with that `.env`."""
    values = filled_env() if env is None else env
    return _walk_strings(raw_compose(), lambda text: interpolate(text, values))


def compose_variables() -> set[str]:
    """Every variable the compose files read (the HA override's too)."""
    seen: set[str] = set()
    for document in (raw_compose(), yaml.safe_load(HA_FILE.read_text())):
        _walk_strings(document, lambda text: interpolate(text, filled_env(), seen))
    return seen


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def project_services() -> dict[str, dict[str, Any]]:
    """The services that run this project's code: built from ./Dockerfile."""
    return {
        name: svc for name, svc in services().items() if "build" in svc or svc.get("image") == PROJECT_IMAGE
    }


def argv_of(command: str | list[str]) -> list[str]:
    """A command as the argument vector that runs; a shell string stops at the first redirection or pipe."""
    words = shlex.split(command) if isinstance(command, str) else list(command)
    for i, word in enumerate(words):
        if word in {">", ">>", "2>", "|", "||", "&&", ";"}:
            return words[:i]
    return words


def healthcheck_argv(service: dict[str, Any]) -> list[str] | None:
    test = service.get("healthcheck", {}).get("test")
    if not test:
        return None
    if isinstance(test, str):
        return argv_of(test)
    kind, *rest = test
    return argv_of(rest[0]) if kind == "CMD-SHELL" else argv_of(rest) if kind == "CMD" else None


def project_invocations() -> Iterator[tuple[str, list[str]]]:
    """(where, argv) of every command and healthcheck that runs project code."""
    for name, svc in project_services().items():
        yield name, argv_of(svc["command"])
        check = healthcheck_argv(svc)
        if check and check[0] in {"orders", "celery"}:
            yield f"{name} healthcheck", check


# --- the validator ---------------------------------------------------------------------------------


def _docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        reason = "docker-compose (Debian package) not installed: `apt-get install docker-compose`"
        if IN_CI:
            pytest.fail(f"validator missing under CI: {reason}")
        pytest.skip(reason)
    return found


def _run_config(env_file: Path, *files: Path, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    # Only PATH and HOME from outside: a variable exported in the shell must not hide a gap in the file.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    chosen = [arg for path in (files or (COMPOSE_FILE,)) for arg in ("-f", str(path))]
    argv = [_docker_compose(), "--env-file", str(env_file), *chosen, "config", *(["-q"] if quiet else [])]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def merged_services(directory: Path, override: Path) -> dict[str, dict[str, Any]]:
    """The services of docker-compose.yml with ``override`` on top, merged by docker-compose itself (as
    `-f docker-compose.yml -f <override>`), from a complete .env; fails on an error or a warning."""
    env_file = _env_file(directory / ".env", filled_env())
    result = _run_config(env_file, COMPOSE_FILE, override, quiet=False)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return dict(yaml.safe_load(result.stdout)["services"])


def _env_file(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


def test_compose_file_validates(tmp_path: Path) -> None:
    result = _run_config(_env_file(tmp_path / ".env", filled_env()))
    assert result.returncode == 0, result.stderr
    # `config` only warns about an unset variable; with the filled-in .env every one must be set.
    assert "WARNING" not in result.stderr, result.stderr


def test_compose_refuses_to_start_without_the_secrets(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = _run_config(empty)
    assert result.returncode != 0
    assert "REDIS_PASSWORD" in result.stderr
    # Nor does .env.example as shipped (each secret's ${VAR:?} is checked in test_shipped_secrets.py).
    shipped = _run_config(ENV_EXAMPLE)
    assert shipped.returncode != 0 and "set REDIS_PASSWORD in .env" in shipped.stderr


# --- commands ---------------------------------------------------------------------------------------


def _invocations(program: str) -> list[Any]:
    return [
        pytest.param(where, argv, id=where) for where, argv in project_invocations() if argv[0] == program
    ]


def test_every_project_service_runs_orders_or_celery_from_the_project_image() -> None:
    found = project_services()
    assert {"worker", "bridge", "producer", "flower"} <= set(found)
    for name, svc in found.items():
        assert svc.get("image") == PROJECT_IMAGE, name
        assert svc["build"]["context"] == ".", name
        assert argv_of(svc["command"])[0] in {"orders", "celery"}, f"{name} runs {svc['command']!r}"
    for name, svc in services().items():
        if name not in found:
            assert argv_of(svc.get("command") or ["-"])[0] not in {"orders", "celery"}, name


@pytest.mark.parametrize(("where", "argv"), _invocations("orders"))
def test_orders_commands_exist(where: str, argv: list[str]) -> None:
    group: click.Command = orders_cli
    args = argv[1:]
    path = ["orders"]
    while isinstance(group, click.Group) and args and not args[0].startswith("-"):
        name, args = args[0], args[1:]
        ctx = click.Context(group)
        sub = group.get_command(ctx, name)  # `orders` loads a tool's command on use
        path.append(name)
        if sub is None:
            pending = PENDING_COMMANDS.get(where)
            assert pending, f"{where}: `{' '.join(path)}` is not a command (have {group.list_commands(ctx)})"
            profiles = services()[where].get("profiles")
            assert profiles, f"{where}: `{' '.join(path)}` lands with {pending}; keep it behind a profile"
            return
        group = sub
    assert where not in PENDING_COMMANDS, (
        f"`{' '.join(path)}` exists now: drop `profiles` from the {where} service in docker-compose.yml "
        f"and {where!r} from PENDING_COMMANDS"
    )
    # The options parse as the command would parse them (nothing runs).
    group.make_context(" ".join(path), list(args))
    assert path[1] != "registry", f"{where}: compose uses Confluent's registry, not the dev one"


@pytest.fixture(scope="module")
def celery_parent() -> click.Context:
    from celery.app.utils import find_app
    from celery.bin.base import CLIContext
    from celery.bin.celery import celery

    import worker.celery

    app = find_app("worker")  # what `celery -A worker` resolves
    assert app is worker.celery.app
    return click.Context(celery, info_name="celery", obj=CLIContext(app=app, no_color=True, workdir=None))


def _check_flower_options(args: list[str]) -> None:
    from flower.options import options

    for arg in args:
        assert arg.startswith("--") and "=" in arg, f"flower takes --name=value options, got {arg!r}"
        name, value = arg[2:].split("=", 1)
        known = options._options.get(name.replace("_", "-"))
        assert known is not None, f"flower has no option --{name}"
        copy.copy(known).parse(value)  # raises on a bad value; the copy leaves flower's options alone


@pytest.mark.parametrize(("where", "argv"), _invocations("celery"))
def test_celery_commands_are_valid(where: str, argv: list[str], celery_parent: click.Context) -> None:
    assert argv[1:3] == ["-A", "worker"], f"{where}: expected `celery -A worker ...`, got {argv}"
    name, args = argv[3], argv[4:]
    command = celery_parent.command.commands.get(name)  # type: ignore[attr-defined]
    assert command is not None, f"{where}: `celery {name}` is not a celery command"
    with command.make_context(name, list(args), parent=celery_parent) as ctx:
        if name == "flower":
            _check_flower_options(list(ctx.params["tornado_argv"]))
        if name == "inspect":
            assert hasattr(celery_parent.obj.app.control.inspect(), ctx.params["command"])


# The settings each project service's process reads (Flower loads the worker's app and its config).
SERVICE_SETTINGS: dict[str, type[Settings]] = {
    "worker": WorkerSettings, "bridge": BridgeSettings, "producer": Settings, "flower": WorkerSettings,
    "dashboard": DashboardSettings,
}  # fmt: skip


def test_app_environment_is_valid_settings() -> None:
    assert set(project_services()) == set(SERVICE_SETTINGS)
    for name, svc in project_services().items():
        env = {key: str(value) for key, value in svc["environment"].items()}
        settings = SERVICE_SETTINGS[name].from_env(env, env_file=None)
        # Any other KAFKA_* variable would reach librdkafka as an option.
        assert settings.kafka_options == {}, name
        assert settings.kafka_bootstrap_servers == "kafka:9092"
        assert settings.schema_registry_url == "http://schema-registry:8081"
        assert f":{SECRETS['REDIS_PASSWORD']}@redis:6379" in settings.redis_url


# --- start order, persistence, secrets, scaling ----------------------------------------------------


def test_infrastructure_has_healthchecks() -> None:
    for name in ("kafka", "schema-registry", "redis"):
        test = services()[name].get("healthcheck", {}).get("test")
        assert test and test[0] in {"CMD", "CMD-SHELL"}, f"{name} needs a healthcheck"


def test_app_services_wait_for_what_they_need() -> None:
    found = services()
    for name, required in REQUIRED_DEPENDENCIES.items():
        depends = found[name].get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions, not a list"
        for target, condition in required.items():
            assert depends.get(target, {}).get("condition") == condition, f"{name} -> {target}"
    for name, svc in found.items():
        for target, spec in svc.get("depends_on", {}).items():
            if spec["condition"] == HEALTHY:
                assert "healthcheck" in found[target], f"{name} waits for {target}, which has no healthcheck"
            if spec["condition"] == COMPLETED:
                assert found[target].get("restart", "no") == "no", f"{target} is one-shot"


def test_kafka_runs_kraft_and_kafka_init_creates_both_topics() -> None:
    found = services()
    kafka = found["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not [key for key in env if "ZOOKEEPER" in key]
    init = found["kafka-init"]
    script = " ".join(init["command"])
    assert script.count("--create --if-not-exists") == 2
    app_env = found["bridge"]["environment"]
    assert init["environment"]["ORDERS_TOPIC"] == app_env["ORDERS_TOPIC"] == "orders"
    assert init["environment"]["DLQ_TOPIC"] == app_env["DLQ_TOPIC"] == "orders-dlq"
    assert int(init["environment"]["ORDERS_PARTITIONS"]) > 1
    default = raw_compose()["services"]["kafka-init"]["environment"]["ORDERS_PARTITIONS"]
    assert int(interpolate(default, {})) > 1  # also without a .env


def test_redis_persists_and_requires_a_password() -> None:
    redis = raw_compose()["services"]["redis"]
    command = " ".join(redis["command"])
    assert redis["image"].startswith("redis:7")
    assert "--appendonly yes" in command
    assert "--requirepass ${REDIS_PASSWORD:?" in command


def test_redis_memory_is_bounded_and_never_evicts() -> None:
    """Evicting dedupe markers would count orders twice: a full Redis must refuse writes instead."""
    command = " ".join(raw_compose()["services"]["redis"]["command"])
    assert "--maxmemory-policy noeviction" in command
    assert "--maxmemory ${REDIS_MAXMEMORY:-" in command


def test_worker_scales() -> None:
    worker = services()["worker"]
    for key in ("container_name", "ports", "hostname"):
        assert key not in worker, f"worker has {key}: `--scale worker=3` needs it gone"


def test_flower_has_basic_auth_from_the_environment_on_5555() -> None:
    flower = raw_compose()["services"]["flower"]
    assert "--port=5555" in flower["command"]
    assert [arg for arg in flower["command"] if arg.startswith("--basic-auth=${FLOWER_BASIC_AUTH:?")]
    assert [port for port in services()["flower"]["ports"] if str(port).endswith(":5555")]


def test_flower_keeps_a_bounded_number_of_tasks() -> None:
    """Flower's memory grows with the tasks it keeps (100,000 by default: ~800 MB)."""
    from orders.stack.processes import FLOWER_MAX_TASKS

    [bound] = [arg for arg in services()["flower"]["command"] if arg.startswith("--max_tasks=")]
    assert int(bound.removeprefix("--max_tasks=")) == FLOWER_MAX_TASKS


def test_named_volumes_are_declared_and_used() -> None:
    declared = set(compose()["volumes"])
    used: dict[str, str] = {}
    for name, svc in services().items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} uses undeclared volume {source}"
                used[source] = name
    assert declared == set(used)
    assert used["kafka-data"] == "kafka" and used["redis-data"] == "redis"


# --- .env.example, Dockerfile, .dockerignore -------------------------------------------------------


def test_env_example_lists_exactly_the_variables_compose_reads() -> None:
    assert compose_variables() == set(env_example())


def test_env_example_holds_no_usable_secret() -> None:
    shipped = env_example()
    secret_names = {name for name in shipped if re.search(r"PASSWORD|TOKEN|AUTH|SECRET|KEY", name)}
    assert secret_names == set(SECRETS)
    assert {name: shipped[name] for name in secret_names} == dict.fromkeys(secret_names, "")


def test_compose_demo_workers_inject_failures_and_the_dashboard_knows_its_url() -> None:
    found = services()
    assert found["worker"]["environment"]["FAILURE_INJECTION"] == "true"
    for name in ("bridge", "producer", "flower", "dashboard"):
        assert "FAILURE_INJECTION" not in found[name]["environment"], name
    dashboard = found["dashboard"]["environment"]
    settings = DashboardSettings.from_env({k: str(v) for k, v in dashboard.items()}, env_file=None)
    assert settings.dashboard_public_urls == ("http://localhost:8050", "http://127.0.0.1:8050")


def test_env_example_sets_no_pipeline_setting() -> None:
    # The processes read ./.env too: a pipeline setting here would change runs outside Docker and tests.
    every_process = (BridgeSettings, WorkerSettings, DashboardSettings, RegistrySettings)
    settings_names = {f.alias for kind in every_process for f in kind.model_fields.values() if f.alias}
    for name in env_example():
        assert name not in settings_names and not name.startswith(KAFKA_PREFIX), name


def test_dockerfile_builds_the_project_without_dev_extras() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}
    assert "pip install --no-deps -e ." in text
    assert "[dev" not in text


def test_dockerignore_keeps_secrets_out_and_the_code_in() -> None:
    patterns = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".env", ".git", "tests/"} <= patterns
    for needed in ("bridge", "worker", "schemas", "pyproject.toml", "README.md"):
        assert not [p for p in patterns if p.rstrip("/") == needed], f"{needed} is needed in the image"


def image_extras() -> list[str]:
    """The extras the Dockerfile installs (its ``ARG EXTRAS=...``)."""
    found = re.search(r"^ARG EXTRAS=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert found, "the Dockerfile names the extras it installs in ARG EXTRAS"
    return found.group(1).split(",")


def test_the_image_dependencies_provide_every_import_of_what_compose_runs() -> None:
    # The image installs the base requirements and the Dockerfile's extras; a module that arrives here
    # through a dev tool or an extra the image lacks would be missing there, and the service would die.
    image = imports.distributions(imports.requirements(image_extras()))
    roots, runs_flower = ["bridge", "worker", "orders.cli"], False
    for _where, argv in project_invocations():
        if argv[0] == "orders" and argv[1] in TOOLS:
            roots.append(TOOLS[argv[1]][0])
        runs_flower = runs_flower or argv[:4] == ["celery", "-A", "worker", "flower"]
    assert "orders.produce" in roots and runs_flower  # what the image is checked for
    assert "flower" in image
    for module, where in imports.third_party_imports(roots).items():
        assert imports.providers(module) & image, (
            f"{where} imports {module}, which the image does not install"
        )


# --- the HA override: replicated Redis behind Sentinel --------------------------------------------


@pytest.fixture(scope="module")
def ha_services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Both files merged by docker-compose itself, as `-f docker-compose.yml -f docker-compose.ha.yml`."""
    return merged_services(tmp_path_factory.mktemp("ha"), HA_FILE)


def test_ha_override_validates_and_needs_the_sentinel_password(tmp_path: Path) -> None:
    assert _run_config(_env_file(tmp_path / ".env", filled_env()), COMPOSE_FILE, HA_FILE).returncode == 0
    without = {k: v for k, v in filled_env().items() if k != "REDIS_SENTINEL_PASSWORD"}
    refused = _run_config(_env_file(tmp_path / "partial.env", without), COMPOSE_FILE, HA_FILE)
    assert refused.returncode != 0 and "REDIS_SENTINEL_PASSWORD" in refused.stderr


def test_ha_services_follow_the_primary_through_the_sentinels(ha_services: dict[str, dict[str, Any]]) -> None:
    from orders.core.redis_url import SentinelUrl

    sentinels = {name for name in ha_services if name.startswith("sentinel-")}
    assert len(sentinels) == 3
    for name, kind in SERVICE_SETTINGS.items():
        env = {key: str(value) for key, value in ha_services[name]["environment"].items()}
        settings = kind.from_env(env, env_file=None)
        for parsed in (settings.redis, settings.broker_redis):
            assert isinstance(parsed, SentinelUrl), name
            assert {host for host, _ in parsed.sentinels} == sentinels and parsed.master_name == "orders"
            assert parsed.password == SECRETS["REDIS_PASSWORD"]
            assert parsed.sentinel_password == SECRETS["REDIS_SENTINEL_PASSWORD"]
        assert (settings.redis.db, settings.broker_redis.db) == (0, 1)  # type: ignore[union-attr]
        depends = ha_services[name].get("depends_on", {})
        if name != "producer":
            assert all(depends[s]["condition"] == HEALTHY for s in sentinels), name
    # One shared primary: the hand-off waits for a replica per batch; replication order covers the aggregate.
    assert (
        BridgeSettings.from_env(ha_services["bridge"]["environment"], env_file=None).handoff_wait_replicas
        == 1
    )
    worker_env = ha_services["worker"]["environment"]
    assert WorkerSettings.from_env(worker_env, env_file=None).aggregate_wait_replicas == 0


def test_every_ha_data_node_refuses_writes_it_could_lose(ha_services: dict[str, dict[str, Any]]) -> None:
    """Any node may become the primary: each needs min-replicas-to-write, its persistence and no eviction."""
    data_nodes = ["redis", "redis-replica-1", "redis-replica-2"]
    for name in data_nodes:
        command = " ".join(ha_services[name]["command"])
        wanted = ["--min-replicas-to-write 1", "--min-replicas-max-lag 10", "--appendonly yes"]
        wanted += ["--maxmemory-policy noeviction", f"--masterauth {SECRETS['REDIS_PASSWORD']}"]
        for flag in wanted:
            assert flag in command, f"{name}: {flag}"
        assert f"--replica-announce-ip {name}" in command
    for name in data_nodes[1:]:
        assert "--replicaof redis 6379" in " ".join(ha_services[name]["command"])
        assert ha_services[name]["depends_on"]["redis"]["condition"] == HEALTHY
    for number in (1, 2, 3):
        sentinel = ha_services[f"sentinel-{number}"]
        script = sentinel["command"][-1]
        assert "sentinel monitor orders redis 6379 2" in script and "requirepass" in script
        assert sentinel["hostname"] == f"sentinel-{number}" and sentinel["healthcheck"]["test"]
