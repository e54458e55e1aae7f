"""The dev schema registry's rules: Confluent's semantics for subjects, versions and config.

Sits between the HTTP handlers (``orders.registry.server``) and Redis (``orders.registry.store``): decides
which version "latest" means, what a soft delete hides, which level applies, and which Confluent
error a request gets.
"""

from __future__ import annotations

from orders.registry import errors
from orders.registry.compat import (
    DEFAULT_LEVEL,
    Level,
    ParsedSchema,
    incompatibilities,
    parse_level,
    parse_schema,
)
from orders.registry.store import Deleted, RegistryStore, StoredSchema, SubjectVersion

LATEST = ("latest", "-1")


def parse_version(text: str) -> int | None:
    """``"latest"`` / ``"-1"`` -> None, ``"3"`` -> 3; raises 42202 for anything else."""
    if text in LATEST:
        return None
    try:
        version = int(text)
    except ValueError:
        raise errors.invalid_version(text) from None
    if not 1 <= version <= errors.MAX_VERSION:
        raise errors.invalid_version(text)
    return version


def check_subject(subject: str) -> None:
    """A subject this registry will store: 1-255 printable characters; raises 42208."""
    if not 0 < len(subject) <= errors.MAX_SUBJECT_LENGTH:
        raise errors.invalid_subject(f"must be 1 to {errors.MAX_SUBJECT_LENGTH} characters")
    if not subject.isprintable():
        raise errors.invalid_subject("control characters are not allowed")


def pick(versions: list[SubjectVersion], subject: str, text: str) -> SubjectVersion:
    """The version ``text`` names among ``versions`` (oldest first); raises 42202 or 40402."""
    wanted = parse_version(text)
    if wanted is None and versions:
        return versions[-1]
    for candidate in versions:
        if candidate.version == wanted:
            return candidate
    raise errors.version_not_found(subject, text)


