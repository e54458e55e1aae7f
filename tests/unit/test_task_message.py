"""The bridge's message templates without a broker: slots, trace headers, and when Celery builds instead."""

from __future__ import annotations

import json

import pytest

from bridge.amqp_handoff import AmqpHandoff
from bridge.handoff import Handoff
from bridge.main import create_handoff
from bridge.settings import BridgeSettings
from bridge.task_message import TemplateError, json_format, slot, trace_items

TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def test_a_slot_becomes_a_format_field_and_text_keeps_its_percent_signs() -> None:
    text = json.dumps({"a": slot("id"), "b": "100%", "c": [slot("id")]})
    form = json_format(text, {"id": 2})
    value = 'x"%(id)s'
    assert json.loads(form % {"id": json.dumps(value)}) == {"a": value, "b": "100%", "c": [value]}


@pytest.mark.parametrize("times", [0, 2])
def test_a_slot_seen_more_or_less_often_than_expected_is_no_template(times: int) -> None:
    with pytest.raises(TemplateError, match="slot id occurs 1 times"):
        json_format(json.dumps({"a": slot("id")}), {"id": times})


def test_trace_headers_join_the_headers_object_last() -> None:
    headers = json.dumps({"id": "o-1", slot("trace"): slot("trace")})
    form = json_format(headers, {"trace": 1})
    assert json.loads(form % {"trace": trace_items(TRACE, frozenset({"id"}))}) == {"id": "o-1", **TRACE}
    assert json.loads(form % {"trace": trace_items(None, frozenset({"id"}))}) == {"id": "o-1"}
    with pytest.raises(ValueError, match="would replace Celery's own"):
        trace_items({"id": "other"}, frozenset({"id"}))


def _settings(**env: str) -> BridgeSettings:
    return BridgeSettings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0", **env}, env_file=None)


@pytest.mark.parametrize(
    ("env", "templated"),
    [
        ({}, True),
        ({"BRIDGE_HANDOFF": "celery"}, False),
        ({"ORDERS_STOCK_CELERY": "true"}, False),  # the stock lane: Celery and kombu as shipped
        ({"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"}, True),
        ({"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//", "BRIDGE_HANDOFF": "celery"}, False),
    ],
)
def test_the_setting_and_the_stock_lane_choose_how_messages_are_built(
    env: dict[str, str], templated: bool
) -> None:
    handoff = create_handoff(_settings(**env))
    assert isinstance(handoff, AmqpHandoff) == ("CELERY_BROKER_URL" in env)
    assert (handoff._template is not None) == templated


def test_with_task_sent_events_on_celery_builds_every_message() -> None:
    """A task-sent event goes out with each message send_task sends; the template sends none."""
    handoff = create_handoff(_settings())
    handoff._app.conf.task_send_sent_event = True
    assert Handoff(handoff._app, "q")._template is None
