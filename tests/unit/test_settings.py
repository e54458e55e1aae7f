"""The shared settings from environment mappings: defaults, KAFKA_* pass-through, errors naming the variable.

Each process's own settings (bridge, worker, dashboard, registry) are in test_process_settings.py.
"""

from __future__ import annotations

from typing import Self

import pytest
from pydantic import BaseModel, ValidationError, model_validator

from orders.core.celery_config import (
    LEASE_RENEW_SECONDS,
    PREFETCH_MULTIPLIER,
    TASK_TIME_LIMIT,
    celery_config,
    check_dedupe_window,
    longest_countdown,
    visibility_floor,
    visibility_timeout,
)
from orders.core.kafka import consumer_config, create_producer, producer_config, registry_config
from orders.core.settings import (
    Settings,
    SettingsError,
    describe_errors,
    env_name_to_option,
    is_secret_option,
    option_to_env_name,
    same_database,
)


def build(**env: str) -> Settings:
    return Settings.from_env(env, env_file=None)


def test_defaults_match_the_documented_names() -> None:
    s = build()
    assert (s.orders_topic, s.dlq_topic, s.max_retries, s.retry_backoff_base) == (
        "orders",
        "orders-dlq",
        3,
        2,
    )
    assert s.broker_url == s.redis_url  # CELERY_BROKER_URL defaults to REDIS_URL


@pytest.mark.parametrize(
    ("env_name", "option"),
    [
        ("KAFKA_SASL_MECHANISM", "sasl.mechanism"),
        ("KAFKA_SECURITY_PROTOCOL", "security.protocol"),
        ("KAFKA_SSL_CA_LOCATION", "ssl.ca.location"),
        ("KAFKA_SESSION_TIMEOUT_MS", "session.timeout.ms"),
        ("KAFKA_CLIENT__ID", "client_id"),
        ("KAFKA_SOME___DASHED", "some-dashed"),
    ],
)
def test_kafka_variables_map_to_librdkafka_options(env_name: str, option: str) -> None:
    assert env_name_to_option(env_name) == option
    assert option_to_env_name(option) == env_name
    assert build(**{env_name: "v"}).kafka_options == {option: "v"}


def test_kafka_options_reach_every_client_config() -> None:
    s = build(KAFKA_BOOTSTRAP_SERVERS="b:1", KAFKA_SASL_MECHANISM="PLAIN")
    for conf in (producer_config(s), consumer_config(s)):
        assert conf["bootstrap.servers"] == "b:1"
        assert conf["sasl.mechanism"] == "PLAIN"
    assert producer_config(s)["enable.idempotence"] is True
    assert consumer_config(s)["enable.auto.offset.store"] is False


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MAX_RETRIES": "three"}, "MAX_RETRIES"),
        ({"REDIS_URL": "http://localhost"}, "REDIS_URL"),
        ({"REDIS_URL": "amqp://localhost//"}, "REDIS_URL"),  # the aggregate is in Redis whatever the broker
        ({"CELERY_BROKER_URL": "sqs://"}, "CELERY_BROKER_URL"),
        ({"SCHEMA_REGISTRY_URL": "localhost:8081"}, "SCHEMA_REGISTRY_URL"),
        ({"RETRY_BACKOFF_BASE": "-1"}, "RETRY_BACKOFF_BASE"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ],
)
def test_bad_values_stop_start_up_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as raised:
        build(**env)
    assert named in str(raised.value)


def test_bad_kafka_option_names_its_variable() -> None:
    with pytest.raises(SettingsError, match="KAFKA_NOT_AN_OPTION"):
        create_producer(build(KAFKA_NOT_AN_OPTION="1"))


def test_secrets_never_show() -> None:
    s = build(
        REDIS_URL="redis://:hunter2@redis:6379/0",
        SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO="user:hunter2",
        KAFKA_SASL_PASSWORD="hunter2",
    )
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.redacted())
    assert registry_config(s)["basic.auth.user.info"] == "user:hunter2"
    with pytest.raises(SettingsError) as raised:
        build(REDIS_URL="http://:hunter2@x")
    assert "hunter2" not in str(raised.value)


def test_an_error_about_the_whole_mapping_never_echoes_it() -> None:
    class Checked(BaseModel):
        a: int = 0

        @model_validator(mode="after")
        def _refuse(self) -> Self:
            raise ValueError("inconsistent")

    with pytest.raises(ValidationError) as raised:
        Checked.model_validate({"a": 1, "REDIS_URL": "redis://:hunter2@r/0"})
    message = describe_errors(raised.value, set())
    assert "inconsistent" in message and "hunter2" not in message