class RegistryService:
    """What each registry endpoint does, in Confluent's terms; raises ``RegistryError``."""

    def __init__(self, store: RegistryStore) -> None:
        self.store = store

    def schema(self, schema_id: int) -> StoredSchema:
        found = self.store.schema_by_id(schema_id)
        if found is None:
            raise errors.schema_not_found(schema_id)
        return found

    def schema_by_guid(self, guid: str) -> StoredSchema:
        found = self.store.schema_by_guid(guid)
        if found is None:
            raise errors.schema_not_found(guid)
        return found

    def versions_of_schema(self, schema_id: int, deleted: Deleted) -> list[SubjectVersion]:
        """Every (subject, version) registered with this id; raises 40403 for an unknown id."""
        self.schema(schema_id)
        return [
            version
            for subject in self.store.subjects()
            for version in self.store.versions(subject, deleted)
            if version.schema.id == schema_id
        ]

    def subjects(self, deleted: Deleted, prefix: str = "") -> list[str]:
        """Subjects with a version passing the ``deleted`` filter ("only": wholly soft-deleted)."""
        found = []
        for subject in self.store.subjects():
            if not subject.startswith(prefix):
                continue
            versions = self.store.versions(subject, "include")
            is_live = any(not v.deleted for v in versions)
            if deleted == "include" or is_live == (deleted == "exclude"):
                found.append(subject)
        return found

    def versions(self, subject: str, deleted: Deleted = "exclude") -> list[SubjectVersion]:
        """The subject's versions, oldest first; raises 40401 when none passes the filter."""
        versions = self.store.versions(subject, deleted)
        if not versions:
            raise errors.subject_not_found(subject)
        return versions

    def version(self, subject: str, text: str, deleted: bool = False) -> SubjectVersion:
        """One version ("latest" = newest live one); raises 42202, 40401 or 40402."""
        parse_version(text)
        return pick(self.versions(subject, "include" if deleted else "exclude"), subject, text)

    def register(self, subject: str, parsed: ParsedSchema) -> SubjectVersion:
        """Register under ``subject``; the same schema again returns its existing version and id.

        Raises 409 when the subject's compatibility level refuses the schema, 42208 for a bad subject.
        """
        check_subject(subject)

        def check(live: list[SubjectVersion]) -> None:
            level = self.level(subject)
            problems = incompatibilities(level, parsed, _parsed(live))
            if problems:
                raise errors.incompatible_schema(subject, problems)

        return self.store.register(subject, parsed, check)

    def lookup(self, subject: str, parsed: ParsedSchema, deleted: bool) -> SubjectVersion:
        """The newest version of ``subject`` holding this schema; raises 40401 or 40403."""
        versions = self.versions(subject, "include" if deleted else "exclude")
        same = [v for v in versions if v.schema.fingerprint == parsed.fingerprint]
        if not same:
            raise errors.schema_not_found()
        return same[-1]

    def test_compatibility(self, subject: str, parsed: ParsedSchema, text: str | None) -> list[str]:
        """Why ``parsed`` may not be registered, against one version (``text``) or as registering
        would check it (``None``). An empty list means compatible; so does an empty subject."""
        live = self.store.versions(subject)
        if text is None:
            against = live
        elif not live and parse_version(text) is None:
            against = []  # "latest" of an empty subject: anything goes, as with Confluent
        else:
            against = [pick(self.versions(subject), subject, text)]
        return incompatibilities(self.level(subject), parsed, _parsed(against))

    def delete_subject(self, subject: str, permanent: bool) -> list[int]:
        """Soft-delete the live versions, or purge a soft-deleted subject; returns the versions."""
        every = self.versions(subject, "include")
        live = [v.version for v in every if not v.deleted]
        if permanent:
            if live:
                raise errors.subject_not_soft_deleted(subject)
            self.store.purge(subject, [v.version for v in every])
            return [v.version for v in every]
        if not live:
            raise errors.subject_soft_deleted(subject)
        self.store.soft_delete(subject, live)
        return live

    def delete_version(self, subject: str, text: str, permanent: bool) -> int:
        """Soft-delete a live version, or purge a soft-deleted one; raises 4040x otherwise."""
        every = self.versions(subject, "include")
        # "latest" is the newest live version, except for a purge (which only takes deleted ones).
        by_number = permanent or parse_version(text) is not None
        target = pick(every if by_number else [v for v in every if not v.deleted], subject, text)
        if permanent and not target.deleted:
            raise errors.version_not_soft_deleted(subject, target.version)
        if not permanent and target.deleted:
            raise errors.version_soft_deleted(subject, target.version)
        (self.store.purge if permanent else self.store.soft_delete)(subject, [target.version])
        return target.version

    def level(self, subject: str | None = None) -> Level:
        """The level in force: the subject's own, else the global one, else BACKWARD."""
        own = self.store.compatibility(subject) if subject is not None else None
        return parse_level(own or self.store.compatibility(None) or DEFAULT_LEVEL)

    def config(self, subject: str | None, default_to_global: bool) -> Level:
        """``GET /config[/subject]``; raises 40408 for a subject without its own level."""
        if subject is None or default_to_global:
            return self.level(subject)
        own = self.store.compatibility(subject)
        if own is None:
            raise errors.subject_level_compatibility_not_configured(subject)
        return parse_level(own)

    def set_config(self, subject: str | None, level: Level) -> Level:
        if subject is not None:
            check_subject(subject)
        self.store.set_compatibility(subject, level)
        return level

    def delete_config(self, subject: str | None) -> Level:
        """Drop a level (the global one falls back to BACKWARD); returns the level dropped."""
        old = self.config(subject, default_to_global=False)
        self.store.clear_compatibility(subject)
        return old


def _parsed(versions: list[SubjectVersion]) -> list[tuple[int, ParsedSchema]]:
    return [(v.version, parse_schema(v.schema.schema)) for v in versions]
