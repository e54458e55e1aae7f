"""What `orders registry` reads on top of the shared settings: its credentials and its own Redis database."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator

from orders.core.redis_url import ClusterUrl
from orders.core.settings import Settings, check_redis_url, check_rediss_certificates, with_database

# The dev registry's database on REDIS_URL's server unless REGISTRY_REDIS_URL says otherwise (the
# aggregate is in 0 and compose puts the Celery queue in 1).
REGISTRY_DATABASE = 2
NO_CLUSTER = "the registry's state (it needs a database apart, and a Cluster has only database 0)"


class RegistrySettings(Settings):
    """The shared settings (its state stays apart from REDIS_URL and the broker's) and its own."""

    # The one user:password it accepts; required off loopback.
    registry_basic_auth: SecretStr | None = Field(None, alias="REGISTRY_BASIC_AUTH")
    # Its own state: never the aggregate's database, so clearing that one (FLUSHDB) keeps every
    # schema. Default: database REGISTRY_DATABASE of REDIS_URL's server. When REDIS_URL is a Redis
    # Cluster, which has database 0 only, it is required and names a Redis of its own: a key prefix in
    # the Cluster's database 0 would go with a FLUSHALL of the aggregate (README: Redis URLs).
    registry_redis_url: str | None = Field(None, alias="REGISTRY_REDIS_URL", repr=False)

    @field_validator("registry_redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return None if value is None else check_rediss_certificates(check_redis_url(value, NO_CLUSTER))

    @field_validator("registry_basic_auth")
    @classmethod
    def _user_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            user, colon, password = value.get_secret_value().partition(":")
            if not (user and colon and password):
                raise ValueError("must be user:password, both non-empty")
        return value

    @model_validator(mode="after")
    def _default_database(self) -> Self:
        if self.registry_redis_url is None:
            if isinstance(self.redis, ClusterUrl):
                raise ValueError(
                    "REDIS_URL is a Redis Cluster (database 0 only): set REGISTRY_REDIS_URL to a Redis of "
                    "the registry's own (redis://, rediss://, unix:// or sentinel://)"
                )
            object.__setattr__(self, "registry_redis_url", with_database(self.redis_url, REGISTRY_DATABASE))
        return self
