"""worker/fast_path.py's docstring lists every internal the fast path touches: one contract test each."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from tests.contract.contract import Contract

HERE = Path(__file__).parent
LISTED = re.compile(r"^\s+([KCBHR]\d+)\s", re.MULTILINE)


def _contracts() -> dict[str, Contract]:
    found: dict[str, Contract] = {}
    for path in sorted(HERE.glob("test_*.py")):
        module = importlib.import_module(f"tests.contract.{path.stem}")
        found.update({c.id: c for c in vars(module).values() if isinstance(c, Contract)})
    return found


def test_the_fast_paths_docstring_and_the_contract_tests_name_the_same_internals() -> None:
    import worker.fast_path

    listed = LISTED.findall(worker.fast_path.__doc__ or "")
    twice = sorted({i for i in listed if listed.count(i) > 1})
    assert not twice, f"listed twice: {twice}"
    tested = _contracts()
    assert set(listed) == set(tested), (
        f"listed without a contract test: {sorted(set(listed) - set(tested))}; "
        f"tested but not listed in worker/fast_path.py: {sorted(set(tested) - set(listed))}"
    )
    tests = [
        name for path in HERE.glob("test_*.py") for name in re.findall(r"def (test_\w+)", path.read_text())
    ]
    untested = [i for i in tested if not any(name.startswith(f"test_{i.lower()}_") for name in tests)]
    assert not untested, f"contracts without a test_<id>_... function: {untested}"
