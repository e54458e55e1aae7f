"""/healthz's Redis check: unhealthy, saying what it waits for, while a Redis does not answer; probed at most
once per interval however often it is asked."""

from __future__ import annotations

import logging

import pytest

from orders.core.redis_health import RedisReachability, combined, pipeline_redis
from orders.core.redis_url import parse_redis_url
from orders.core.settings import Settings
from orders.stack.supervisor import free_port


def test_an_unreachable_redis_is_named_with_what_the_process_waits_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens: refused at once, as while Redis restarts
    check = RedisReachability({"aggregate": parse_redis_url(f"redis://:hunter2@127.0.0.1:{port}/0")})
    with caplog.at_level(logging.WARNING):
        ready, details = check()
    assert not ready
    state = details["redis"]["aggregate"]
    assert state.startswith(f"waiting for redis://:****@127.0.0.1:{port}/0, last at 127.0.0.1:{port}: ")
    assert "hunter2" not in state and "aggregate Redis unreachable" in caplog.text


def test_probed_at_most_once_per_interval() -> None:
    now = [0.0]
    check = RedisReachability(
        {"aggregate": parse_redis_url(f"redis://127.0.0.1:{free_port()}/0")}, 1.0, lambda: now[0]
    )
    pings: list[str] = []
    check._probe = lambda name: pings.append(name) or "ok"  # type: ignore[method-assign]
    for at in (0.0, 0.3, 0.9, 1.0, 1.5):
        now[0] = at
        assert check() == (True, {"redis": {"aggregate": "ok"}})
    assert len(pings) == 2


def test_the_broker_is_probed_only_when_it_is_another_redis() -> None:
    shared = Settings.from_env({"REDIS_URL": "redis://a:6379/0"}, env_file=None)
    assert list(pipeline_redis(shared)._targets) == ["aggregate"]
    apart = Settings.from_env(
        {"REDIS_URL": "redis://a:6379/0", "CELERY_BROKER_URL": "redis://b:6379/0"}, env_file=None
    )
    assert list(pipeline_redis(apart)._targets) == ["aggregate", "broker"]
    rabbit = Settings.from_env({"CELERY_BROKER_URL": "amqp://g:g@r:5672//"}, env_file=None)
    assert list(pipeline_redis(rabbit)._targets) == ["aggregate"]


def test_combined_readiness_needs_every_check() -> None:
    both = combined(lambda: (True, {"paused": False}), lambda: (False, {"redis": {"aggregate": "waiting"}}))
    assert both() == (False, {"paused": False, "redis": {"aggregate": "waiting"}})
