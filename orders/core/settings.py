"""The settings the bridge and the worker share, and how every process builds its own from the environment.

Each process and tool owns the settings it reads, next to its code (``bridge/settings.py``,
``worker/settings.py``, ``orders/dashboard/settings.py``, ``orders/registry/settings.py``, ...): a subclass
of :class:`Settings` built once at its entry point with ``from_env``, so it validates only what it reads.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from orders.core.redis_url import (
    REDIS_SCHEMES,
    ClusterUrl,
    RedisUrl,
    check_tls,
    parse_redis_url,
    redact,
)
from orders.core.redis_url import same_database as same_database  # what the processes import from here
from orders.core.redis_url import with_database as with_database

KAFKA_PREFIX = "KAFKA_"
DAY_SECONDS = 24 * 3600
MASK = "**********"
# RabbitMQ through py-amqp (kombu's "pyamqp" transport, Celery's default for amqp://).
AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})
BrokerKind = Literal["redis", "amqp"]
QueueType = Literal["classic", "quorum"]
# The stock lane's setting before it also turned off the lazy retry tracebacks.
OLD_STOCK_NAME = "ORDERS_STOCK_TRANSPORT"


class SettingsError(Exception):
    """Raised at start-up when a variable is missing or malformed; the message names it."""


class Settings(BaseSettings):
    """What the bridge and the worker share, and the base of every process's own settings.

    Build it (or a subclass) with :meth:`from_env`; nothing else in the code reads ``os.environ``.
    Fields holding credentials are kept out of ``repr`` and logs (see :meth:`redacted`).
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    kafka_bootstrap_servers: str = Field("localhost:9092", alias="KAFKA_BOOTSTRAP_SERVERS")
    # Any other librdkafka option, from KAFKA_<NAME> variables (Confluent's image convention).
    kafka_options: dict[str, str] = Field(default_factory=dict, repr=False)

    # The registry client (orders/core/kafka.py builds it with the Kafka clients): the bridge decodes
    # with it, and so does every tool that reads or writes orders.
    schema_registry_url: str = Field("http://localhost:8081", alias="SCHEMA_REGISTRY_URL")
    schema_registry_basic_auth: SecretStr | None = Field(None, alias="SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO")
    # The registry client's TLS: a private CA to trust, and a client certificate for mutual TLS.
    schema_registry_ssl_ca_location: str | None = Field(None, alias="SCHEMA_REGISTRY_SSL_CA_LOCATION")
    schema_registry_ssl_certificate_location: str | None = Field(
        None, alias="SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION"
    )
    schema_registry_ssl_key_location: str | None = Field(None, alias="SCHEMA_REGISTRY_SSL_KEY_LOCATION")
    schema_registry_ssl_key_password: SecretStr | None = Field(None, alias="SCHEMA_REGISTRY_SSL_KEY_PASSWORD")

    redis_url: str = Field("redis://localhost:6379/0", alias="REDIS_URL", repr=False)
    celery_broker_url: str | None = Field(None, alias="CELERY_BROKER_URL", repr=False)
    celery_result_backend: str | None = Field(None, alias="CELERY_RESULT_BACKEND", repr=False)
    celery_queue: str = Field("orders", alias="CELERY_QUEUE", min_length=1)
    # RabbitMQ only: the queue's type, and for a quorum queue how often a message may be delivered
    # before RabbitMQ dead-letters it (orders/core/celery_config.py says why this many and where to).
    # The bridge and the workers declare the queue, so both must read the same values.
    celery_queue_type: QueueType = Field("classic", alias="CELERY_QUEUE_TYPE")
    celery_delivery_limit: int = Field(1_000_000, alias="CELERY_DELIVERY_LIMIT", ge=1)
    # Quorum queues only: retries wait their countdown in RabbitMQ (Celery's native delayed delivery,
    # a topic exchange) instead of in the worker. Off: RabbitMQ 3.10.8 strands them when a delay queue's
    # leader crashes (orders/core/celery_config.py).
    celery_native_delayed_delivery: bool = Field(False, alias="CELERY_NATIVE_DELAYED_DELIVERY")
    # RabbitMQ only: how soon a silent broker is noticed. A worker's consumer connection sends and
    # expects heartbeats every CELERY_BROKER_HEARTBEAT seconds (it gives up after two missed); every
    # AMQP socket (connect, reads, writes, publisher confirms) gives up after CELERY_BROKER_TIMEOUT.
    celery_broker_heartbeat: float = Field(120.0, alias="CELERY_BROKER_HEARTBEAT", ge=0)
    celery_broker_timeout: float = Field(30.0, alias="CELERY_BROKER_TIMEOUT", gt=0)

    # The pipeline's names: the bridge's, and those of every tool that looks at the pipeline.
    orders_topic: str = Field("orders", alias="ORDERS_TOPIC", min_length=1)
    dlq_topic: str = Field("orders-dlq", alias="DLQ_TOPIC", min_length=1)
    consumer_group: str = Field("orders-bridge", alias="CONSUMER_GROUP", min_length=1)

    # The retry policy's countdowns are the workers', but they are shared: with the stock transport the
    # visibility timeout must outlast the longest one, and the sender (the bridge) and the workers must
    # build the same Celery config (orders/core/celery_config.py).
    max_retries: int = Field(3, alias="MAX_RETRIES", ge=0, le=20)
    # Celery autoretry counts in whole seconds (factor * 2**retries, factor floored at 1);
    # 0 means retry at once.
    retry_backoff_base: int = Field(2, alias="RETRY_BACKOFF_BASE", ge=0)
    retry_backoff_max: int = Field(600, alias="RETRY_BACKOFF_MAX", ge=1)
    # Overrides the computed Redis visibility timeout (orders/core/celery_config.py checks it stays safe).
    visibility_timeout: int | None = Field(None, alias="VISIBILITY_TIMEOUT", ge=1)
    # Celery and kombu as shipped: neither override of worker/fast_path.py (the stock lane; README).
    # Part of the shared Celery config, and it changes the visibility arithmetic.
    stock_celery: bool = Field(False, alias="ORDERS_STOCK_CELERY")
    # How long a DLQ publish may wait for the broker's acknowledgement: the bridge waits this long, a
    # worker at most WORKER_DLQ_WAIT of it (inside its task time limit).
    dlq_delivery_timeout: float = Field(30.0, alias="DLQ_DELIVERY_TIMEOUT", gt=0)
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    # Prometheus /metrics of this process (bridge or worker); 0 = not served.
    metrics_port: int = Field(0, alias="METRICS_PORT", ge=0, le=65535)
    # The interface /metrics and /healthz listen on (127.0.0.1 keeps them on this machine).
    metrics_host: str = Field("0.0.0.0", alias="METRICS_HOST", min_length=1)

    # Seconds a WAIT for replicas may block (the aggregate's per task, the hand-off's per batch); below
    # the clients' socket timeout (orders/core/redis_client.py), which must outlast it.
    redis_wait_timeout: float = Field(1.0, alias="REDIS_WAIT_TIMEOUT", gt=0, le=2.0)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        return check_redis_url(value)

    @field_validator("celery_broker_url")
    @classmethod
    def _broker_scheme(cls, value: str | None) -> str | None:
        return None if value is None else check_broker_urls(value)

    @field_validator("celery_result_backend")
    @classmethod
    def _rediss_checks_certificates(cls, value: str | None) -> str | None:
        return check_rediss_certificates(value)

    @field_validator("schema_registry_url")
    @classmethod
    def _http_scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value.upper()

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        """ORDERS_STOCK_TRANSPORT, the old name of ORDERS_STOCK_CELERY, still works, with a warning."""
        if isinstance(data, dict) and OLD_STOCK_NAME in data:
            warnings.warn(
                f"{OLD_STOCK_NAME} is deprecated: set ORDERS_STOCK_CELERY, which now also turns off the lazy "
                "retry tracebacks", FutureWarning, stacklevel=2,
            )  # fmt: skip
            data = {"ORDERS_STOCK_CELERY": data[OLD_STOCK_NAME], **data}
        return data

    @model_validator(mode="after")
    def _default_broker(self) -> Self:
        if self.celery_broker_url is None:
            if isinstance(self.redis, ClusterUrl):
                raise ValueError(
                    "REDIS_URL is a Redis Cluster, which cannot be Celery's broker (kombu has no Cluster "
                    "transport): set CELERY_BROKER_URL to one Redis, a Sentinel-managed one or RabbitMQ"
                )
            object.__setattr__(self, "celery_broker_url", self.redis_url)
        if self.celery_queue_type == "quorum" and self.broker_kind != "amqp":
            raise ValueError("CELERY_QUEUE_TYPE=quorum needs RabbitMQ (an amqp:// CELERY_BROKER_URL)")
        return self

    @property
    def broker_url(self) -> str:
        """The Celery broker URL (``CELERY_BROKER_URL``, defaulting to ``REDIS_URL``)."""
        return self.celery_broker_url or self.redis_url

    @property
    def broker_kind(self) -> BrokerKind:
        """Which Celery broker the URL names: "redis" (one, or Sentinel-managed) or "amqp" (RabbitMQ)."""
        return "amqp" if urlsplit(self.broker_url).scheme in AMQP_SCHEMES else "redis"

    @property
    def redis(self) -> RedisUrl:
        """REDIS_URL parsed (orders/core/redis_url.py): one server, a Sentinel primary or a Cluster."""
        return parse_redis_url(self.redis_url)

    @property
    def broker_redis(self) -> RedisUrl | None:
        """CELERY_BROKER_URL parsed, when Celery's broker is a Redis; None for RabbitMQ."""
        return None if self.broker_kind == "amqp" else parse_redis_url(self.broker_url)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the mapping :meth:`from_env` builds: pydantic-settings' own environment source would read
        ``os.environ`` behind a test's plain dict, and parse a list variable as JSON (a comma-separated
        DASHBOARD_PUBLIC_URLS then failed, in a message echoing the whole environment)."""
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, env_file: str | None = ".env") -> Self:
        """Build settings from ``environ`` (default: the process environment) over an optional `.env`.

        Reads only this class's variables (others are ignored). Raises :class:`SettingsError` naming
        each bad variable.
        """
        merged: dict[str, Any] = {}
        if env_file and os.path.exists(env_file):
            merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        merged.update(os.environ if environ is None else environ)
        merged["kafka_options"] = kafka_options_from_env(merged, cls._declared_kafka_names())
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise SettingsError(describe_errors(exc, cls._secret_names())) from None

    @classmethod
    def _declared_kafka_names(cls) -> set[str]:
        return {f.alias for f in cls.model_fields.values() if f.alias and f.alias.startswith(KAFKA_PREFIX)}

    @classmethod
    def _secret_names(cls) -> set[str]:
        return {
            f.alias
            for f in cls.model_fields.values()
            if f.alias and (f.repr is False or f.annotation in (SecretStr, SecretStr | None))
        }

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict safe to log: passwords in URLs and secret options masked."""
        shown: dict[str, Any] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            key = field.alias or name
            if name == "kafka_options":
                value = {k: (MASK if is_secret_option(k) else v) for k, v in value.items()}
            elif isinstance(value, SecretStr) or (value is not None and is_secret_option(key)):
                value = MASK
            elif isinstance(value, str) and "://" in value:
                value = redact_url(value)
            shown[key] = value
        return shown


