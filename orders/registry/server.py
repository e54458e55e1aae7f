"""`orders registry`: a dev schema registry speaking the Confluent REST API confluent-kafka uses.

Serves what ``SchemaRegistryClient``, ``AvroSerializer`` and ``AvroDeserializer`` call (register,
look up, get by id / guid, versions, compatibility, config, deletes), with Confluent's response
shapes and error bodies. Avro only, no schema references. Handlers here only translate HTTP;
the rules live in ``registry_service``, the state in Redis (``registry_store``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import ssl
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
import tornado.netutil
import tornado.web
from tornado import httputil
from tornado.httpserver import HTTPServer

from orders.core.redis_client import connect_server
from orders.core.settings import redact_url
from orders.registry import errors
from orders.registry.access import BasicAuth, check_listen, server_tls
from orders.registry.compat import AVRO, ParsedSchema, parse_level, parse_schema
from orders.registry.service import RegistryService
from orders.registry.settings import RegistrySettings
from orders.registry.store import Deleted, RegistryStore, StoredSchema, SubjectVersion, check_apart

log = logging.getLogger(__name__)
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# A request body holds one schema (MAX_SCHEMA_BYTES), JSON-escaped: room for the escaping, no more.
MAX_BODY_BYTES = 8 * errors.MAX_SCHEMA_BYTES


def version_json(found: SubjectVersion) -> dict[str, Any]:
    # Like Confluent, "schemaType" and "references" are left out when they are AVRO and empty.
    return {
        "subject": found.subject,
        "version": found.version,
        "id": found.schema.id,
        "guid": found.schema.guid,
        "schema": found.schema.schema,
    }


def schema_json(found: StoredSchema) -> dict[str, Any]:
    return {"schema": found.schema, "guid": found.guid}


class RegistryHandler(tornado.web.RequestHandler):
    """JSON in and out, query flags, and Confluent's ``{"error_code", "message"}`` on errors."""

    def initialize(self, service: RegistryService, auth: BasicAuth | None) -> None:
        self.service = service
        self.auth = auth

    def prepare(self) -> None:
        if self.auth is not None and not self.auth.allows(self.request.headers.get("Authorization")):
            raise errors.unauthorized()

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)

    def send(self, value: object) -> None:
        self.finish(json.dumps(value))

    def flag(self, name: str) -> bool:
        # lookup_schema builds its query by hand, so booleans arrive as "True" as well as "true".
        return self.get_query_argument(name, "false").lower() == "true"

    def deleted(self) -> Deleted:
        if self.flag("deleted_only"):
            return "only"
        return "include" if self.flag("deleted") else "exclude"

    def page(self, items: list[Any]) -> list[Any]:
        """``offset`` / ``limit`` pagination; a negative limit means everything."""
        try:
            offset = int(self.get_query_argument("offset", "0"))
            limit = int(self.get_query_argument("limit", "-1"))
        except ValueError:
            raise errors.bad_request("offset and limit must be integers") from None
        items = items[max(offset, 0) :]
        return items if limit < 0 else items[:limit]

    def body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError as exc:
            raise errors.bad_request(f"request body is not JSON: {exc}") from exc
        except RecursionError:
            raise errors.bad_request("request body is nested too deeply") from None
        if not isinstance(body, dict):
            raise errors.bad_request("request body must be a JSON object")
        return body

    def schema_body(self) -> ParsedSchema:
        body = self.body()
        return parse_schema(body.get("schema"), body.get("schemaType", AVRO), body.get("references"))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, redis.RedisError):
            exc = errors.store_error(str(exc))
        if isinstance(exc, errors.RegistryError):
            self.set_status(exc.status)
            if exc.status == 401:
                self.set_header("WWW-Authenticate", 'Basic realm="schema-registry"')
            self.finish(json.dumps(exc.body()))
        else:
            reason = httputil.responses.get(status_code, "Unknown")
            self.finish(json.dumps({"error_code": status_code, "message": f"HTTP {status_code} {reason}"}))

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Expected errors are the client's business (the access log shows the status); a
        # Redis outage is one line per request, not a traceback each.
        if isinstance(value, errors.RegistryError):
            return
        if isinstance(value, redis.RedisError):
            log.warning("%s %s: redis: %s", self.request.method, self.request.path, value)
            return
        super().log_exception(typ, value, tb)


class NotFound(RegistryHandler):
    def prepare(self) -> None:
        super().prepare()
        raise tornado.web.HTTPError(404)


class Root(RegistryHandler):
    def get(self) -> None:
        self.send({})


class SchemaTypes(RegistryHandler):
    def get(self) -> None:
        self.send([AVRO])


class SchemaById(RegistryHandler):
    def get(self, schema_id: str, part: str | None) -> None:
        found = self.service.schema(int(schema_id))
        if part is None:
            self.send(schema_json(found))
        elif part == "schema":
            self.finish(found.schema)
        else:
            versions = self.service.versions_of_schema(found.id, self.deleted())
            if part == "subjects":
                self.send(self.page(sorted({v.subject for v in versions})))
            else:
                self.send(self.page([{"subject": v.subject, "version": v.version} for v in versions]))


class SchemaByGuid(RegistryHandler):
    def get(self, guid: str) -> None:
        found = self.service.schema_by_guid(guid)
        self.send({"id": found.id, **schema_json(found)})


