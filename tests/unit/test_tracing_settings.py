"""Tracing's configuration (the OTEL_* variables through each process's settings) and its bounded export."""

from __future__ import annotations

import logging
import sys

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from bridge.settings import BridgeSettings
from orders.core.settings import SettingsError
from orders.core.trace_context import as_kafka_headers, carried, from_request, trace_id_of
from orders.core.trace_export import QuietExporter, build_sampler
from orders.core.tracing import start_tracing
from worker.settings import WorkerSettings

ZIPKIN = "http://127.0.0.1:9411/api/v2/spans"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def settings(**env: str) -> BridgeSettings:
    return BridgeSettings.from_env(env, env_file=None)


@pytest.mark.parametrize(
    ("env", "exporter"),
    [
        ({}, None),  # our departure from the spec: nothing configured, nothing exported
        ({"OTEL_EXPORTER_ZIPKIN_ENDPOINT": ZIPKIN}, "zipkin"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_ZIPKIN_ENDPOINT": ZIPKIN}, None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_ZIPKIN_ENDPOINT": ZIPKIN}, None),
    ],
)
def test_tracing_is_off_unless_an_exporter_or_endpoint_is_configured(
    env: dict[str, str], exporter: str
) -> None:
    assert settings(**env).trace_exporter == exporter


@pytest.mark.parametrize(
    ("name", "value"),
    [("OTEL_TRACES_EXPORTER", "jaeger"), ("OTEL_TRACES_SAMPLER", "xray"), ("OTEL_TRACES_SAMPLER_ARG", "2"),
     ("OTEL_BSP_MAX_QUEUE_SIZE", "0"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
)  # fmt: skip
def test_a_bad_otel_variable_stops_start_up_naming_it(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        settings(**{name: value})


def test_each_process_names_its_own_service_unless_told() -> None:
    assert settings().service_name == "orders-bridge"
    assert WorkerSettings.from_env({}, env_file=None).service_name == "orders-worker"
    assert settings(OTEL_SERVICE_NAME="edge-bridge").resource_attributes()["service.name"] == "edge-bridge"
    attributes = settings(
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=prod,team=a%2Cb"
    ).resource_attributes()
    assert attributes == {"deployment.environment": "prod", "team": "a,b", "service.name": "orders-bridge"}


def test_otlp_headers_are_a_secret() -> None:
    shown = settings(OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer s3cret").redacted()
    assert "s3cret" not in str(shown)


def test_the_trace_backend_url_comes_from_the_zipkin_endpoint_or_traces_url() -> None:
    assert settings(OTEL_EXPORTER_ZIPKIN_ENDPOINT=ZIPKIN).traces_ui == "http://127.0.0.1:9411"
    assert settings(TRACES_URL="http://zipkin:9411/").traces_ui == "http://zipkin:9411"
    assert settings().traces_ui is None


@pytest.mark.parametrize(
    ("sampler", "description"),
    [("parentbased_traceidratio", "ParentBased{root:TraceIdRatioBased{0.01}"),
     ("always_off", "AlwaysOffSampler"), ("traceidratio", "TraceIdRatioBased{0.01}")],
)  # fmt: skip
def test_the_sampler_is_the_one_named(sampler: str, description: str) -> None:
    built = build_sampler(settings(OTEL_TRACES_SAMPLER=sampler, OTEL_TRACES_SAMPLER_ARG="0.01"))
    assert built.get_description().startswith(description)


class Down:
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: object) -> SpanExportResult:
        self.calls += 1
        raise ConnectionError("connection refused")


def test_a_backend_that_is_down_costs_one_warning_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    exporter = QuietExporter(Down(), clock=lambda: now[0])  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="orders.core.trace_export"):
        for second in range(120):
            now[0] = float(second)
            assert exporter.export([]) is SpanExportResult.FAILURE
    warnings = [r for r in caplog.records if "trace export failed" in r.getMessage()]
    assert len(warnings) == 2  # at 0 s and at 60 s
    assert "60 failed batch(es)" in warnings[1].getMessage()
    assert all(r.exc_info is None for r in caplog.records)


def test_configured_without_the_sdk_runs_untraced_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "orders.core.trace_export", None)  # as if the extra were missing
    with caplog.at_level(logging.WARNING, logger="orders.core.tracing"):
        tracing = start_tracing(settings(OTEL_EXPORTER_ZIPKIN_ENDPOINT=ZIPKIN), "test")
    assert not tracing.enabled
    assert "pip install 'orders-pipeline[tracing]'" in caplog.text


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (None, None),
        ([("key", b"x")], None),
        ([("traceparent", TRACEPARENT.encode()), ("other", b"y")], {"traceparent": TRACEPARENT}),
        (
            {"traceparent": TRACEPARENT, "tracestate": "a=1"},
            {"traceparent": TRACEPARENT, "tracestate": "a=1"},
        ),
        ([("traceparent", b"")], None),
    ],
)
def test_untraced_processes_carry_the_trace_headers_unchanged(headers: object, expected: object) -> None:
    assert carried(headers) == expected  # type: ignore[arg-type]


def test_trace_headers_round_trip_through_kafka_and_a_celery_request() -> None:
    kafka = as_kafka_headers({"traceparent": TRACEPARENT})
    assert carried(kafka) == {"traceparent": TRACEPARENT}

    class Request:
        traceparent = TRACEPARENT
        tracestate = None

    assert from_request(Request()) == {"traceparent": TRACEPARENT}
    assert trace_id_of({"traceparent": TRACEPARENT}) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_of({"traceparent": "not-a-traceparent"}) is None
