"""The tools-tier half of tests/unit/test_runner_actions.py: these run real programs (see tests/tools/__init__.py):
the local pipeline engine, and `inv dr-drill/backups.verify --dry-run` as a user runs them."""
import io
import re
from pathlib import Path

import pytest

from iosops.runner import Runner
from tests.conftest import ROOT, run_inv


def test_local_pipelines_share_one_engine(tmp_path):
    r = Runner(say=lambda s: None)
    assert r.pipe(["printf", "a\\nb\\n"], ["wc", "-l"]).stdout.strip() == "2"
    res = r.pipe(["sh", "-c", "echo inner >&2; exit 4"], ["cat"], check=False)
    assert (res.rc, res.stderr.strip()) == (4, "inner")
    out = tmp_path / "o"
    r.stream(["cat"], source=io.BytesIO(b"streamed"), stdout_path=out)
    assert out.read_bytes() == b"streamed"


def _tree(p: Path) -> set:
    return {str(x) for x in p.rglob("*")} if p.exists() else set()


@pytest.mark.parametrize("task", [["dr-drill", "--image", "iosops/api:no-such-tag"], ["backups.verify"]])
def test_dry_run_task_prints_its_plan_and_changes_nothing(task, tmp_path):
    state = tmp_path / "state"
    drills_before = set(Path("/var/tmp").glob("iosops-drill-*"))
    repo_state = _tree(ROOT / ".iosops" / "metrics")
    proc = run_inv(*task, "--env", "local", "--dry-run",
                   env={"IOSOPS_STATE_DIR": str(state), "IOSOPS_DOCKER__HOST": "unix:///nonexistent/docker.sock"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[-1].startswith("dry-run: ") and lines[-1].endswith("nothing was changed")
    assert any(line.startswith("[dry-run] ") for line in lines)
    if task[0] == "dr-drill":
        assert any(re.match(r"\[dry-run\] mkdir -p -m 755 /var/tmp/iosops-drill-", line) for line in lines)
        assert any(re.match(rf"\[dry-run\] write {state}/drills/\S+\.md ", line) for line in lines)
        assert any(re.match(r"\[dry-run\] rm -rf /var/tmp/iosops-drill-", line) for line in lines)
    assert not state.exists() and set(Path("/var/tmp").glob("iosops-drill-*")) == drills_before
    assert _tree(ROOT / ".iosops" / "metrics") == repo_state
