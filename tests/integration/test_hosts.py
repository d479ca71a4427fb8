"""`inv provision` and `inv verify-hosts` against real SSH hosts: containers of iosops/sshd-host on
127.0.0.1 ports (with CAP_NET_ADMIN so the nftables firewall is real inside the host's namespace).

What a container cannot be, and the env says so (hosts.require_engine / hosts.sysctl_live false): a
Docker engine host (no privileged containers here) and a kernel whose parameters can be changed. The
docker.io package (CLI and engine binaries) is installed and verified; the sysctl file is verified."""
import json
import os
import subprocess
import time
import uuid

import pytest

from tests.conftest import INV, ROOT, TEST_STATE, free_port, run_inv
from tests.integration import sshhosts
from tests.integration.conftest import docker


@pytest.fixture(scope="module")
def host_env(offline_images, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hosts")
    key = sshhosts.new_client_key(tmp)
    name = f"iosops-itest-host-{uuid.uuid4().hex[:6]}"
    try:
        port = sshhosts.start_host(name, key, net_admin=True)
        hosts = [{"address": "127.0.0.1", "port": port, "user": "root", "key_file": str(key)}]
        stack = f"iosops-itest-{uuid.uuid4().hex[:6]}"
        vars_ = {"IOSOPS_TARGET": "compose", "IOSOPS_HOSTS__HOSTS": json.dumps(hosts),
                 "IOSOPS_HOSTS__AUTHORIZED_KEY_FILE": str(key.with_suffix(".pub")),
                 "IOSOPS_HOSTS__REQUIRE_ENGINE": "false", "IOSOPS_HOSTS__SYSCTL_LIVE": "false",
                 "IOSOPS_HOSTS__KNOWN_HOSTS_FILE": str(tmp / "known_hosts"), "IOSOPS_ACTOR": "itest@hosts",
                 "IOSOPS_STACK__NAME": stack}
        trusted = run_inv("hosts.trust", "--env", "staging", env=vars_)  # host keys are checked: trust first
        assert trusted.returncode == 0 and "trusted" in trusted.stdout, trusted.stdout + trusted.stderr
        yield {"vars": vars_, "name": name, "port": port, "dir": f"/srv/iosops/{stack}"}
    finally:
        sshhosts.remove(name)


def test_provision_then_verify_then_idempotent(host_env):
    # The env's lock is taken on the host (its data host) while provision runs: watch it appear there.
    proc = subprocess.Popen([*INV, "provision", "--env", "staging", "--json"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "IOSOPS_STATE_DIR": str(TEST_STATE), **host_env["vars"]})
    seen = ""
    while proc.poll() is None and not seen:
        seen = docker("exec", host_env["name"], "cat", f"{host_env['dir']}/lock/info.json").stdout
        time.sleep(0.5)
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-3000:]
    holder = json.loads(seen)
    assert (holder["who"], holder["task"]) == ("itest@hosts", "provision") and holder["owner"], holder
    assert docker("exec", host_env["name"], "test", "-e", f"{host_env['dir']}/lock").returncode == 1  # released
    out = json.loads(stdout)
    changed = out["hosts"][0]["changed"]
    assert any(c.startswith("installed docker.io") for c in changed), changed
    assert any(c.startswith("created user deploy") for c in changed)
    assert "loaded firewall table inet iosops" in changed
    checks = next(iter(out["verify"].values()))
    assert all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]
    assert {c["name"] for c in checks if c["skipped"]} == {"sysctl-live", "docker-engine"}  # said, not hidden

    second = run_inv("provision", "--env", "staging", env=host_env["vars"])
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"root@127.0.0.1:{host_env['port']}: no change" in second.stdout, second.stdout
    assert "checks passed" in second.stdout

    # The state is real on the host: the deploy user logs in with the key and is in the docker group.
    got = docker("exec", host_env["name"], "bash", "-c", "id -nG deploy; stat -c '%a %U' /srv/iosops; "
                 "nft list table inet iosops | grep -c 'policy drop'")
    assert got.stdout.split() == ["deploy", "docker", "750", "deploy", "1"], got.stdout

    # Both runs have their audit line on the host, and `inv lock.audit` reads them there.
    on_host = docker("exec", host_env["name"], "cat", f"{host_env['dir']}/audit.log").stdout.splitlines()
    assert [(json.loads(l)["task"], json.loads(l)["outcome"]) for l in on_host] == [("provision", "ok")] * 2
    audit = run_inv("lock.audit", "--env", "staging", "--json", env=host_env["vars"])
    assert audit.returncode == 0, audit.stderr
    assert [(r["task"], r["who"]) for r in json.loads(audit.stdout)] == [("provision", "itest@hosts")] * 2
    here = run_inv("lock.audit", "--env", "staging", "--here", "--json", env={**host_env["vars"], "IOSOPS_STATE_DIR": str(
        TEST_STATE / "empty-here")})
    assert here.returncode == 0 and json.loads(here.stdout) == []  # nothing of it on this machine


def test_verify_fails_naming_the_broken_check(host_env):
    ok = run_inv("verify-hosts", "--env", "staging", env=host_env["vars"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    docker("exec", host_env["name"], "bash", "-c", "chmod 777 /srv/iosops && nft delete table inet iosops")
    try:
        bad = run_inv("verify-hosts", "--env", "staging", env=host_env["vars"])
        assert bad.returncode == 1
        assert "2/" in bad.stderr and "check(s) FAILED" in bad.stderr, bad.stderr
        assert "dir /srv/iosops: /srv/iosops is 0o777 deploy, want 0o750 deploy" in bad.stderr, bad.stderr
        assert "firewall: table inet iosops is not loaded" in bad.stderr
        assert "FAIL dir /srv/iosops" in bad.stdout
    finally:
        fix = run_inv("provision", "--env", "staging", env=host_env["vars"])
    assert fix.returncode == 0 and "directory /srv/iosops" in fix.stdout and "loaded firewall" in fix.stdout, fix.stdout


def test_unreachable_host_is_named_and_nothing_changes(host_env):
    dead = free_port()
    hosts = [{**h, "roles": ["web", "data"]} for h in json.loads(host_env["vars"]["IOSOPS_HOSTS__HOSTS"])]
    hosts.append({"address": "127.0.0.1", "port": dead, "user": "root", "roles": ["web"]})
    proc = run_inv("provision", "--env", "staging", env={**host_env["vars"], "IOSOPS_HOSTS__HOSTS": json.dumps(hosts),
                                                        "IOSOPS_HOSTS__CONNECT_TIMEOUT_S": "3"})
    assert proc.returncode == 2, proc.stderr
    assert f"host root@127.0.0.1:{dead} is unreachable" in proc.stderr and "nothing was changed on any host" in proc.stderr


def test_provision_dry_run_changes_nothing(host_env):
    proc = run_inv("provision", "--env", "staging", "--dry-run", env=host_env["vars"])
    assert proc.returncode == 0, proc.stderr
    assert "dry-run:" in proc.stdout
