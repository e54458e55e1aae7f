"""How the dev registry reads a version id in a URL (``latest``, ``-1`` or 1..2^31-1)."""

from __future__ import annotations

import pytest

from orders.registry.errors import RegistryError
from orders.registry.service import parse_version


@pytest.mark.parametrize(
    ("text", "version"),
    [("latest", None), ("-1", None), ("1", 1), ("42", 42), ("2147483647", 2**31 - 1)],
)
def test_valid_version_ids(text: str, version: int | None) -> None:
    assert parse_version(text) == version


@pytest.mark.parametrize("text", ["0", "-2", "2147483648", "LATEST", "first", "1.0", ""])
def test_invalid_version_ids_are_refused_with_42202(text: str) -> None:
    with pytest.raises(RegistryError) as refused:
        parse_version(text)
    assert (refused.value.status, refused.value.error_code) == (422, 42202)
    assert repr(text) in refused.value.message
