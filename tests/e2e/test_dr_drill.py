"""The headline: `inv dr-drill --size small` end to end on the deployed topology: an isolated compose
stack (nginx, API, PostgreSQL, Redis, walstream), writes through nginx, the data host lost, `inv restore`."""
import json

from tests.conftest import run_inv


def test_small_drill_meets_targets_and_writes_reports(tmp_path, offline_images):
    report = tmp_path / "drill.md"
    proc = run_inv("dr-drill", "--env", "local", "--size", "small", "--json", "--report", str(report))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json.loads(proc.stdout)
    assert rep["verified"] is True and rep["targets_met"] is True
    assert 0 < rep["rto_seconds"] <= rep["targets"]["rto_seconds"]
    assert 0 <= rep["rpo_seconds"] <= rep["targets"]["rpo_seconds"]
    names = [p["name"] for p in rep["phases"]]
    assert names == ["deploy", "load dataset", "backup", "keep writing", "disaster", "restore", "api ready",
                     "verify"]
    assert rep["writes"]["acknowledged"] > 0 and rep["writes"]["holes"] is False
    assert rep["writes"]["recovered"] > 0  # writes that only the WAL stream held came back
    assert rep["topology"]["kind"] == "compose" and "pgdata" in rep["topology"]["lost"]
    assert all(rep["checks"].values())
    md = report.read_text()
    assert "RTO (disaster → API /ready through nginx)" in md and "## Timeline" in md
    assert json.loads(report.with_suffix(".json").read_text())["id"] == rep["id"]