class Subjects(RegistryHandler):
    def get(self) -> None:
        prefix = self.get_query_argument("subjectPrefix", "")
        self.send(self.page(self.service.subjects(self.deleted(), prefix)))


class Subject(RegistryHandler):
    def post(self, subject: str) -> None:
        """Look up: is this schema registered under the subject?"""
        found = self.service.lookup(subject, self.schema_body(), self.flag("deleted"))
        self.send(version_json(found))

    def delete(self, subject: str) -> None:
        self.send(self.service.delete_subject(subject, self.flag("permanent")))


class SubjectVersions(RegistryHandler):
    def get(self, subject: str) -> None:
        self.send(self.page([v.version for v in self.service.versions(subject, self.deleted())]))

    def post(self, subject: str) -> None:
        """Register; ``normalize`` is accepted and moot, ids always follow the normalized form."""
        found = self.service.register(subject, self.schema_body())
        self.send({"id": found.schema.id, "guid": found.schema.guid, "version": found.version})


class Version(RegistryHandler):
    def get(self, subject: str, version: str, raw: str | None) -> None:
        found = self.service.version(subject, version, self.flag("deleted"))
        if raw:
            self.finish(found.schema.schema)
        else:
            self.send(version_json(found))

    def delete(self, subject: str, version: str, raw: str | None) -> None:
        if raw:
            raise tornado.web.HTTPError(405)
        self.send(self.service.delete_version(subject, version, self.flag("permanent")))


class Compatibility(RegistryHandler):
    def post(self, subject: str, version: str | None) -> None:
        problems = self.service.test_compatibility(subject, self.schema_body(), version)
        answer: dict[str, Any] = {"is_compatible": not problems}
        if self.flag("verbose"):
            answer["messages"] = problems
        self.send(answer)


class Config(RegistryHandler):
    def get(self, subject: str | None) -> None:
        level = self.service.config(subject, self.flag("defaultToGlobal"))
        self.send({"compatibilityLevel": level})

    def put(self, subject: str | None) -> None:
        body = self.body()
        level = parse_level(body.get("compatibility", body.get("compatibilityLevel")))
        self.send({"compatibility": self.service.set_config(subject, level)})

    def delete(self, subject: str | None) -> None:
        self.send({"compatibilityLevel": self.service.delete_config(subject)})


def make_app(service: RegistryService, auth: BasicAuth | None = None) -> tornado.web.Application:
    """The Confluent REST routes; subjects arrive percent-encoded, so ``[^/]+`` spans any name."""
    name = r"([^/]+)"
    routes: list[tuple[str, type[RegistryHandler]]] = [
        (r"/", Root),
        (r"/schemas/types", SchemaTypes),
        (r"/schemas/ids/(\d+)(?:/(schema|subjects|versions))?", SchemaById),
        (rf"/schemas/guids/{name}", SchemaByGuid),
        (r"/subjects", Subjects),
        (rf"/subjects/{name}", Subject),
        (rf"/subjects/{name}/versions", SubjectVersions),
        (rf"/subjects/{name}/versions/{name}(/schema)?", Version),
        (rf"/compatibility/subjects/{name}/versions(?:/{name})?", Compatibility),
        (rf"/config(?:/{name})?", Config),
    ]
    args = {"service": service, "auth": auth}
    return tornado.web.Application(
        [(path, handler, args) for path, handler in routes],
        default_handler_class=NotFound,
        default_handler_args=args,
    )


def serve(
    settings: RegistrySettings,
    host: str,
    port: int,
    certfile: Path | None = None,
    keyfile: Path | None = None,
) -> None:
    """Answer registry requests on ``host:port`` until SIGTERM or SIGINT, then return.

    State lives in ``settings.registry_redis_url`` (never the aggregate's database), so a restarted
    registry hands out the same ids. With
    ``certfile`` it speaks HTTPS; with REGISTRY_BASIC_AUTH every request needs those credentials.
    Raises RegistryStartError before binding when it may not listen as asked.
    """
    auth = BasicAuth.from_setting(settings.registry_basic_auth)
    check_listen(host, auth)
    tls = server_tls(certfile, keyfile)
    # Requests run on the event loop; bounded waits keep a stuck Redis from hanging it for good.
    state_url = settings.registry_redis_url or settings.redis_url
    client = connect_server(state_url)
    check_apart(settings, client)
    app = make_app(RegistryService(RegistryStore(client)), auth)
    try:
        guard = "basic auth" if auth else "no auth"
        details = f"{guard}, state in {redact_url(state_url)}"
        asyncio.run(_serve_until_stopped(app, host, port, tls, details))
    finally:
        client.close()


async def _serve_until_stopped(
    app: tornado.web.Application, host: str, port: int, tls: ssl.SSLContext | None, details: str
) -> None:
    sockets = tornado.netutil.bind_sockets(port, address=host)
    server = HTTPServer(app, ssl_options=tls, max_body_size=MAX_BODY_BYTES)
    server.add_sockets(sockets)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    bound = sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if tls else "http"
    log.info("schema registry listening on %s://%s:%s (%s)", scheme, shown, bound, details)
    await stopped.wait()
    log.info("schema registry stopping")
    server.stop()
    await server.close_all_connections()
