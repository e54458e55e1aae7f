"""The dev schema registry's state in Redis, so ids survive a restart of the registry.

Keys, all under ``schema-registry:``:

- ``next-id``: the last schema id handed out; ids are global, increasing and never reused.
- ``schema:<id>``: hash of the schema's canonical text, fingerprint and guid. Kept forever, even
  after its subjects are deleted, so records already on a topic stay decodable.
- ``fingerprint:<sha256>`` and ``guid:<uuid>``: the id of that schema.
- ``subjects``: set of subjects with versions (live or soft-deleted).
- ``versions:<subject>``: hash of version -> schema id.
- ``deleted:<subject>``: set of its soft-deleted versions.
- ``config:global``: the global compatibility level; ``config:subjects``: hash subject -> level.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import redis
from redis.client import Pipeline

from orders.core.aggregate import COUNTERS_KEY, LATEST_KEY, TOTALS_KEY
from orders.core.settings import redact_url, same_database
from orders.registry.access import RegistryStartError
from orders.registry.compat import ParsedSchema
from orders.registry.settings import RegistrySettings

log = logging.getLogger(__name__)
PREFIX = "schema-registry:"
Deleted = Literal["exclude", "include", "only"]


@dataclass(frozen=True)
class StoredSchema:
    id: int
    schema: str
    fingerprint: str
    guid: str


@dataclass(frozen=True)
class SubjectVersion:
    subject: str
    version: int
    schema: StoredSchema
    deleted: bool


def text(value: bytes | str) -> str:
    """Redis replies as ``str`` whether or not the client decodes responses itself."""
    return value.decode() if isinstance(value, bytes) else value


def keep(version: SubjectVersion, deleted: Deleted) -> bool:
    """Whether ``version`` passes the ``deleted`` filter of a listing."""
    if deleted == "include":
        return True
    return version.deleted == (deleted == "only")


class RegistryStore:
    """Reads and writes the registry's Redis keys; knows nothing of HTTP or Confluent's errors."""

    def __init__(self, client: redis.Redis, prefix: str = PREFIX) -> None:
        self.client = client
        self.prefix = prefix

    def key(self, *parts: str | int) -> str:
        return self.prefix + ":".join(str(part) for part in parts)

    def schema_by_id(self, schema_id: int, conn: redis.Redis | None = None) -> StoredSchema | None:
        reply = (conn or self.client).hgetall(self.key("schema", schema_id))
        if not reply:
            return None
        fields = {text(k): text(v) for k, v in reply.items()}
        return StoredSchema(schema_id, fields["schema"], fields["fingerprint"], fields["guid"])

    def schema_by_guid(self, guid: str) -> StoredSchema | None:
        schema_id = self.client.get(self.key("guid", guid))
        return None if schema_id is None else self.schema_by_id(int(schema_id))

    def subjects(self) -> list[str]:
        """Every subject with versions, live or soft-deleted, sorted."""
        return sorted(text(s) for s in self.client.smembers(self.key("subjects")))

    def versions(
        self, subject: str, deleted: Deleted = "exclude", conn: redis.Redis | None = None
    ) -> list[SubjectVersion]:
        """The subject's versions passing the ``deleted`` filter, oldest first."""
        conn = conn or self.client
        ids = {int(v): int(i) for v, i in conn.hgetall(self.key("versions", subject)).items()}
        gone = {int(v) for v in conn.smembers(self.key("deleted", subject))}
        found = []
        for version in sorted(ids):
            schema = self.schema_by_id(ids[version], conn)
            assert schema is not None, f"version {version} of {subject!r} names a missing schema"
            found.append(SubjectVersion(subject, version, schema, version in gone))
        return [v for v in found if keep(v, deleted)]

    def register(
        self,
        subject: str,
        parsed: ParsedSchema,
        check: Callable[[list[SubjectVersion]], None],
    ) -> SubjectVersion:
        """Add ``parsed`` as the subject's next version, unless a live version already has it.

        ``check`` receives the live versions and raises to refuse the schema. Everything it looked
        at is WATCHed, so a concurrent registration, delete or config change makes this attempt
        start over instead of writing a version that was checked against stale state.
        """
        watched = [
            self.key("next-id"),
            self.key("fingerprint", parsed.fingerprint),
            self.key("versions", subject),
            self.key("deleted", subject),
            self.key("config", "global"),
            self.key("config", "subjects"),
        ]

        def attempt(pipe: Pipeline) -> SubjectVersion:
            every = self.versions(subject, "include", pipe)
            live = [v for v in every if not v.deleted]
            same = [v for v in live if v.schema.fingerprint == parsed.fingerprint]
            if same:
                return same[-1]
            check(live)
            schema, is_new = self._schema_for(pipe, parsed)
            version = max((v.version for v in every), default=0) + 1
            pipe.multi()
            if is_new:
                self._add_schema(pipe, schema)
            pipe.hset(self.key("versions", subject), str(version), str(schema.id))
            pipe.sadd(self.key("subjects"), subject)
            return SubjectVersion(subject, version, schema, deleted=False)

        with self.client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(*watched)
                    found = attempt(pipe)
                    pipe.execute()
                    return found
                except redis.WatchError:
                    # Something the check looked at changed before EXEC: check again.
                    log.debug("registration under %r raced another writer; retrying", subject)

    def _schema_for(self, pipe: Pipeline, parsed: ParsedSchema) -> tuple[StoredSchema, bool]:
        """The stored schema with this fingerprint, else a new one with the next id (unwritten)."""
        known = pipe.get(self.key("fingerprint", parsed.fingerprint))
        if known is not None:
            stored = self.schema_by_id(int(known), pipe)
            assert stored is not None, f"fingerprint {parsed.fingerprint} names a missing schema"
            return stored, False
        next_id = int(pipe.get(self.key("next-id")) or 0) + 1
        return StoredSchema(next_id, parsed.canonical, parsed.fingerprint, str(uuid.uuid4())), True

    def _add_schema(self, pipe: Pipeline, schema: StoredSchema) -> None:
        pipe.set(self.key("next-id"), schema.id)
        pipe.hset(
            self.key("schema", schema.id),
            mapping={
                "schema": schema.schema,
                "fingerprint": schema.fingerprint,
                "guid": schema.guid,
            },
        )
        pipe.set(self.key("fingerprint", schema.fingerprint), schema.id)
        pipe.set(self.key("guid", schema.guid), schema.id)

    def soft_delete(self, subject: str, versions: Iterable[int]) -> None:
        """Mark versions deleted: hidden from listings and checks, readable with deleted=true."""
        self.client.sadd(self.key("deleted", subject), *[str(v) for v in versions])

    def purge(self, subject: str, versions: Iterable[int]) -> None:
        """Remove versions for good; a subject left with none is forgotten with its config."""
        names = [str(v) for v in versions]

        def attempt(pipe: Pipeline) -> None:
            remaining = {text(v) for v in pipe.hkeys(self.key("versions", subject))} - set(names)
            pipe.multi()
            pipe.hdel(self.key("versions", subject), *names)
            pipe.srem(self.key("deleted", subject), *names)
            if not remaining:
                pipe.srem(self.key("subjects"), subject)
                pipe.hdel(self.key("config", "subjects"), subject)

        self.client.transaction(attempt, self.key("versions", subject))

    def compatibility(self, subject: str | None) -> str | None:
        """The level set for ``subject`` (or the global one for None); None if never set."""
        if subject is None:
            level = self.client.get(self.key("config", "global"))
        else:
            level = self.client.hget(self.key("config", "subjects"), subject)
        return None if level is None else text(level)

    def set_compatibility(self, subject: str | None, level: str) -> None:
        if subject is None:
            self.client.set(self.key("config", "global"), level)
        else:
            self.client.hset(self.key("config", "subjects"), subject, level)

    def clear_compatibility(self, subject: str | None) -> None:
        if subject is None:
            self.client.delete(self.key("config", "global"))
        else:
            self.client.hdel(self.key("config", "subjects"), subject)