def test_env_file_is_read_and_environment_wins(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env_file = tmp_path / ".env"
    env_file.write_text("ORDERS_TOPIC=from-file\nDLQ_TOPIC=dlq-from-file\n")
    s = Settings.from_env({"ORDERS_TOPIC": "from-env"}, env_file=str(env_file))
    assert (s.orders_topic, s.dlq_topic) == ("from-env", "dlq-from-file")


@pytest.mark.parametrize(
    ("base", "retries", "cap", "longest"),
    [(2, 3, 600, 8), (1, 3, 600, 4), (2, 10, 600, 600), (0, 3, 600, 0), (2, 0, 600, 0)],
)
def test_the_stock_transport_visibility_outlasts_prefetch_runs_and_the_longest_countdown(
    base: int, retries: int, cap: int, longest: int
) -> None:
    """kombu's own transport never renews a message's lease: it must outlast everything a worker holds."""
    s = build(RETRY_BACKOFF_BASE=str(base), MAX_RETRIES=str(retries), RETRY_BACKOFF_MAX=str(cap),
              ORDERS_STOCK_CELERY="true")  # fmt: skip
    assert longest_countdown(s) == longest
    assert visibility_floor(s) == longest + PREFETCH_MULTIPLIER * TASK_TIME_LIMIT
    assert visibility_timeout(s) > visibility_floor(s)
    assert celery_config(s)["broker_transport"] is None  # kombu's own


@pytest.mark.parametrize(("env", "stock"), [
    ({"ORDERS_STOCK_TRANSPORT": "1"}, True),
    ({"ORDERS_STOCK_TRANSPORT": "1", "ORDERS_STOCK_CELERY": "false"}, False),  # the new name wins
])  # fmt: skip
def test_the_stock_lanes_old_name_still_works_with_a_warning(env: dict[str, str], stock: bool) -> None:
    with pytest.warns(FutureWarning, match="ORDERS_STOCK_TRANSPORT is deprecated: set ORDERS_STOCK_CELERY"):
        assert build(**env).stock_celery is stock


def test_our_transport_renews_leases_so_the_visibility_need_only_outlast_one_blocked_task() -> None:
    s = build(RETRY_BACKOFF_BASE="2", MAX_RETRIES="10")  # a 1,024 s countdown changes nothing
    assert visibility_floor(s) == TASK_TIME_LIMIT + LEASE_RENEW_SECONDS
    assert visibility_timeout(s) == visibility_floor(s) + 30


def test_visibility_timeout_override_is_used_when_safe() -> None:
    s = build(RETRY_BACKOFF_BASE="1", MAX_RETRIES="3", VISIBILITY_TIMEOUT="40")
    assert visibility_timeout(s) == 40


@pytest.mark.parametrize("value", ["20", "10"])
def test_visibility_timeout_override_must_outlast_a_lease(value: str) -> None:
    s = build(RETRY_BACKOFF_BASE="1", MAX_RETRIES="3", VISIBILITY_TIMEOUT=value)
    with pytest.raises(SettingsError, match=r"VISIBILITY_TIMEOUT.*\(20 s\)"):
        visibility_timeout(s)


def test_the_dedupe_window_must_cover_every_redelivery_and_re_read() -> None:
    # 2, 4, 8 s countdowns + 4 runs of 15 s + a 50 s visibility timeout, plus an hour for re-reads
    floor = 14 + 4 * TASK_TIME_LIMIT + 50 + 3600
    check_dedupe_window(build(), floor)
    with pytest.raises(SettingsError, match=rf"DEDUPE_TTL_SECONDS.*at least {floor} s"):
        check_dedupe_window(build(), floor - 1)
    # a longer redelivery (a longer visibility timeout) needs a longer window
    with pytest.raises(SettingsError, match=rf"at least {floor + 10} s"):
        check_dedupe_window(build(VISIBILITY_TIMEOUT="60"), floor)


def test_dead_workers_orders_are_swept_back_soon_after_the_visibility_timeout() -> None:
    """kombu restores unacknowledged messages only in periodic sweeps: interval x throttle seconds.

    kombu 5.7 defaults to 10 s x every 10th call = 100 s, which adds up to 100 s to the visibility
    timeout before a SIGKILLed worker's orders go to another worker; ours must sweep every 10 s.
    """
    from kombu.transport.redis import Channel

    options = celery_config(build())["broker_transport_options"]
    interval = options.get("unacked_restore_interval", Channel.unacked_restore_interval)
    throttle = options.get("unacked_restore_throttle", Channel.unacked_restore_throttle)
    assert interval * throttle <= 10


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://r:6379/1", "redis"),
        ("rediss://r:6380/0?ssl_cert_reqs=required", "redis"),
        ("amqp://u:p@rabbit:5672//", "amqp"),
    ],
)
def test_the_broker_url_picks_celerys_transport(url: str, kind: str) -> None:
    s = build(CELERY_BROKER_URL=url)
    assert s.broker_kind == kind
    config = celery_config(s)
    assert config["broker_url"] == url
    options = config["broker_transport_options"]
    if kind == "amqp":
        # kombu's py-amqp transport, none of the Redis-only options, and every worker publish confirmed
        assert config["broker_transport"] is None
        # and no socket waits for ever on a silent node (CELERY_BROKER_TIMEOUT)
        assert options == {"confirm_publish": True, "read_timeout": 30.0, "write_timeout": 30.0}
        assert "task_queues" not in config  # a classic queue: Celery declares it as before
    else:
        assert config["broker_transport"] == "worker.transport:Transport"
        assert options["visibility_timeout"] == visibility_timeout(s)


