"""The shipped schema versions: v2 evolves v1 as BACKWARD allows, v3 does not; the README walks through it."""

from __future__ import annotations

import json

from orders.registry.compat import incompatibilities, parse_schema
from tests.harness.services import REPO_ROOT

SCHEMAS = REPO_ROOT / "schemas"


def versions() -> list[tuple[int, object]]:
    return [(1, parse_schema((SCHEMAS / "order.avsc").read_text())),
            (2, parse_schema((SCHEMAS / "order-v2.avsc").read_text()))]  # fmt: skip


def test_v2_adds_one_optional_field_with_a_default() -> None:
    v1, v2 = (json.loads((SCHEMAS / name).read_text()) for name in ("order.avsc", "order-v2.avsc"))
    assert v2["fields"][:3] == v1["fields"] and (v2["name"], v2["namespace"]) == (v1["name"], v1["namespace"])
    [added] = v2["fields"][3:]
    assert added["default"] is None and added["type"][0] == "null"


def test_v2_is_backward_and_forward_compatible_with_v1_and_v3_is_refused() -> None:
    v1, v2 = versions()
    assert incompatibilities("FULL", v2[1], [v1]) == []  # type: ignore[list-item]
    v3 = parse_schema((SCHEMAS / "order-v3-incompatible.avsc").read_text())
    problems = incompatibilities("BACKWARD", v3, [v1, v2])  # type: ignore[list-item]
    assert (
        problems[0].startswith("{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE'")
        and "'currency'" in problems[0]
    )


def test_the_readme_walks_through_the_evolution() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for step in ("--schema schemas/order-v2.avsc", "--schema schemas/order-v3-incompatible.avsc",
                 "/config/orders-value", '"error_code": 409'):  # fmt: skip
        assert step in readme, step
