"""(tools tier: runs `inv --list`) The README's task table lists exactly the tasks `inv --list` shows, in its
order, and the collection the other doc checks read (tests/unit/test_docs.py) is the one `inv` lists."""
import json
import subprocess

import pytest

from tests.conftest import INV, ROOT
from tests.unit.test_docs import flags, task_table  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def listed() -> list[str]:
    """Task names as `inv --list` prints them (JSON format: one entry per task, collections nested)."""
    proc = subprocess.run([*INV, "--list", "--list-format=json"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, check=True)
    out: list[str] = []

    def walk(coll: dict, prefix: str) -> None:
        out.extend(prefix + t["name"] for t in coll["tasks"])
        for sub in coll["collections"]:
            walk(sub, f"{prefix}{sub['name']}.")
    walk(json.loads(proc.stdout), "")
    return out


def test_the_collection_and_inv_list_agree(listed, flags):  # noqa: F811 - the imported fixture
    assert sorted(flags) == sorted(listed)


def test_every_task_of_inv_list_is_in_the_readme_task_table_and_nothing_else(listed):
    table = task_table()
    missing = [t for t in listed if t not in table]
    extra = [t for t in table if t not in listed]
    assert not missing, "README Tasks table lacks (add a row `| `TASK` | usage | what it does |`): " + ", ".join(missing)
    assert not extra, "README Tasks table names tasks `inv --list` does not have: " + ", ".join(extra)
    assert list(table) == sorted(table, key=listed.index), "keep the Tasks table in `inv --list` order"
    for name, row in table.items():
        assert len(row) == 3 and row[2], f"Tasks table row {name}: task | usage | one-line description"
