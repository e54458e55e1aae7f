"""No shipped file holds a usable secret: not the old defaults, not a literal in the compose file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# The defaults .env.example once shipped (and the README told to copy unchanged), spelled so that this
# file does not match itself.
OLD_DEFAULTS = [f"change-me-{name}" for name in ("redis", "flower", "dashboard")]
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|BASIC_AUTH|USER_INFO")
REQUIRED_REFERENCE = re.compile(r"^\$\{[A-Z_]+:\?[^}]+\}$")


def shipped_files() -> list[Path]:
    """Every file git tracks (what a clone, the image's build context and the wheel start from)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [ROOT / name for name in listed.stdout.decode().split("\0") if name]


def test_no_shipped_file_holds_an_old_default_secret() -> None:
    files = shipped_files()
    assert len(files) > 50 and ROOT / ".env.example" in files
    found = []
    for path in files:
        if path.is_symlink() or not path.is_file():
            continue
        text = path.read_bytes().decode(errors="replace")
        found += [f"{path.relative_to(ROOT)}: {needle}" for needle in OLD_DEFAULTS if needle in text]
    assert found == []


def test_every_secret_in_the_compose_files_is_required_from_the_environment() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    ha = yaml.safe_load((ROOT / "docker-compose.ha.yml").read_text())["services"]
    secrets = {
        f"{service}.{name}": str(value)
        for service, spec in [*services.items(), *ha.items()]
        for name, value in (spec.get("environment") or {}).items()
        if isinstance(spec.get("environment"), dict) and (SECRET_NAME.search(name) or name == "REDISCLI_AUTH")
    }
    assert "dashboard.DASHBOARD_TOKEN" in secrets and "sentinel-1.REDISCLI_AUTH" in secrets
    assert "redis.REDISCLI_AUTH" in secrets and "redis-replica-1.REDISCLI_AUTH" in secrets
    for where, value in secrets.items():
        assert REQUIRED_REFERENCE.match(value), f"{where} = {value!r}: use ${{VAR:?message}}"
    # The HA services' URLs carry both passwords, each required from the environment, none written out.
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):
        url = ha["worker"]["environment"][name]
        assert "${REDIS_PASSWORD:?" in url and "${REDIS_SENTINEL_PASSWORD:?" in url
