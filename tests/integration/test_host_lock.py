"""The env lock and audit log of a compose env on SSH hosts live on its data host, against a real sshd test
host (iosops/sshd-host): the lock directory exists there while a run holds it, a second run (another
checkout, CI) is refused naming the holder, the audit lines land on the host and `inv lock.*` read them
there; a dead holder elsewhere is named and released by hand, a dead one of this machine is broken."""
import json
import os
import socket
import threading
import uuid

import pytest

from iosops.config import load_env
from iosops.errors import BadInput, LockHeld
from iosops.ops import operation, trail_for
from iosops.runner import Runner
from tests.conftest import free_port, run_inv
from tests.integration import sshhosts
from tests.integration.conftest import docker


@pytest.fixture(scope="module")
def data_host(offline_images, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lockhost")
    key = sshhosts.new_client_key(tmp)
    name = f"iosops-itest-lock-{uuid.uuid4().hex[:6]}"
    try:
        port = sshhosts.start_host(name, key)
        sshhosts.trust(tmp / "known_hosts", port)
        stack = f"iosops-itest-{uuid.uuid4().hex[:6]}"
        vars_ = {"IOSOPS_TARGET": "compose", "IOSOPS_HOSTS__KNOWN_HOSTS_FILE": str(tmp / "known_hosts"),
                 "IOSOPS_HOSTS__HOSTS": json.dumps([{"address": "127.0.0.1", "port": port, "user": "root",
                                                      "key_file": str(key)}]),
                 "IOSOPS_STACK__NAME": stack}
        yield {"vars": vars_, "name": name, "port": port, "dir": f"/srv/iosops/{stack}",
               "where": f"root@127.0.0.1:{port}:/srv/iosops/{stack}/lock"}
    finally:
        sshhosts.remove(name)


@pytest.fixture
def clean(data_host):
    docker("exec", data_host["name"], "rm", "-rf", data_host["dir"])
    yield data_host
    docker("exec", data_host["name"], "rm", "-rf", data_host["dir"])


def on_host(h, *argv) -> str:
    return docker("exec", h["name"], *argv).stdout


def audit_on_host(h) -> list[dict]:
    return [json.loads(l) for l in on_host(h, "sh", "-c", f"cat {h['dir']}/audit.log 2>/dev/null").splitlines()]


def one_error(proc, code):
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == code and len(lines) == 1 and lines[0].startswith("error: "), (proc.returncode, proc.stderr)
    return lines[0]


def test_lock_on_the_data_host_excludes_a_second_run_and_the_audit_lands_there(clean, monkeypatch):
    h = clean
    monkeypatch.setenv("IOSOPS_ACTOR", "alice@checkout-a")
    env = load_env("staging", environ=h["vars"])
    with operation(trail_for(env, runner=Runner()), env.name, "deploy", {"tag": "t1", "registry_password": "hunter2"},  # pragma: allowlist secret - a sentinel that must not reach the log
                   dry_run=False) as ctx:
        info = json.loads(on_host(h, "cat", f"{h['dir']}/lock/info.json"))  # the lock is on the host
        assert (info["who"], info["task"], info["pid"], info["host"]) == (
            "alice@checkout-a", "deploy", os.getpid(), socket.gethostname())
        # another checkout / CI, through the real task: refused naming the holder, nothing run
        other = {**h["vars"], "IOSOPS_ACTOR": "bob@ci"}
        line = one_error(run_inv("provision", "--env", "staging", env=other), 1)
        assert line == (f"error: env staging is locked by alice@checkout-a since {info['since']} running `deploy` "
                        f"(pid {os.getpid()} on {socket.gethostname()}; lock at {h['where']}); wait for it, or if "
                        "that run is dead: inv lock.release --env staging")
        status = run_inv("lock.status", "--env", "staging", "--json", env=other)
        assert status.returncode == 0 and json.loads(status.stdout)["who"] == "alice@checkout-a", status.stderr
        # a second acquire in this process too (another trail, its own SSH session)
        with pytest.raises(LockHeld, match="locked by alice@checkout-a"):
            trail_for(env, runner=Runner()).lock.acquire("backup")
        # a dry-run takes no lock: it plans while the lock is held
        assert run_inv("provision", "--env", "staging", "--dry-run", env=other).returncode == 0
    assert on_host(h, "sh", "-c", f"test -e {h['dir']}/lock && echo held") == ""  # released
    rows = audit_on_host(h)
    assert [(r["run"], r["task"], r["who"], r["outcome"]) for r in rows] == [(ctx["run"], "deploy", "alice@checkout-a", "ok")]
    assert rows[0]["args"] == {"tag": "t1", "registry_password": "***"}  # the refused run wrote nothing
    shown = run_inv("lock.audit", "--env", "staging", "--run", ctx["run"], "--json", env=h["vars"])
    assert shown.returncode == 0 and [r["run"] for r in json.loads(shown.stdout)] == [ctx["run"]], shown.stderr
    assert "hunter2" not in on_host(h, "cat", f"{h['dir']}/audit.log") + shown.stdout


def test_a_failed_run_is_audited_on_the_host_and_releases(clean, monkeypatch):
    h = clean
    env = load_env("staging", environ=h["vars"])
    with pytest.raises(BadInput):
        with operation(trail_for(env, runner=Runner()), env.name, "restore", {}, dry_run=False):
            raise BadInput("no such backup")
    assert on_host(h, "sh", "-c", f"test -e {h['dir']}/lock && echo held") == ""
    assert [(r["task"], r["outcome"], r["exit_code"], r["error"]) for r in audit_on_host(h)] == [
        ("restore", "failed", 2, "no such backup")]


def test_a_dead_holder_elsewhere_is_named_and_released_by_hand(clean):
    h = clean
    info = {"who": "ci@runner-7", "host": "runner-7", "pid": 4242, "since": "2026-12-01T03:00:00+00:00",
            "task": "backup", "reason": "", "owner": "f" * 32}
    assert docker("exec", h["name"], "sh", "-c", f"mkdir -p {h['dir']}/lock && printf '%s' '{json.dumps(info)}' "
                  f"> {h['dir']}/lock/info.json").returncode == 0
    line = one_error(run_inv("provision", "--env", "staging", env=h["vars"]), 1)
    assert "locked by ci@runner-7 since 2026-12-01T03:00:00+00:00 running `backup` (pid 4242 on runner-7" in line
    assert line.endswith("if that run is dead: inv lock.release --env staging")  # its pid cannot be checked from here
    released = run_inv("lock.release", "--env", "staging", "--yes", env={**h["vars"], "IOSOPS_ACTOR": "oncall@laptop"})
    assert released.returncode == 0 and released.stdout.strip() == f"released lock of ci@runner-7 ({h['where']})"
    assert on_host(h, "sh", "-c", f"test -e {h['dir']}/lock && echo held") == ""
    assert [(r["task"], r["who"], r["args"]) for r in audit_on_host(h)] == [
        ("lock.release", "oncall@laptop", {"holder": "ci@runner-7"})]
    again = run_inv("lock.release", "--env", "staging", "--yes", env=h["vars"])
    assert again.returncode == 0 and again.stdout.startswith("no change: env staging was not locked")


def test_a_stale_lock_of_this_machine_is_broken(clean):
    h = clean
    ghost = {"who": "ghost", "host": socket.gethostname(), "pid": 2 ** 22 + 12345, "since": "x", "task": "deploy",
             "owner": "0" * 32}
    assert docker("exec", h["name"], "sh", "-c", f"mkdir -p {h['dir']}/lock && printf '%s' '{json.dumps(ghost)}' "
                  f"> {h['dir']}/lock/info.json").returncode == 0
    trail = trail_for(load_env("staging", environ=h["vars"]), runner=Runner())
    try:
        notes = trail.lock.acquire("deploy")
        assert notes == [f"removed stale lock of ghost (pid {2 ** 22 + 12345} on this machine is gone)"]
        assert json.loads(on_host(h, "cat", f"{h['dir']}/lock/info.json"))["pid"] == os.getpid()
    finally:
        trail.lock.release()
        trail.close()
    assert on_host(h, "sh", "-c", f"test -e {h['dir']}/lock && echo held") == ""


def test_of_concurrent_acquires_exactly_one_wins(clean):
    h = clean
    env = load_env("staging", environ=h["vars"])
    trails = [trail_for(env, runner=Runner()) for _ in range(3)]
    start = threading.Barrier(len(trails))
    got: list = [None] * len(trails)

    def take(i):
        start.wait()
        try:
            trails[i].lock.acquire(f"task-{i}")
            got[i] = "won"
        except LockHeld:
            got[i] = "refused"

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(trails))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(got) == ["refused", "refused", "won"], got
    winner = got.index("won")
    assert json.loads(on_host(h, "cat", f"{h['dir']}/lock/info.json"))["task"] == f"task-{winner}"
    for t in trails:
        t.lock.release()  # only the winner's owner id matches: the others leave it alone
        t.close()
    assert on_host(h, "sh", "-c", f"test -e {h['dir']}/lock && echo held") == ""


def test_an_unreachable_data_host_is_bad_input_and_nothing_changes(data_host):
    dead = free_port()
    vars_ = {**data_host["vars"], "IOSOPS_HOSTS__CONNECT_TIMEOUT_S": "3", "IOSOPS_HOSTS__HOSTS": json.dumps(
        [{"address": "127.0.0.1", "port": dead, "user": "root", "roles": ["web", "data"]}])}
    line = one_error(run_inv("provision", "--env", "staging", env=vars_), 2)
    assert line.startswith(f"error: env staging: its lock cannot be taken on the data host root@127.0.0.1:{dead}")
    assert line.endswith("nothing was changed")
