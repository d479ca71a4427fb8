"""Table-driven argv tests: each file in tests/unit/cases/ is one case (builder, args, expected argv).
Adding a case adds a file, not code."""
import importlib
import json
from pathlib import Path

import pytest

CASES = sorted((Path(__file__).parent / "cases").glob("*.json"))


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_builder(case):
    spec = json.loads(case.read_text())
    module, _, fn = spec["builder"].rpartition(".")
    builder = getattr(importlib.import_module(module), fn)
    got = builder(*spec.get("args", []), **spec.get("kwargs", {}))
    if isinstance(got, list):
        got = [got[0].rsplit("/", 1)[-1], *got[1:]] if got and got[0].endswith("/docker") else got
    assert got == spec["expected"]


def test_there_are_cases():
    assert len(CASES) >= 8
