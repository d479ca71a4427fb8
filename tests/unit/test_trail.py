"""Where an env's lock and audit log live, pure parts: the host-side commands (run here with sh against a
temporary directory: the same argv a data host runs over SSH), their parsers, the holder message, stale
detection, the choice of trail per env, and operation() when the trail's host fails at the end.
The checks that run the real programs are in the tools tier: tests/tools/test_trail.py."""
import socket

import pytest

from iosops.commands import lock as cl
from iosops.config import load_env
from iosops.errors import LockHeld, OperationFailed
from iosops.runner import Runner
from iosops.ops import AuditLog, EnvLock, Trail, held_message, is_stale, operation, trail_for
from iosops.secretref import Secret


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
