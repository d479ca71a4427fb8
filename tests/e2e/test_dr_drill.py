"""The headline: `inv dr-drill --size small` end to end, real PostgreSQL/Redis/API container."""
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
    assert names == ["provision", "load dataset", "backup", "keep writing", "disaster", "restore", "api ready",
                     "verify"]
    assert rep["writes"]["committed"] > 0 and rep["writes"]["holes"] is False
    assert all(rep["checks"].values())
    md = report.read_text()
    assert "RTO (disaster → API ready)" in md and "## Timeline" in md
    assert json.loads(report.with_suffix(".json").read_text())["id"] == rep["id"]
