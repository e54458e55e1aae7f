"""The OpenTelemetry variables a traced process reads, parsed once with the rest of its settings.

Each process's settings class mixes this in (bridge, worker, `orders produce`, `orders dlq`), so the
standard ``OTEL_*`` names are read through the settings object like every other variable, and the SDK
is built from the parsed values (orders/core/tracing.py), not from ``os.environ``.

Tracing is **off unless an exporter or an endpoint is configured**: the specification's default would
export to ``localhost:4318`` from every process of a machine that runs no collector, so we depart from
it (README, Tracing). ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` turn it off whatever
else is set.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

ExporterKind = Literal["otlp", "zipkin", "console"]
EXPORTERS = {"otlp", "zipkin", "console", "none"}
SAMPLERS = {
    "always_on", "always_off", "traceidratio",
    "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio",
}  # fmt: skip
ZIPKIN_SPANS_PATH = "/api/v2/spans"


class TracingSettings(BaseModel):
    """The ``OTEL_*`` variables we honour (durations in milliseconds, as the specification says)."""

    # The service name a process reports when OTEL_SERVICE_NAME is not set (each process sets its own).
    default_service_name: ClassVar[str] = "orders"

    otel_sdk_disabled: bool = Field(False, alias="OTEL_SDK_DISABLED")
    otel_traces_exporter: str | None = Field(None, alias="OTEL_TRACES_EXPORTER")
    otel_exporter_otlp_endpoint: str | None = Field(None, alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    otel_exporter_otlp_traces_endpoint: str | None = Field(None, alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    otel_exporter_otlp_headers: SecretStr | None = Field(None, alias="OTEL_EXPORTER_OTLP_HEADERS")
    otel_exporter_otlp_protocol: Literal["http/protobuf"] = Field(
        "http/protobuf", alias="OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    otel_exporter_otlp_timeout: int = Field(5000, alias="OTEL_EXPORTER_OTLP_TIMEOUT", ge=1)
    otel_exporter_zipkin_endpoint: str | None = Field(None, alias="OTEL_EXPORTER_ZIPKIN_ENDPOINT")
    otel_exporter_zipkin_timeout: int = Field(5000, alias="OTEL_EXPORTER_ZIPKIN_TIMEOUT", ge=1)
    otel_service_name: str | None = Field(None, alias="OTEL_SERVICE_NAME")
    otel_resource_attributes: str | None = Field(None, alias="OTEL_RESOURCE_ATTRIBUTES")
    otel_traces_sampler: str = Field("parentbased_always_on", alias="OTEL_TRACES_SAMPLER")
    otel_traces_sampler_arg: float = Field(1.0, alias="OTEL_TRACES_SAMPLER_ARG", ge=0.0, le=1.0)
    # The batch processor: a bounded queue (spans beyond it are dropped, never waited for), a short
    # export timeout (the spec's 30 s would hold a shutdown that long), a delay of 1 s (the spec's 5 s
    # makes an order's trace show up late).
    otel_bsp_schedule_delay: int = Field(1000, alias="OTEL_BSP_SCHEDULE_DELAY", ge=1)
    otel_bsp_export_timeout: int = Field(5000, alias="OTEL_BSP_EXPORT_TIMEOUT", ge=1)
    otel_bsp_max_queue_size: int = Field(2048, alias="OTEL_BSP_MAX_QUEUE_SIZE", ge=1)
    otel_bsp_max_export_batch_size: int = Field(512, alias="OTEL_BSP_MAX_EXPORT_BATCH_SIZE", ge=1)
    # Not an OTEL_ name: where people and `orders trace` read traces (Zipkin's UI and API root).
    # Defaults to the Zipkin endpoint's server.
    traces_url: str | None = Field(None, alias="TRACES_URL")

    @field_validator("otel_traces_exporter")
    @classmethod
    def _exporter(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if value not in EXPORTERS:
            raise ValueError(f"must be one of {', '.join(sorted(EXPORTERS))} (one exporter)")
        return value

    @field_validator("otel_traces_sampler")
    @classmethod
    def _sampler(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in SAMPLERS:
            raise ValueError(f"must be one of {', '.join(sorted(SAMPLERS))}")
        return value

    @property
    def trace_exporter(self) -> ExporterKind | None:
        """The exporter this process uses, or None: tracing off (see the module docstring)."""
        chosen = self.otel_traces_exporter
        if self.otel_sdk_disabled or chosen == "none":
            return None
        if chosen is not None:
            return chosen  # type: ignore[return-value]
        if self.otel_exporter_otlp_traces_endpoint or self.otel_exporter_otlp_endpoint:
            return "otlp"
        if self.otel_exporter_zipkin_endpoint:
            return "zipkin"
        return None

    @property
    def service_name(self) -> str:
        return self.otel_service_name or self.default_service_name

    @property
    def traces_ui(self) -> str | None:
        """The trace backend's root URL (TRACES_URL, or the Zipkin endpoint's server), if known."""
        if self.traces_url:
            return self.traces_url.rstrip("/")
        endpoint = self.otel_exporter_zipkin_endpoint
        if endpoint and endpoint.endswith(ZIPKIN_SPANS_PATH):
            return endpoint.removesuffix(ZIPKIN_SPANS_PATH)
        return None

    @property
    def traces_api(self) -> str | None:
        """Where this process reaches the backend's API (`orders trace`): the Zipkin endpoint's server
        first (inside compose, ``zipkin:9411``, while TRACES_URL is what a browser on the host opens)."""
        endpoint = self.otel_exporter_zipkin_endpoint
        if endpoint and endpoint.endswith(ZIPKIN_SPANS_PATH):
            return endpoint.removesuffix(ZIPKIN_SPANS_PATH)
        return self.traces_ui

    def resource_attributes(self) -> dict[str, str]:
        """OTEL_RESOURCE_ATTRIBUTES (``k=v,k2=v2``, values percent-decoded) and the service name."""
        from urllib.parse import unquote

        attributes: dict[str, str] = {}
        for pair in (self.otel_resource_attributes or "").split(","):
            key, sep, value = pair.partition("=")
            if sep and key.strip():
                attributes[key.strip()] = unquote(value.strip())
        attributes["service.name"] = self.otel_service_name or attributes.get(
            "service.name", self.default_service_name
        )
        return attributes


def trace_link(traces_ui: str | None, trace_id: str | None) -> str | None:
    """Zipkin's page for one trace, when the backend's URL and the trace id are both known."""
    if not traces_ui or not trace_id:
        return None
    return f"{traces_ui}/zipkin/traces/{trace_id}"
