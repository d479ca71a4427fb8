"""`inv provision` and `inv verify-hosts` against real SSH hosts: containers of iosops/sshd-host on
127.0.0.1 ports (with CAP_NET_ADMIN so the nftables firewall is real inside the host's namespace).

What a container cannot be, and the env says so (hosts.require_engine / hosts.sysctl_live false): a
Docker engine host (no privileged containers here) and a kernel whose parameters can be changed. The
docker.io package (CLI and engine binaries) is installed and verified; the sysctl file is verified."""
import json
import subprocess
import time
import uuid

import pytest

from tests.conftest import free_port, run_inv
from tests.integration.conftest import TEST_LABELS, docker


def _start_host(key, name):
    port = free_port()
    labels = sum((["--label", f"{k}={v}"] for k, v in TEST_LABELS.items()), [])
    run = docker("run", "-d", "--name", name, *labels, "--cap-add", "NET_ADMIN",
                 "-e", f"SSH_AUTHORIZED_KEY={key.with_suffix('.pub').read_text().strip()}",
                 "-p", f"127.0.0.1:{port}:22", "iosops/sshd-host:bookworm")
    assert run.returncode == 0, run.stderr
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip() != "healthy":
        time.sleep(0.3)
    return port


@pytest.fixture(scope="module")
def host_env(offline_images, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hosts")
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    name = f"iosops-itest-host-{uuid.uuid4().hex[:6]}"
    port = _start_host(key, name)
    hosts = [{"address": "127.0.0.1", "port": port, "user": "root", "key_file": str(key)}]
    vars_ = {"IOSOPS_TARGET": "compose", "IOSOPS_HOSTS__HOSTS": json.dumps(hosts),
             "IOSOPS_HOSTS__AUTHORIZED_KEY_FILE": str(key.with_suffix(".pub")),
             "IOSOPS_HOSTS__REQUIRE_ENGINE": "false", "IOSOPS_HOSTS__SYSCTL_LIVE": "false",
             "IOSOPS_STACK__NAME": f"iosops-itest-{uuid.uuid4().hex[:6]}"}
    yield {"vars": vars_, "name": name, "port": port}
    docker("rm", "-f", name)


def test_provision_then_verify_then_idempotent(host_env):
    first = run_inv("provision", "--env", "staging", "--json", env=host_env["vars"])
    assert first.returncode == 0, first.stderr[-3000:]
    out = json.loads(first.stdout)
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
