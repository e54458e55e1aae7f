"""What our code imports and what a list of requirements installs, read from the source and metadata.

For the checks deptry cannot make: that each tool's imports come from the base install plus its own
extra (not just from some extra), and that the Docker image installs what compose runs.
"""

from __future__ import annotations

import ast
import functools
import sys
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
OUR_PACKAGES = ("orders", "bridge", "worker")
PROJECT = canonicalize_name("orders-pipeline")


def project() -> dict[str, object]:
    return dict(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"])


def requirements(extras: Iterable[str] = ()) -> list[str]:
    """The base requirements and those of ``extras``, the project's references to its own extras
    expanded from pyproject.toml (the installed metadata may be older than the file)."""
    spec = project()
    optional: dict[str, list[str]] = spec["optional-dependencies"]  # type: ignore[assignment]
    found: list[str] = list(spec["dependencies"])  # type: ignore[call-overload]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in optional[extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == PROJECT:
                todo += sorted(req.extras)
            else:
                found.append(text)
    return found


def distributions(reqs: Iterable[str]) -> set[str]:
    """What `pip install` of these requirements brings, as far as this environment's metadata shows."""
    todo = [(Requirement(text), "") for text in reqs]
    seen: set[tuple[str, str]] = set()
    while todo:
        req, parent_extra = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": parent_extra}):
            continue
        name = canonicalize_name(req.name)
        for extra in ("", *sorted(req.extras)):
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            try:
                requires = metadata.distribution(req.name).requires or []
            except metadata.PackageNotFoundError:
                continue
            todo += [(Requirement(text), extra) for text in requires]
    return {name for name, _extra in seen}


def _source(module: str) -> list[Path]:
    """The files of a first-party module: a package's every module, or the one file."""
    path = ROOT.joinpath(*module.split("."))
    if path.is_dir():
        return sorted(path.rglob("*.py"))
    return [path.with_suffix(".py")] if path.with_suffix(".py").exists() else []


def _imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (a lazy import runs too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def third_party_imports(roots: Iterable[str]) -> dict[str, str]:
    """Top-level third-party modules that ``roots`` (dotted first-party modules or packages) import,
    following our own imports; each with one file importing it."""
    found: dict[str, str] = {}
    todo, done = list(roots), set()
    while todo:
        module = todo.pop()
        if module in done:
            continue
        done.add(module)
        for path in _source(module):
            for name in _imported(path):
                top = name.partition(".")[0]
                if top in OUR_PACKAGES:
                    todo.append(name)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, path.relative_to(ROOT).as_posix())
    return found


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())  # reads every installed distribution: once


def providers(module: str) -> set[str]:
    """The installed distributions that provide top-level ``module``."""
    return {canonicalize_name(d) for d in _packages_distributions().get(module, [])}
