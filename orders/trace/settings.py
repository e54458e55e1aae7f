"""What `orders trace` reads: where the trace backend is (TRACES_URL, or the Zipkin endpoint's server)."""

from __future__ import annotations

from orders.core.settings import Settings
from orders.core.tracing_settings import TracingSettings


class TraceSettings(Settings, TracingSettings):
    """The shared settings (LOG_LEVEL) and the tracing ones; only ``traces_ui`` is used."""
