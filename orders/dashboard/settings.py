"""What `orders dashboard` reads on top of the shared settings: its token and the URLs browsers use."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from orders.core.settings import Settings
from orders.core.tracing_settings import TracingSettings


class DashboardSettings(Settings, TracingSettings):
    """The shared settings (it samples Redis, Kafka and the Celery queue) and the dashboard's own; of the
    tracing ones it reads where the trace backend is (TRACES_URL), to link each dead letter's trace."""

    # Guards the web dashboard (figures and controls); required when it listens beyond loopback.
    dashboard_token: SecretStr | None = Field(None, alias="DASHBOARD_TOKEN")
    # The origins (scheme://host[:port]) browsers reach the dashboard at, comma-separated; requests
    # naming any other Host or Origin are refused (DNS rebinding). Default: its listen address.
    dashboard_public_urls: tuple[str, ...] = Field((), alias="DASHBOARD_PUBLIC_URLS")

    @field_validator("dashboard_public_urls", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        origins = []
        for url in filter(None, (part.strip() for part in value.split(","))):
            parts = urlsplit(url)
            if parts.scheme not in {"http", "https"} or not parts.hostname or parts.path.strip("/"):
                raise ValueError(
                    f"{url!r} is not an origin: use scheme://host[:port], e.g. http://localhost:8050"
                )
            origins.append(f"{parts.scheme}://{parts.netloc.lower()}")
        return tuple(origins)
