"""Where an env's lock and audit log live, pure parts: the host-side commands (run here with sh against a
temporary directory: the same argv a data host runs over SSH), their parsers, the holder message, stale
detection, the choice of trail per env, and operation() when the trail's host fails at the end."""
import json
import socket
import subprocess

import pytest

from iosops.commands import lock as cl
from iosops.config import load_env
from iosops.errors import LockHeld, OperationFailed
from iosops.runner import Runner
from iosops.ops import AuditLog, EnvLock, Trail, held_message, is_stale, operation, trail_for
from iosops.secrets import Secret


def sh(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=10)


def test_lock_commands_take_once_read_and_release_only_their_own(tmp_path):
    d = str(tmp_path / "srv" / "stack")
    assert sh(cl.lock_read(d)).stdout == ""  # not locked; the directory need not exist
    first = sh(cl.lock_take(d, json.dumps({"who": "alice", "owner": "own-a"})))
    assert first.returncode == 0, first.stderr
    assert cl.parse_holder(sh(cl.lock_read(d)).stdout) == {"who": "alice", "owner": "own-a"}
    second = sh(cl.lock_take(d, json.dumps({"who": "bob", "owner": "own-b"})))
    assert second.returncode == cl.HELD
    assert cl.parse_holder(sh(cl.lock_read(d)).stdout)["who"] == "alice"  # the winner's info is untouched
    assert sh(cl.lock_release(d, "own-b")).returncode == cl.NOT_OURS  # bob cannot release alice's lock
    assert (tmp_path / "srv" / "stack" / "lock").is_dir()
    assert sh(cl.lock_release(d, "own-a")).returncode == 0
    assert not (tmp_path / "srv" / "stack" / "lock").exists()
    assert sh(cl.lock_take(d, "{}")).returncode == 0 and sh(cl.lock_release(d)).returncode == 0  # force


def test_lock_without_holder_info_reads_as_unknown_holder(tmp_path):
    (tmp_path / "lock").mkdir()
    assert cl.parse_holder(sh(cl.lock_read(str(tmp_path))).stdout) == {}


def test_lock_take_says_why_it_cannot_create_the_directory(tmp_path):
    (tmp_path / "file").write_text("")
    r = sh(cl.lock_take(str(tmp_path / "file"), "{}"))
    assert r.returncode not in (0, cl.HELD) and "file" in r.stderr


def test_audit_commands_append_one_line_per_record_and_tail(tmp_path):
    d = str(tmp_path / "stack")
    for i in range(3):
        assert sh(cl.audit_append(d, cl.audit_line({"run": f"r{i}", "args": {"note": "it's \"quoted\"\nnewline"}}))).returncode == 0
    text = (tmp_path / "stack" / "audit.log").read_text()
    assert len(text.splitlines()) == 3
    rows = cl.parse_audit(sh(cl.audit_tail(d, 2)).stdout)
    assert [r["run"] for r in rows] == ["r1", "r2"] and rows[0]["args"]["note"] == "it's \"quoted\"\nnewline"
    assert sh(cl.audit_tail(str(tmp_path / "none"), 5)).stdout == ""


def test_audit_line_redacts_secrets():
    Secret("trail-sentinel-77")
    line = cl.audit_line({"args": {"x": "use trail-sentinel-77 here"}})
    assert "trail-sentinel-77" not in line and "\n" not in line


@pytest.mark.parametrize("stdout,want", [("", None), ("  \n", None), ("{}", {}), ("not json", {}),
                                         ('["x"]', {}), ('{"who": "a"}\n', {"who": "a"})])
def test_parse_holder(stdout, want):
    assert cl.parse_holder(stdout) == want


def test_parse_audit_skips_torn_lines():
    assert cl.parse_audit('{"run": "a"}\n{"run": \n[1]\n{"run": "b"}\n') == [{"run": "a"}, {"run": "b"}]


def test_held_message_names_holder_where_and_how_to_release():
    h = {"who": "alice@laptop", "since": "2026-12-02T10:00:00+00:00", "task": "deploy", "pid": 42, "host": "laptop"}
    msg = held_message("staging", h, "root@db1:22:/srv/iosops/iosops-staging/lock")
    assert msg == ("env staging is locked by alice@laptop since 2026-12-02T10:00:00+00:00 running `deploy` (pid 42 on "
                   "laptop; lock at root@db1:22:/srv/iosops/iosops-staging/lock); wait for it, or if that run is dead: "
                   "inv lock.release --env staging")
    assert "holder unknown" in held_message("staging", {}, "x") and "inv lock.release --env staging" in held_message("staging", {})