def check_apart(settings: RegistrySettings, client: redis.Redis) -> None:
    """Refuse to keep schemas where the aggregate or the Celery queue lives.

    Clearing that database (a FLUSHDB to start the average afresh) would delete every schema, and from
    then on each order would be dead-lettered as ``unknown schema id``. Raises RegistryStartError.
    """
    url = settings.registry_redis_url or settings.redis_url
    for name, other in (("REDIS_URL", settings.redis_url), ("CELERY_BROKER_URL", settings.broker_url)):
        if same_database(url, other):
            raise RegistryStartError(
                f"the registry's state ({redact_url(url)}) would share {name}'s database; set "
                "REGISTRY_REDIS_URL to a database of its own (default: database 2 of REDIS_URL's server)"
            )
    try:
        holds_aggregate = bool(client.exists(TOTALS_KEY, COUNTERS_KEY, LATEST_KEY))
    except redis.RedisError as exc:  # Redis not up yet: requests answer 50001 until it is
        log.warning("could not check %s for the aggregate's keys: %s", redact_url(url), exc)
        return
    if holds_aggregate:
        raise RegistryStartError(
            f"{redact_url(url)} holds the aggregate's keys ({TOTALS_KEY}, ...): the registry needs a "
            "database of its own (REGISTRY_REDIS_URL)"
        )
