"""KAFKA_* options reach only the clients they apply to; librdkafka's own table decides which."""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest

from orders.core import kafka_options
from orders.core.kafka import create_admin, create_consumer, create_producer
from orders.core.settings import Settings, SettingsError

# What `orders up` and the tests set, and one option of each kind from librdkafka's topic table.
STACK_OPTIONS = {
    "KAFKA_SESSION_TIMEOUT_MS": "6000",  # consumer
    "KAFKA_FETCH_WAIT_MAX_MS": "10",  # consumer
    "KAFKA_AUTO_COMMIT_INTERVAL_MS": "1000",  # consumer (topic table too)
    "KAFKA_COMPRESSION_TYPE": "lz4",  # producer (topic table)
    "KAFKA_BATCH_NUM_MESSAGES": "5000",  # producer
    "KAFKA_SOCKET_KEEPALIVE_ENABLE": "true",  # every client
}


def librdkafka_table() -> dict[str, str]:
    """{property: "C" | "P" | "*"} from rd_kafka_conf_properties_show of the librdkafka in use."""
    package = Path(confluent_kafka.__file__).parent
    candidates = sorted(package.parent.glob("confluent_kafka.libs/librdkafka*.so*"))
    lib = ctypes.CDLL(str(candidates[0]) if candidates else "librdkafka.so.1")
    libc = ctypes.CDLL(None)
    libc.tmpfile.restype = ctypes.c_void_p
    for name, argtypes in (
        ("rewind", [ctypes.c_void_p]),
        ("fclose", [ctypes.c_void_p]),
        ("fread", [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p]),
    ):
        getattr(libc, name).argtypes = argtypes
    lib.rd_kafka_conf_properties_show.argtypes = [ctypes.c_void_p]
    stream = libc.tmpfile()
    lib.rd_kafka_conf_properties_show(stream)
    libc.rewind(stream)
    buffer = ctypes.create_string_buffer(1 << 20)
    size = libc.fread(buffer, 1, len(buffer), stream)
    libc.fclose(stream)
    table = {}
    for line in buffer.raw[:size].decode().splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) > 3 and cells[1] in {"C", "P", "*"}:
            table[cells[0]] = cells[1]
    return table


def test_the_option_sets_match_the_librdkafka_in_use() -> None:
    table = librdkafka_table()
    assert len(table) > 150, "librdkafka's property table was not read"
    assert {name for name, scope in table.items() if scope == "C"} == kafka_options.CONSUMER_ONLY
    assert {name for name, scope in table.items() if scope == "P"} == kafka_options.PRODUCER_ONLY


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def client_warnings(create: Callable[..., Any], settings: Settings) -> list[str]:
    """librdkafka's log lines while ``create`` builds a client (they are delivered on poll)."""
    handler = Warnings()
    logger = logging.getLogger(f"test-librdkafka-{id(handler)}")
    logger.addHandler(handler)
    logger.propagate = False
    client = create(settings, logger=logger)
    client.poll(0.2)
    if hasattr(client, "close"):
        client.close()
    return handler.lines


@pytest.mark.parametrize("create", [create_producer, create_consumer, create_admin])
def test_no_client_warns_about_an_option_meant_for_another(create: Callable[..., Any]) -> None:
    # Before: every producer of `orders up` began its log with "CONFWARN ... session.timeout.ms is a
    # consumer property and will be ignored by this producer instance".
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", **STACK_OPTIONS}, env_file=None)
    lines = client_warnings(create, settings)
    assert not [line for line in lines if "CONFWARN" in line], lines


def test_each_client_gets_the_options_meant_for_it() -> None:
    from orders.core.kafka import admin_config, consumer_config, producer_config

    settings = Settings.from_env(STACK_OPTIONS, env_file=None)
    consumer, producer, admin = consumer_config(settings), producer_config(settings), admin_config(settings)
    assert consumer["session.timeout.ms"] == "6000" and consumer["auto.commit.interval.ms"] == "1000"
    assert "compression.type" not in consumer and "batch.num.messages" not in consumer
    assert producer["compression.type"] == "lz4" and "session.timeout.ms" not in producer
    assert "session.timeout.ms" not in admin and "compression.type" not in admin
    for conf in (consumer, producer, admin):
        assert conf["socket.keepalive.enable"] == "true"


@pytest.mark.parametrize("create", [create_producer, create_consumer, create_admin])
def test_a_misspelt_option_still_stops_every_client(create: Callable[..., Any]) -> None:
    settings = Settings.from_env({"KAFKA_SESION_TIMEOUT_MS": "6000"}, env_file=None)
    with pytest.raises(SettingsError, match="KAFKA_SESION_TIMEOUT_MS"):
        create(settings)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("KAFKA_ACKS", "1"), ("KAFKA_REQUEST_REQUIRED_ACKS", "0"), ("KAFKA_ENABLE_IDEMPOTENCE", "false")],
)
def test_no_variable_weakens_a_producer(variable: str, value: str) -> None:
    """Every producer writes with acks=all and idempotence: an order acknowledged to `orders produce`
    (or a dead letter acknowledged to a worker) must survive the loss of one broker."""
    settings = Settings.from_env({variable: value}, env_file=None)
    with pytest.raises(SettingsError, match=variable):
        create_producer(settings)


def test_the_durable_values_may_be_spelt_out() -> None:
    from orders.core.kafka import producer_config

    settings = Settings.from_env({"KAFKA_ACKS": "-1", "KAFKA_ENABLE_IDEMPOTENCE": "true"}, env_file=None)
    config = producer_config(settings)
    assert config["acks"] == "-1" and config["enable.idempotence"] == "true"
