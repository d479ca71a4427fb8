"""The day-2 tasks on real SSH hosts: three netns test hosts (tests/netns_hosts.py; two web, one data),
each with its own Docker engine and sshd, host keys checked. A stack of its own (stack `iosops-d2`, one
replica per colour) is deployed with `inv deploy`, then operators' commands run against it as `inv`
subprocesses: status, logs (and --follow over SSH ended by Ctrl-C), exec on a chosen web host, db.psql
on the data host, maintenance on both web hosts, images.prune on every host. Requests go only to the test
hosts' addresses. The stack and its directory are removed at the end (the hosts stay for other modules)."""
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

from iosops.config import load_env
from tests.conftest import INV, ROOT, TEST_STATE, run_inv
from tests.integration.conftest import docker, ops_of, remove_release, tag_release
from tests.integration.test_multihost_deploy import TLS, offline_images
from tests.netns_hosts import load_release, staging_vars

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
STACK = "iosops-d2"


@pytest.fixture(scope="module")
def d2(netns_hosts, api_image, tmp_path_factory):
    from iosops.images.offline import build_offline
    from iosops.deploy import bluegreen as bg
    from iosops.runner import Runner

    build_offline(load_env("local", environ={}), Runner(), ("nginx",))
    state = tmp_path_factory.mktemp("d2-multihost")
    release = f"iosops/api:d2mh-{uuid.uuid4().hex[:6]}"
    assert docker("tag", api_image.image, release).returncode == 0
    tag_release(api_image.image, release)
    imgs = offline_images()
    load_release(netns_hosts, release, ops_of(release), imgs)
    vars_ = {**staging_vars(netns_hosts, state, imgs), "IOSOPS_STACK__NAME": STACK, "IOSOPS_DEPLOY__REPLICAS": "1",
             "IOSOPS_DEPLOY__VERIFY_HOSTS": "false", "IOSOPS_ACTOR": "itest@day2-multihost",
             # nginx answers on the web hosts' own addresses (stack.publish_host defaults to loopback).
             "IOSOPS_STACK__PUBLISH_HOST": "0.0.0.0"}  # nosec B104 - a test host's address, inside its netns
    webs, data = list(netns_hosts)[:-1], netns_hosts[len(netns_hosts) - 1]
    env = load_env("staging", environ=vars_)
    try:
        for args in (["hosts.trust"], ["deploy", "--tag", release.rsplit(":", 1)[1]]):
            p = run_inv(*args, "--env", "staging", env=vars_, timeout=1200)
            assert p.returncode == 0, f"inv {' '.join(args)}: {p.stderr[-3000:]}"
        yield {"hosts": netns_hosts, "webs": webs, "data": data, "vars": vars_, "release": release, "env": env}
    finally:
        bg.destroy(env, Runner(say=lambda s: None), volumes=True)
        for h in netns_hosts:
            netns_hosts.enter(h, ["rm", "-rf", f"/srv/iosops/{STACK}"], check=False)
            netns_hosts.docker(h, "image", "rm", "iosops/api:d2-tiny1", "iosops/api:d2-tiny2", check=False)
        remove_release(release)


def inv(d2, task, *args, timeout=600):
    """`inv TASK --env staging ARGS` (the env flag before any `-- CMD`)."""
    return run_inv(task, "--env", "staging", *args, env=d2["vars"], timeout=timeout)


def name_of(h) -> str:
    return f"root@{h.address}:22"


