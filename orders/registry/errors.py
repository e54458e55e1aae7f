"""The dev schema registry's errors, with Confluent's HTTP statuses and error codes.

Clients branch on ``error_code`` (``SchemaRegistryError.error_code``), so the codes and the wording
follow Confluent's Schema Registry: 404xx for missing things, 409 for an incompatible schema,
422xx for invalid input, 500xx for the backing store.
"""

from __future__ import annotations

MAX_VERSION = 2**31 - 1
# Limits of this registry (Confluent has none this low; a dev registry need not hold more): a subject
# names a topic's key or value (topic names stop at 249 characters), and the order schema is ~500 bytes.
MAX_SUBJECT_LENGTH = 255
MAX_SCHEMA_BYTES = 64 * 1024


class RegistryError(Exception):
    """An expected failure of a registry request, answered as ``{"error_code", "message"}``."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message

    def body(self) -> dict[str, int | str]:
        return {"error_code": self.error_code, "message": self.message}


def subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(subject: str, version: int | str) -> RegistryError:
    return RegistryError(404, 40402, f"Version {version} not found for subject '{subject}'.")


def schema_not_found(schema_id: int | str | None = None) -> RegistryError:
    what = "Schema" if schema_id is None else f"Schema {schema_id}"
    return RegistryError(404, 40403, f"{what} not found")


def subject_soft_deleted(subject: str) -> RegistryError:
    return RegistryError(
        404,
        40404,
        f"Subject '{subject}' was soft deleted. Set permanent=true to delete permanently",
    )


def subject_not_soft_deleted(subject: str) -> RegistryError:
    return RegistryError(
        404, 40405, f"Subject '{subject}' was not deleted first before being permanently deleted"
    )


def version_soft_deleted(subject: str, version: int) -> RegistryError:
    return RegistryError(
        404,
        40406,
        f"Subject '{subject}' Version {version} was soft deleted. Set permanent=true to delete permanently",
    )


def version_not_soft_deleted(subject: str, version: int) -> RegistryError:
    return RegistryError(
        404,
        40407,
        f"Subject '{subject}' Version {version} was not deleted first before being permanently deleted",
    )


def subject_level_compatibility_not_configured(subject: str) -> RegistryError:
    return RegistryError(
        404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured"
    )


def incompatible_schema(subject: str, details: list[str]) -> RegistryError:
    return RegistryError(
        409,
        409,
        "Schema being registered is incompatible with an earlier schema "
        f'for subject "{subject}", details: [{", ".join(details)}]',
    )


def invalid_schema(reason: str) -> RegistryError:
    return RegistryError(422, 42201, f"Invalid schema: {reason}")


def invalid_version(version: str) -> RegistryError:
    return RegistryError(
        422,
        42202,
        f"The specified version '{version}' is not a valid version id. "
        f'Allowed values are between [1, {MAX_VERSION}] and the string "latest"',
    )


def invalid_compatibility_level(level: object) -> RegistryError:
    return RegistryError(
        422,
        42203,
        f"Invalid compatibility level {level!r}. Valid values are none, backward, forward, full, "
        "backward_transitive, forward_transitive, and full_transitive",
    )


def invalid_subject(reason: str) -> RegistryError:
    return RegistryError(422, 42208, f"Invalid subject: {reason}")


def schema_too_large(size: int) -> RegistryError:
    return RegistryError(
        422, 42209, f"Schema too large: {size} bytes, this registry takes {MAX_SCHEMA_BYTES}"
    )


def unauthorized() -> RegistryError:
    return RegistryError(401, 401, "Unauthorized")


def bad_request(reason: str) -> RegistryError:
    return RegistryError(400, 400, reason)


def store_error(reason: str) -> RegistryError:
    return RegistryError(500, 50001, f"Error in the backend data store: {reason}")
