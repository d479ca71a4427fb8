"""Lock and audit: the holder is named, stale locks are broken, audit lines carry no secrets."""
import json
import os

import pytest

from iosops.errors import LockHeld, OperationFailed
from iosops.ops import AuditLog, EnvLock, operation
from iosops.secretref import Secret


def test_lock_held_names_holder(tmp_path, monkeypatch):
    monkeypatch.setenv("IOSOPS_ACTOR", "alice@laptop")
    EnvLock(tmp_path, "prod").acquire("deploy")
    monkeypatch.setenv("IOSOPS_ACTOR", "bob@ci")
    with pytest.raises(LockHeld, match=r"env prod is locked by alice@laptop since .* running `deploy` \(pid \d+"):
        EnvLock(tmp_path, "prod").acquire("backup")


def test_stale_lock_of_dead_pid_is_removed(tmp_path):
    lock = EnvLock(tmp_path, "local")
    lock.path.parent.mkdir(parents=True)
    import socket
    lock.path.write_text(json.dumps({"who": "ghost", "host": socket.gethostname(), "pid": 2 ** 22 + 12345}))
    notes = lock.acquire("build")
    assert notes and "stale lock of ghost" in notes[0]
    assert lock.holder()["pid"] == os.getpid()


def test_operation_audits_success_and_failure_and_releases(tmp_path):
    Secret("audit-sentinel-42")
    with operation(tmp_path, "local", "build", {"tag": "t1", "registry_password": "p", "note": "audit-sentinel-42"},
                   dry_run=False):
        assert EnvLock(tmp_path, "local").holder()["task"] == "build"
    with pytest.raises(OperationFailed):
        with operation(tmp_path, "local", "build", {"tag": "t2"}, dry_run=False):
            raise OperationFailed("boom")
    rows = AuditLog(tmp_path).tail()
    assert [r["outcome"] for r in rows] == ["ok", "failed"]
    assert rows[0]["args"] == {"tag": "t1", "registry_password": "***", "note": "***"}
    assert rows[1]["error"] == "boom" and rows[1]["exit_code"] == 1
    assert {"ts", "who", "env", "task", "duration_s"} <= set(rows[0])
    assert EnvLock(tmp_path, "local").holder() is None
    assert "audit-sentinel" not in (tmp_path / "audit.log").read_text()


def test_dry_run_takes_no_lock_and_writes_no_audit(tmp_path):
    with operation(tmp_path, "local", "build", {}, dry_run=True):
        assert EnvLock(tmp_path, "local").holder() is None
    assert not (tmp_path / "audit.log").exists()
