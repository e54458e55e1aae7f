"""What `orders dlq` reads on top of the shared settings: OpenTelemetry's, to link a replay to its trace."""

from __future__ import annotations

from orders.core.settings import Settings
from orders.core.tracing_settings import TracingSettings


class DlqSettings(Settings, TracingSettings):
    """`orders dlq list` shows each letter's trace (a link with TRACES_URL); `replay` traces its sends."""

    default_service_name = "orders-dlq-replay"  # OTEL_SERVICE_NAME overrides it