def test_stale_only_when_the_holder_ran_here_and_its_pid_is_gone():
    dead, alive = (lambda pid: False), (lambda pid: True)
    assert is_stale({"host": "me", "pid": 5}, "me", dead)
    assert not is_stale({"host": "me", "pid": 5}, "me", alive)
    assert not is_stale({"host": "ci-runner", "pid": 5}, "me", dead)  # another machine: cannot tell
    assert not is_stale({"host": "me"}, "me", dead)


def test_trail_is_on_the_data_host_for_an_env_on_ssh_hosts(tmp_path):
    staging = load_env("staging", environ={"IOSOPS_STATE_DIR": str(tmp_path)})
    t = trail_for(staging, runner=Runner())
    assert t.lock.where == "root@db1.staging.ios.internal:22:/srv/iosops/iosops-staging/lock"
    assert (t.audit.at, str(t.audit.path)) == ("root@db1.staging.ios.internal:22", "/srv/iosops/iosops-staging/audit.log")
    assert t.flags == ""
    here = trail_for(staging, here=True)
    assert isinstance(here.lock, EnvLock) and here.flags == " --here" and here.lock.path.parent.parent == tmp_path
    local = trail_for(load_env("local", environ={"IOSOPS_STATE_DIR": str(tmp_path)}))
    assert isinstance(local.lock, EnvLock) and local.flags == ""
    prod = trail_for(load_env("prod", environ={"IOSOPS_STATE_DIR": str(tmp_path)}))  # kubernetes: this machine
    assert isinstance(prod.lock, EnvLock)


class BrokenHostAudit(AuditLog):
    def __init__(self, state_dir):
        super().__init__(state_dir)
        self.at = "root@db1:22"

    def append(self, record):
        raise OperationFailed("ssh root@db1:22: NoValidConnectionsError")


class BrokenReleaseLock(EnvLock):
    def release(self):
        super().release()
        raise OperationFailed("ssh root@db1:22: timeout")


def test_a_trail_host_failing_at_the_end_warns_and_keeps_the_outcome(tmp_path):
    said = []
    trail = Trail(EnvLock(tmp_path, "staging"), BrokenHostAudit(tmp_path))
    with pytest.raises(OperationFailed, match="^boom$"):
        with operation(trail, "staging", "deploy", {"tag": "t1"}, dry_run=False, say=said.append):
            raise OperationFailed("boom")
    assert EnvLock(tmp_path, "staging").holder() is None  # released although the audit line failed
    assert said[0].startswith("warning: the audit line could not be written at root@db1:22:")
    assert '"outcome": "failed"' in said[0] and '"tag": "t1"' in said[0]  # the line is not lost
    said.clear()
    trail = Trail(BrokenReleaseLock(tmp_path, "staging"), AuditLog(tmp_path), " --here")
    with operation(trail, "staging", "deploy", {}, dry_run=False, say=said.append):
        pass
    assert said == [f"warning: the lock at {socket.gethostname()}:{tmp_path}/locks/staging.lock could not be released "
                    "(ssh root@db1:22: timeout); release it with inv lock.release --env staging --here"]


def test_lock_held_through_a_trail_names_the_holder(tmp_path, monkeypatch):
    monkeypatch.setenv("IOSOPS_ACTOR", "alice@laptop")
    trail = Trail(EnvLock(tmp_path, "staging"), AuditLog(tmp_path))
    with operation(trail, "staging", "deploy", {}, dry_run=False):
        monkeypatch.setenv("IOSOPS_ACTOR", "bob@ci")
        with pytest.raises(LockHeld, match="locked by alice@laptop .* running `deploy`"):
            with operation(Trail(EnvLock(tmp_path, "staging"), AuditLog(tmp_path)), "staging", "backup", {},
                           dry_run=False):
                pass
    assert [r["task"] for r in AuditLog(tmp_path).tail()] == ["deploy"]  # the refused run wrote no line