@pytest.mark.parametrize(
    ("option", "secret"),
    [
        ("sasl.password", True),
        ("sasl.oauthbearer.config", True),
        ("sasl.oauthbearer.client.secret", True),
        ("sasl.jaas.config", True),
        ("ssl.key.password", True),
        ("ssl.key.pem", True),
        ("ssl.keystore.password", True),
        ("ssl.key.location", True),
        ("sasl.oauthbearer.token.endpoint.url", True),
        ("sasl.username", False),
        ("ssl.ca.location", False),
        ("security.protocol", False),
        ("session.timeout.ms", False),
    ],
)
def test_options_that_may_carry_credentials_are_masked(option: str, secret: bool) -> None:
    value = "hunter2"
    s = build(**{option_to_env_name(option): value})
    assert (s.redacted()["kafka_options"][option] != value) is secret
    assert is_secret_option(option) is secret


def test_registry_tls_options_reach_the_client_and_its_secrets_stay_out_of_logs() -> None:
    s = build(
        SCHEMA_REGISTRY_URL="https://registry:8081",
        SCHEMA_REGISTRY_SSL_CA_LOCATION="/tls/ca.pem",
        SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION="/tls/client.pem",
        SCHEMA_REGISTRY_SSL_KEY_LOCATION="/tls/client.key",
        SCHEMA_REGISTRY_SSL_KEY_PASSWORD="hunter2",
    )
    assert registry_config(s) == {
        "url": "https://registry:8081",
        "ssl.ca.location": "/tls/ca.pem",
        "ssl.certificate.location": "/tls/client.pem",
        "ssl.key.location": "/tls/client.key",
        "ssl.key.password": "hunter2",
    }
    assert "hunter2" not in str(s.redacted()) and "hunter2" not in repr(s)
    assert registry_config(build()) == {"url": "http://localhost:8081"}


def test_rediss_urls_must_say_how_the_certificate_is_checked() -> None:
    good = "rediss://:pw@redis:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/tls/ca.pem"
    assert build(REDIS_URL=good).broker_url == good
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        with pytest.raises(SettingsError, match=rf"{name}: .*ssl_cert_reqs=required") as raised:
            build(**{name: "rediss://:hunter2@redis:6380/0"})
        assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("redis://localhost:6379/0", "redis://127.0.0.1/0", True),
        ("redis://:a@h:1/3", "redis://:b@h:1/3", True),
        ("redis://h:1/3", "redis://h:1/4", False),
        ("redis://h:1/3", "redis://h:2/3", False),
        ("redis://h:1/0", "amqp://h:5672//", False),
    ],
)
def test_same_database_compares_server_and_database(first: str, second: str, same: bool) -> None:
    assert same_database(first, second) is same


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("amqp://u:p@a//;redis://b:6379/0", "must all be RabbitMQ"),
        ("amqp://u:p@a//;", "an empty URL"),
        ("amqp://u:p@a//; amqp://u:p@b//", "spaces around"),
        ("kafka://a:9092", "not kafka://; or RabbitMQ"),
    ],
)
def test_a_list_of_broker_urls_is_checked(url: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        build(CELERY_BROKER_URL=url)


def test_a_cluster_s_urls_fail_over_and_stay_redacted() -> None:
    """Several RabbitMQ nodes: Celery gets the list as it is (kombu fails over in order), every
    password is masked in the logged settings, and the queue may be a quorum queue."""
    url = "amqp://u:secret1@a:5672//;amqp://u:secret2@b:5672//;amqp://u:secret3@c:5672//"
    s = build(CELERY_BROKER_URL=url, CELERY_QUEUE_TYPE="quorum", CELERY_QUEUE="q")
    config = celery_config(s)
    assert config["broker_url"] == url and s.broker_kind == "amqp"
    assert config["broker_failover_strategy"] == "round-robin"
    assert "secret" not in str(s.redacted())
    main, parked = config["task_queues"]
    # a direct exchange: retries wait in the worker (native delayed delivery off: celery_config.py)
    assert (main.name, main.exchange.type, parked.name) == ("q", "direct", "q.parked")
    native = celery_config(
        build(CELERY_BROKER_URL=url, CELERY_QUEUE_TYPE="quorum", CELERY_NATIVE_DELAYED_DELIVERY="true")
    )
    assert native["task_queues"][0].exchange.type == "topic"
    assert main.queue_arguments["x-queue-type"] == "quorum"
    assert main.queue_arguments["x-delivery-limit"] == 1_000_000
    assert main.queue_arguments["x-dead-letter-routing-key"] == "q.parked"


def test_a_quorum_queue_needs_rabbitmq() -> None:
    with pytest.raises(SettingsError, match="quorum needs RabbitMQ"):
        build(CELERY_BROKER_URL="redis://r:6379/0", CELERY_QUEUE_TYPE="quorum")
