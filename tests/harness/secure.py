"""The secured services of the secure-path test: a CA made here, Kafka on SASL_SSL, Redis on TLS only.

- **Certificates.** trustme makes a throw-away CA and one server certificate for ``localhost``,
  ``127.0.0.1`` and ``::1``. Kafka's PEM keystore reads PKCS#8 keys only, so the key trustme writes
  (SEC1, "BEGIN EC PRIVATE KEY") is re-encoded.
- **Kafka.** One KRaft node whose only client listener is SASL_SSL with SCRAM-SHA-512 (users added at
  format time, the KRaft way); the controller listener is mutual TLS with the same certificate.
- **Redis.** ``--port 0`` (no plaintext port at all), TLS on another, a password; both from a config
  file only this user can read.

The registry is the project's own launcher with basic auth and ``tls`` (orders/stack/services.py).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
import trustme
from cryptography.hazmat.primitives import serialization

from orders.stack.services import ApacheKafka, Running, kafka_properties, private_file, redis_binary
from orders.stack.supervisor import Service, free_port

SCRAM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path  # the leaf and its chain
    server_key: Path  # PKCS#8
    server_keystore: Path  # key + chain in one file: Kafka's ssl.keystore.type=PEM


def pkcs8(key_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_certs(out: Path) -> Certs:
    """A CA and a server certificate for loopback (names and addresses), as PEM files in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="orders-pipeline test CA")
    leaf = ca.issue_cert("localhost", "127.0.0.1", "::1", common_name="localhost")
    certs = Certs(out / "ca.pem", out / "server.pem", out / "server.key", out / "server-keystore.pem")
    ca.cert_pem.write_to_path(str(certs.ca))
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    key = pkcs8(leaf.private_key_pem.bytes())
    certs.server_cert.write_bytes(chain)
    private_file(certs.server_key, key.decode())
    private_file(certs.server_keystore, (key + chain).decode())
    return certs


def password() -> str:
    return secrets.token_urlsafe(18)


class SecureKafka(ApacheKafka):
    """Apache Kafka whose only client listener is SASL_SSL (SCRAM-SHA-512 over TLS)."""

    def __init__(self, log_dir: Path, certs: Certs, users: dict[str, str]) -> None:
        self.certs = certs
        # "broker" is the broker's own inter-broker login; "admin" probes readiness.
        self.users = {"broker": password(), "admin": password(), **users}
        super().__init__(log_dir)

    def properties(self) -> str:
        plain = kafka_properties(self.data_dir, self.port, self.controller_port)
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="broker" password="{self.users["broker"]}";'
        )
        secured = {
            "listeners": f"SASL_SSL://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{self.port}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SSL",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": SCRAM,
            "sasl.mechanism.inter.broker.protocol": SCRAM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.certs.server_keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.certs.ca),
            "ssl.endpoint.identification.algorithm": "https",
            # The controller channel is mutual TLS; its certificate's CN is its principal.
            "listener.name.controller.ssl.client.auth": "required",
            "ssl.principal.mapping.rules": "RULE:^CN=([^,]+).*$/$1/,DEFAULT",
        }
        kept = [line for line in plain.splitlines() if line and line.split("=", 1)[0] not in secured]
        return "\n".join([*kept, *(f"{key}={value}" for key, value in secured.items()), ""])

    def format(self, *extra: str) -> None:
        users = [
            arg
            for user, pw in self.users.items()
            for arg in ("--add-scram", f"{SCRAM}=[name={user},password={pw}]")
        ]
        super().format(*users, *extra)

    def client_config(self, user: str = "admin", **overrides: Any) -> dict[str, Any]:
        return {
            "bootstrap.servers": f"127.0.0.1:{self.port}",
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": SCRAM,
            "sasl.username": user,
            "sasl.password": self.users[user],
            "ssl.ca.location": str(self.certs.ca),
            **overrides,
        }

    def ready(self) -> bool:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(self.client_config(log_level=0))
        try:
            return bool(admin.list_topics(timeout=2).brokers)
        except Exception:  # not up yet: any failure to answer means "not ready"
            return False


def tls_redis_url(port: int, pw: str, certs: Certs, db: int = 0) -> str:
    """The one URL redis-py, kombu and Celery all read: TLS, the password, the CA, certificates checked."""
    return (
        f"rediss://:{quote(pw, safe='')}@127.0.0.1:{port}/{db}?ssl_cert_reqs=required&ssl_ca_certs={certs.ca}"
    )


def start_tls_redis(log_dir: Path, certs: Certs, pw: str) -> Running:
    """redis-server with no plaintext port, TLS on a free one, and a password."""
    port = free_port()
    data_dir = log_dir / f"redis-tls-{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    config = "\n".join(
        [
            "port 0",
            f"tls-port {port}",
            "bind 127.0.0.1",
            'save ""',
            f"dir {data_dir}",
            f"tls-cert-file {certs.server_cert}",
            f"tls-key-file {certs.server_key}",
            f"tls-ca-cert-file {certs.ca}",
            "tls-auth-clients no",  # clients prove themselves with the password, not a certificate
            f"requirepass {pw}",
            "",
        ]
    )
    conf = private_file(data_dir / "redis.conf", config)
    url = tls_redis_url(port, pw, certs)
    client = redis.Redis.from_url(url)

    def pings() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    service = Service(f"redis-tls-{port}", [redis_binary(), str(conf)], log_dir).start(pings, timeout=20)
    return Running(service, port, url, data_dir)
