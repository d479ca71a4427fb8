"""The day-2 tasks for real, as operators run them (`inv` subprocesses), against a stack deployed on this
machine by `inv deploy` (its own project name, ports, state dir and image repositories; label
iosops.test=1): status, logs (and --follow ended by Ctrl-C), exec, db.psql, maintenance through nginx,
images.prune. Requests go to 127.0.0.1 only. The SSH side of the same code: tests/unit/test_day2_plan.py."""
import json
import os
import signal
import subprocess
import threading
import time
import uuid

import pytest
import requests
import urllib3

from tests.conftest import INV, ROOT, TEST_STATE
from tests.integration.conftest import deployed_stack, docker, ops_of

urllib3.disable_warnings()
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]


@pytest.fixture(scope="module")
def st(api_image, offline_images, tmp_path_factory):
    """One deployed stack whose images live in repositories of its own, so images.prune on this shared
    engine can only ever touch this test's tags."""
    repo = f"iosops-itest-d2{uuid.uuid4().hex[:6]}"
    tag = api_image.image.rsplit(":", 1)[1]
    api, ops = f"{repo}/api:{tag}", f"{repo}/ops:{tag}"
    assert docker("tag", api_image.image, api).returncode == 0
    assert docker("tag", ops_of(api_image.image), ops).returncode == 0
    try:
        with deployed_stack(api_image, tmp_path_factory, "d2", IOSOPS_BUILD__REPOSITORY=f"{repo}/api",
                            IOSOPS_BUILD__OPS_REPOSITORY=f"{repo}/ops", IOSOPS_ACTOR="itest@day2") as s:
            s.update(repo=repo, api=api, ops=ops)
            yield s
    finally:
        for ref in (api, ops, f"{repo}/api:old", f"{repo}/ops:old"):
            docker("rmi", ref)