def check_redis_url(value: str, no_cluster_for: str = "") -> str:
    """A field validator's check: one of the Redis URL forms orders/core/redis_url.py reads; a Cluster
    URL refused where ``no_cluster_for`` says why (the aggregate's REDIS_URL may be one)."""
    if isinstance(parse_redis_url(value), ClusterUrl) and no_cluster_for:
        raise ValueError(
            f"a Redis Cluster cannot hold {no_cluster_for}: use one Redis (redis://, rediss://, unix://) "
            "or a Sentinel-managed one (sentinel://...?master_name=NAME)"
        )
    return value


def check_broker_urls(value: str) -> str:
    """A field validator's check: RabbitMQ URLs (several, ``;``-separated, are a cluster's nodes, which
    Celery, the bridge and the depth reader fail over between) or one Redis URL (a Sentinel URL lists
    its sentinels the same way: orders/core/redis_url.py)."""
    urls = value.split(";")
    amqp = [urlsplit(url.strip()).scheme in AMQP_SCHEMES for url in urls]
    if any(amqp) and any(not url.strip() for url in urls):
        raise ValueError("an empty URL in the ';'-separated list (a stray ';'?)")
    if any(amqp) and any(url != url.strip() for url in urls):
        raise ValueError("spaces around a ';' in the list of broker URLs")
    if all(amqp):
        return value
    if any(amqp):
        raise ValueError(
            "several ';'-separated URLs must all be RabbitMQ (amqp://, amqps://) nodes of one cluster; "
            "Redis fails over with Sentinel (sentinel://...;sentinel://...)"
        )
    try:
        parsed = parse_redis_url(value)
    except ValueError as exc:
        raise ValueError(f"{exc}; or RabbitMQ (amqp://) URLs") from None
    if isinstance(parsed, ClusterUrl):
        raise ValueError(
            "kombu has no Redis Cluster transport: Celery's broker must be one Redis (redis://, "
            "rediss://, unix://), a Sentinel-managed one (sentinel://) or RabbitMQ (amqp://)"
        )
    return value