def https(h, path: str):
    req = urllib.request.Request(f"https://{h.address}:443{path}", headers={"Host": "localhost"})
    try:
        with urllib.request.urlopen(req, context=TLS, timeout=10) as resp:  # nosec B310 - https to a test host
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_status_reads_each_host_by_role_and_the_lock_on_the_data_host(d2):
    p = inv(d2, "status", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    by = {h["host"]: h for h in data["hosts"]}
    for w in d2["webs"]:
        h = by[name_of(w)]
        assert h["roles"] == ["web"] and h["active"] == "blue" and h["colours"]["blue"]["healthy"] == 1
        assert h["colours"]["blue"]["image"] == d2["release"] and h["nginx"]["healthy"] == 1 and "datastores" not in h
    db = by[name_of(d2["data"])]
    assert db["roles"] == ["data"] and "colours" not in db
    assert {k: v["healthy"] for k, v in db["datastores"].items()} == {"postgres": 1, "redis": 1}
    assert db["last_deploy"]["by"] == "itest@day2-multihost" and data["ok"], data
    assert data["lock"]["holder"] is None and d2["data"].address in data["lock"]["at"]


def test_logs_come_from_every_host_and_follow_over_ssh_ends_on_ctrl_c(d2):
    assert all(https(w, "/health")[0] == 200 for w in d2["webs"])  # a line in each nginx's access log
    p = inv(d2, "logs", "--since", "30m")
    assert p.returncode == 0, p.stderr
    prefixes = {line.split("]", 1)[0] + "]" for line in p.stdout.splitlines() if line.startswith("[")}
    for w in d2["webs"]:
        assert f"[{name_of(w)}/{STACK}_nginx_1]" in prefixes and f"[{name_of(w)}/{STACK}_api-blue_1]" in prefixes
    assert f"[{name_of(d2['data'])}/{STACK}_postgres_1]" in prefixes

    env = {**os.environ, "IOSOPS_STATE_DIR": str(TEST_STATE), **d2["vars"]}
    proc = subprocess.Popen([*INV, "logs", "--env", "staging", "--service", "nginx", "--follow", "--since", "1s"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL,
                            # as a shell starts a background job (some CI launchers do): SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    seen: list[str] = []
    threading.Thread(target=lambda: seen.extend(proc.stdout), daemon=True).start()
    web2 = d2["webs"][1]
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any("/version?d2follow" in line for line in seen):
            https(web2, "/version?d2follow=1")
            time.sleep(1)
        assert any(line.startswith(f"[{name_of(web2)}/{STACK}_nginx_1] ") and "/version?d2follow" in line
                   for line in seen), seen[-20:]
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)  # Ctrl-C ends it: SSH channels close, inv exits (slow under load)
    assert rc == 0, proc.stderr.read()
    left = ""
    for _ in range(30):  # the SSH channel's hang-up ends `docker logs --follow` on the host
        left = d2["hosts"].enter(web2, ["sh", "-c", "ps -eo args | grep '[l]ogs --timestamps --follow' || true"]).stdout
        if not left.strip():
            break
        time.sleep(0.5)
    assert left.strip() == "", f"still following on {web2.name}: {left}"


def test_exec_on_a_chosen_web_host_and_psql_on_the_data_host(d2):
    web2 = d2["webs"][1]
    cid = d2["hosts"].docker(web2, "ps", "-q", "--filter", f"label=com.docker.compose.project={STACK}",
                             "--filter", "label=com.docker.compose.service=api-blue").stdout.split()[0]
    p = inv(d2, "exec", "--host", web2.address, "--", "python3", "-c", "import socket; print(socket.gethostname())")
    assert p.returncode == 0 and cid.startswith(p.stdout.strip()), (p.stdout, p.stderr)
    assert inv(d2, "exec", "--", "sh", "-c", "exit 4").returncode == 4
    p = inv(d2, "exec", "--host", d2["data"].address, "--", "true")
    assert p.returncode == 2 and "has no web role (roles: data)" in p.stderr
    p = inv(d2, "db.psql", "-c", "select current_user, inet_server_port()")
    assert p.returncode == 0 and "ios" in p.stdout and "5432" in p.stdout, p.stderr
    assert d2["vars"]["IOS_STAGING_POSTGRES_PASSWORD"] not in p.stdout + p.stderr
    # Both were audited in the env's log on the data host.
    audit = inv(d2, "lock.audit", "--json")
    tasks = [r["task"] for r in json.loads(audit.stdout)]
    assert tasks.count("exec") == 2 and tasks.count("db.psql") == 1, tasks


def test_maintenance_on_both_web_hosts_then_off(d2):
    on = inv(d2, "maintenance", "on", "--reason", "disk swap")
    assert on.returncode == 0, on.stderr
    try:
        for w in d2["webs"]:
            status, headers, body = https(w, "/version")
            assert status == 503 and headers["Retry-After"] == "30" and b"disk swap" in body
            assert https(w, "/health")[0] == 200
        assert "no change" in inv(d2, "maintenance", "on", "--reason", "disk swap").stdout
    finally:
        off = inv(d2, "maintenance", "off")
    assert off.returncode == 0, off.stderr
    assert all(https(w, "/version")[0] == 200 for w in d2["webs"])


def test_images_prune_on_every_host_removes_only_an_old_unused_tag(d2):
    web1 = d2["webs"][0]
    for tag in ("d2-tiny1", "d2-tiny2"):  # two throwaway images in web1's engine, the first older
        empty = subprocess.run(["tar", "cf", "-", "-T", "/dev/null"], capture_output=True, check=True).stdout
        subprocess.run(["/usr/bin/docker", "-H", web1.docker_socket, "import", "-", f"iosops/api:{tag}"], input=empty,
                       capture_output=True, check=True, timeout=60)
        time.sleep(1.2)
    p = inv(d2, "images.prune", "--keep", "1", "--json")
    assert p.returncode == 0, p.stderr
    by = {h["host"]: h for h in json.loads(p.stdout)["hosts"]}
    assert by[name_of(web1)]["removed"] == ["iosops/api:d2-tiny1"]
    kept = {k["ref"]: k["why"] for k in by[name_of(web1)]["kept"]}
    assert kept["iosops/api:d2-tiny2"] == "one of the 1 newest" and d2["release"] in kept
    assert by[name_of(d2["webs"][1])]["removed"] == [] and by[name_of(d2["data"])]["removed"] == []
    assert d2["hosts"].docker(web1, "image", "inspect", d2["release"], check=False).returncode == 0
    assert d2["hosts"].docker(d2["data"], "image", "inspect", ops_of(d2["release"]), check=False).returncode == 0