def inv(st, *args, timeout=300):
    env = {**os.environ, "IOSOPS_STATE_DIR": str(TEST_STATE), **st["vars"]}
    return subprocess.run([*INV, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def get(st, path):
    return requests.get(f"https://127.0.0.1:{st['https']}{path}", verify=False, timeout=10)


def test_status_shows_the_live_colour_and_healthy_replicas(st):
    p = inv(st, "status", "--env", "local", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    (h,) = data["hosts"]
    assert h["host"] == "local" and h["roles"] == ["data", "web"] and h["active"] == "blue"
    blue = h["colours"]["blue"]
    assert blue["image"] == st["api"] and (blue["running"], blue["healthy"]) == (1, 1)
    assert h["colours"]["green"]["running"] == 0 and h["nginx"]["healthy"] == 1 and h["maintenance"] is False
    assert {k: v["healthy"] for k, v in h["datastores"].items()} == {"postgres": 1, "redis": 1}
    assert h["walstream"]["healthy"] == 1
    assert h["last_deploy"]["by"] == "itest@day2" and h["last_deploy"]["release"] == st["api"].rsplit(":", 1)[1]
    assert data["lock"]["holder"] is None and data["ok"], data
    text = inv(st, "status", "--env", "local")
    assert text.returncode == 0 and "live colour: blue" in text.stdout and "problems: none" in text.stdout


def test_logs_merge_nginx_and_the_api_with_prefixes_and_follow_ends_on_ctrl_c(st):
    assert get(st, "/health").status_code == 200  # a line in nginx's access log
    name = st["name"]
    p = inv(st, "logs", "--env", "local", "--since", "30m")
    assert p.returncode == 0, p.stderr
    prefixes = {line.split("]", 1)[0] + "]" for line in p.stdout.splitlines() if line.startswith("[")}
    assert f"[local/{name}_nginx_1]" in prefixes and f"[local/{name}_api-blue_1]" in prefixes
    assert f"[local/{name}_postgres_1]" in prefixes
    j = inv(st, "logs", "--env", "local", "--service", "api", "--tail", "5", "--json")
    rows = [json.loads(line) for line in j.stdout.splitlines()]
    assert rows and {r["container"] for r in rows} == {f"{name}_api-blue_1"} and len(rows) <= 5
    assert all(r["ts"].startswith("20") for r in rows)
    assert inv(st, "logs", "--env", "local", "--since", "soon").returncode == 2

    # --follow: new lines arrive while it runs; Ctrl-C ends it quietly and leaves no `docker logs` behind.
    env = {**os.environ, "IOSOPS_STATE_DIR": str(TEST_STATE), **st["vars"]}
    proc = subprocess.Popen([*INV, "logs", "--env", "local", "--service", "nginx", "--follow", "--since", "1s"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL,
                            # as a shell starts a background job (some CI launchers do): SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("/version?follow" in line for line in seen):
            get(st, "/version?follow=1")
            time.sleep(1)
        assert any(line.startswith(f"[local/{name}_nginx_1] ") and "/version?follow" in line for line in seen), seen
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)  # Ctrl-C ends it: streams stop within 10 s, inv exits (slow under load)
    assert rc == 0, proc.stderr.read()
    nginx_id = st["t"].containers("nginx")[0]
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", f"logs --timestamps --follow .*{nginx_id}"], capture_output=True, text=True)
    assert left.stdout.strip() == "", "docker logs --follow outlived Ctrl-C"


def test_exec_runs_in_an_api_replica_and_passes_the_exit_code(st):
    p = inv(st, "exec", "--env", "local", "--", "python3", "-c", "print(1)")
    assert (p.returncode, p.stdout) == (0, "1\n"), p.stderr
    p = inv(st, "exec", "--env", "local", "--colour", "blue", "--", "python3", "-c", "import sys; sys.exit(3)")
    assert p.returncode == 3
    p = inv(st, "exec", "--env", "local", "--colour", "green", "--", "true")
    assert p.returncode == 2 and p.stderr.strip().startswith("error: api-green is not running on local")
    p = inv(st, "exec", "--env", "local", "--host", "web9", "--", "true")
    assert p.returncode == 2 and "unknown host 'web9'" in p.stderr
    audit = [json.loads(line) for line in (st["env"].state_dir / "audit.log").read_text().splitlines()]
    assert [(r["task"], r["exit_code"]) for r in audit if r["task"] == "exec"] == [("exec", 0), ("exec", 3)]


def test_db_psql_runs_sql_as_the_app_role(st):
    p = inv(st, "db.psql", "--env", "local", "-c", "select current_user, 40 + 2 as answer")
    assert p.returncode == 0, p.stderr
    assert "ios" in p.stdout and "42" in p.stdout and "(1 row)" in p.stdout
    bad = inv(st, "db.psql", "--env", "local", "-c", "select * from no_such_table")
    assert bad.returncode == 1 and 'relation "no_such_table" does not exist' in bad.stderr
    secret = st["env"].secret("postgres_password").get()
    assert secret not in p.stdout + p.stderr + bad.stdout + bad.stderr
    assert inv(st, "db.psql", "--env", "local").returncode == 2  # no terminal and no -c


def test_maintenance_on_answers_503_with_retry_after_but_health_stays_200(st):
    assert get(st, "/version").status_code == 200
    on = inv(st, "maintenance", "on", "--env", "local", "--reason", "schema upgrade")
    assert on.returncode == 0, on.stderr
    try:
        r = get(st, "/version")
        assert r.status_code == 503 and r.headers["Retry-After"] == "30" and "schema upgrade" in r.json()["detail"]
        assert get(st, "/health").status_code == 200 and get(st, "/ready").status_code == 200
        again = inv(st, "maintenance", "on", "--env", "local", "--reason", "schema upgrade")
        assert again.returncode == 0 and "no change" in again.stdout
        data = json.loads(inv(st, "status", "--env", "local", "--json").stdout)
        assert data["hosts"][0]["maintenance"] is True
    finally:
        off = inv(st, "maintenance", "off", "--env", "local")
    assert off.returncode == 0, off.stderr
    assert get(st, "/version").status_code == 200
    assert "no change" in inv(st, "maintenance", "off", "--env", "local").stdout


def test_images_prune_keep_1_removes_only_the_extra_old_tag(st):
    # An older image (the offline base) under this stack's API repository: the only candidate.
    old = f"{st['repo']}/api:old"
    assert docker("tag", "iosops/debian:bookworm", old).returncode == 0
    dry = inv(st, "images.prune", "--env", "local", "--keep", "1", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["hosts"][0]["removed"] == [old]
    assert docker("image", "inspect", old).returncode == 0  # a dry-run removes nothing
    p = inv(st, "images.prune", "--env", "local", "--keep", "1", "--json")
    assert p.returncode == 0, p.stderr
    (h,) = json.loads(p.stdout)["hosts"]
    assert h["removed"] == [old] and h["failed"] == []
    assert {k["ref"] for k in h["kept"]} == {st["api"], st["ops"]}
    assert docker("image", "inspect", old).returncode != 0
    assert docker("image", "inspect", st["api"]).returncode == 0 and docker("image", "inspect", st["ops"]).returncode == 0
    again = inv(st, "images.prune", "--env", "local", "--keep", "1")
    assert again.returncode == 0 and "no change" in again.stdout
    assert inv(st, "images.prune", "--env", "local", "--keep", "0").returncode == 2


def at_terminal(st, args: list[str], keys: str, timeout: float = 60) -> tuple[int, str]:
    """`inv ARGS` with a pseudo-terminal as stdin/stdout/stderr (a person at a terminal), typing `keys`."""
    import pty
    import select

    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a terminal has a size (no pager)
    env = {**os.environ, "IOSOPS_STATE_DIR": str(TEST_STATE), **st["vars"], "TERM": "dumb"}
    proc = subprocess.Popen([*INV, *args], stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env,
                            start_new_session=True)
    os.close(slave)
    out, sent = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the terminal closed: the process ended
                    break
                if not chunk:
                    break
                out += chunk
            if not sent and time.monotonic() > deadline - timeout + 3:
                os.write(master, keys.encode())
                sent = True
            if proc.poll() is not None and not ready:
                break
        try:
            return proc.wait(timeout=10), out.decode(errors="replace")
        except subprocess.TimeoutExpired:
            return -1, out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        os.close(master)


def test_at_a_terminal_psql_and_exec_are_interactive(st):
    rc, out = at_terminal(st, ["db.psql", "--env", "local"], "select 6 * 7 as answer;\n\\q\n")
    assert rc == 0 and "answer" in out and "42" in out, out
    rc, out = at_terminal(st, ["exec", "--env", "local", "--", "sh"], "echo tty=$(tty); exit 5\n")
    assert rc == 5 and "tty=/dev/pts/" in out, out