def check_rediss_certificates(value: str | None) -> str | None:
    """A field validator's check: a TLS Redis URL says how the server's certificate is checked."""
    if value is not None and urlsplit(value).scheme in REDIS_SCHEMES | {"sentinel"}:
        check_tls(value)
    return value


def kafka_options_from_env(environ: Mapping[str, Any], declared: set[str]) -> dict[str, str]:
    """Map ``KAFKA_<NAME>`` variables to librdkafka options the way Confluent's images do.

    ``_`` becomes ``.``, ``__`` becomes ``_`` and ``___`` becomes ``-``:
    ``KAFKA_SASL_MECHANISM`` -> ``sasl.mechanism``.
    """
    options: dict[str, str] = {}
    for key, value in environ.items():
        if not key.startswith(KAFKA_PREFIX) or key in declared or not isinstance(value, str):
            continue
        options[env_name_to_option(key)] = value
    return options


def env_name_to_option(env_name: str) -> str:
    """``KAFKA_SSL_CA_LOCATION`` -> ``ssl.ca.location`` (Confluent's escaping for ``_`` and ``-``)."""
    name = env_name[len(KAFKA_PREFIX) :].lower()
    return (
        name.replace("___", "\0").replace("__", "\1").replace("_", ".").replace("\0", "-").replace("\1", "_")
    )


def option_to_env_name(option: str) -> str:
    """The inverse of :func:`env_name_to_option`, for error messages."""
    escaped = option.replace("_", "__").replace("-", "___").replace(".", "_")
    return KAFKA_PREFIX + escaped.upper()


SECRET_OPTION_WORDS = ("password", "secret", "token", "key", "oauthbearer.config", "jaas")


def is_secret_option(option: str) -> bool:
    """librdkafka or registry-client options that may carry credentials (masked in logs).

    Broad on purpose: a key's *location* is masked too, which costs nothing, while an inline PEM key
    (``ssl.key.pem``), a SASL/OAUTHBEARER config or a JAAS line must never reach a log.
    """
    return any(word in option.lower() for word in SECRET_OPTION_WORDS)


def redact_url(url: str) -> str:
    """``redis://:pw@host:6379/0`` -> ``redis://:****@host:6379/0``; each URL of a ``;``-separated
    RabbitMQ list, Sentinel URLs and password options in the query too (orders/core/redis_url.py)."""
    return redact(url)


def describe_errors(exc: ValidationError, secret_names: set[str]) -> str:
    """One line per bad variable, never echoing a secret's value."""
    lines = ["Invalid configuration:"]
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        # A model-level error's input is the whole environment: never shown.
        shown = "" if name in secret_names or not error["loc"] else f" (got {error.get('input')!r})"
        lines.append(f"  {name}: {error['msg']}{shown}")
    return "\n".join(lines)
