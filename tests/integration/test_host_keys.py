"""Host keys through the real tasks, against real sshd test hosts (iosops/sshd-host, own keys each):
an unknown key is refused (exit 2, one line with its fingerprint, nothing run on the host), `inv
hosts.trust` records it and then everything works, a changed key (the host replaced by another on the same
port) is refused naming both fingerprints until `--replace` says so."""
import json
import uuid

import pytest

from iosops.hosts.known_hosts import parse
from tests.conftest import free_port, run_inv
from tests.integration import sshhosts
from tests.integration.conftest import docker


def one_error(proc, code: int) -> str:
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == code, (proc.returncode, proc.stdout[-1000:], proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def untouched(name: str) -> bool:
    """Nothing ran on the host: no lock/audit directory, no deploy user."""
    return (docker("exec", name, "test", "-e", "/srv/iosops").returncode == 1
            and docker("exec", name, "id", "deploy").returncode != 0)


@pytest.fixture
def fresh_host(offline_images, tmp_path):
    key = sshhosts.new_client_key(tmp_path)
    names = []

    def start(port=None):
        names.append(f"iosops-itest-hk-{uuid.uuid4().hex[:6]}")
        return names[-1], sshhosts.start_host(names[-1], key, port=port, fresh_keys=True, net_admin=True)

    name, port = start()
    known = tmp_path / "known_hosts"
    vars_ = {"IOSOPS_TARGET": "compose", "IOSOPS_HOSTS__KNOWN_HOSTS_FILE": str(known),
             "IOSOPS_HOSTS__HOSTS": json.dumps([{"address": "127.0.0.1", "port": port, "user": "root",
                                                  "key_file": str(key)}]),
             "IOSOPS_HOSTS__REQUIRE_ENGINE": "false", "IOSOPS_HOSTS__SYSCTL_LIVE": "false",
             "IOSOPS_HOSTS__CONNECT_TIMEOUT_S": "5", "IOSOPS_STACK__NAME": f"iosops-itest-{uuid.uuid4().hex[:6]}"}
    try:
        yield {"vars": vars_, "name": name, "port": port, "known": known, "start": start}
    finally:
        for n in names:
            sshhosts.remove(n)


def test_unknown_key_refused_then_trusted_then_changed_key_refused(fresh_host):
    h, vars_, known = fresh_host, fresh_host["vars"], fresh_host["known"]
    fps = sshhosts.fingerprints(h["name"])
    assert len(set(fps.values())) == 3

    # unknown: every way in refuses before running anything (fabric, testinfra, the lock on the data host)
    for task in (("provision",), ("provision", "--dry-run"), ("verify-hosts",), ("lock.status",)):
        line = one_error(run_inv(*task, "--env", "staging", env=vars_), 2)
        assert line == (f"error: unknown host key for 127.0.0.1:{h['port']} (ssh-ed25519 {fps['ssh-ed25519']}; not in "
                        f"{known}): nothing was run; check that fingerprint out of band (on the host: ssh-keygen -lf "
                        "/etc/ssh/ssh_host_*_key.pub), then trust it: inv hosts.trust --env staging"), task
    assert untouched(h["name"]) and not known.exists()

    # trust: dry-run writes nothing; then every key is recorded and its fingerprint printed
    dry = run_inv("hosts.trust", "--env", "staging", "--dry-run", env=vars_)
    assert dry.returncode == 0 and "dry-run: would write" in dry.stdout and not known.exists(), dry.stdout + dry.stderr
    trusted = run_inv("hosts.trust", "--env", "staging", env=vars_)
    assert trusted.returncode == 0, trusted.stderr
    assert f"127.0.0.1:{h['port']}: trusted" in trusted.stdout
    for ktype, fp in fps.items():
        assert f"  {ktype} {fp}" in trusted.stdout  # what ssh-keygen -lf says on the host
    lines = [l for l in known.read_text().splitlines() if not l.startswith("#")]
    assert [l.split()[:2] for l in lines] == [[f"[127.0.0.1]:{h['port']}", t] for t in
                                              ("ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa")]
    before = known.read_text()
    again = run_inv("hosts.trust", "--env", "staging", "--json", env=vars_)
    assert again.returncode == 0 and json.loads(again.stdout)["hosts"][0]["status"] == "no change"
    assert known.read_text() == before

    # then it works: read-only probes over SSH and the lock on the host
    assert run_inv("provision", "--env", "staging", "--dry-run", env=vars_).returncode == 0
    status = run_inv("lock.status", "--env", "staging", env=vars_)
    assert status.returncode == 0 and "not locked" in status.stdout, status.stderr

    # changed: the host is replaced by another (its own keys) on the same port
    sshhosts.remove(h["name"])
    new_name, _ = h["start"](h["port"])
    new = sshhosts.fingerprints(new_name)
    for task in (("provision",), ("verify-hosts",), ("lock.status",)):
        line = one_error(run_inv(*task, "--env", "staging", env=vars_), 2)
        assert line.startswith(f"error: host key of 127.0.0.1:{h['port']} CHANGED: {known} records ecdsa-sha2-nistp256 "
                               f"{fps['ecdsa-sha2-nistp256']}, the host offers ecdsa-sha2-nistp256 "
                               f"{new['ecdsa-sha2-nistp256']}"), (task, line)
        assert line.endswith(f"inv hosts.trust --env staging --replace 127.0.0.1:{h['port']}")
    assert untouched(new_name)
    line = one_error(run_inv("hosts.trust", "--env", "staging", env=vars_), 2)
    assert "CHANGED" in line and fps["ecdsa-sha2-nistp256"] in line and new["ecdsa-sha2-nistp256"] in line
    assert known.read_text() == before  # refused: nothing written
    line = one_error(run_inv("hosts.trust", "--env", "staging", "--replace", "127.0.0.1:1", env=vars_), 2)
    assert f"not a host of env staging (hosts: 127.0.0.1:{h['port']})" in line
    replaced = run_inv("hosts.trust", "--env", "staging", "--replace", f"[127.0.0.1]:{h['port']}", env=vars_)
    assert replaced.returncode == 0 and f"127.0.0.1:{h['port']}: replaced" in replaced.stdout, replaced.stderr
    assert {k.keytype: k.fingerprint for k in parse(known.read_text())} == new
    status = run_inv("lock.status", "--env", "staging", env=vars_)
    assert status.returncode == 0 and "not locked" in status.stdout, status.stderr


def test_trust_of_an_unreachable_host_writes_nothing(tmp_path):
    dead = free_port()
    vars_ = {"IOSOPS_TARGET": "compose", "IOSOPS_HOSTS__KNOWN_HOSTS_FILE": str(tmp_path / "known_hosts"),
             "IOSOPS_HOSTS__HOSTS": json.dumps([{"address": "127.0.0.1", "port": dead, "user": "root"}])}
    line = one_error(run_inv("hosts.trust", "--env", "staging", env=vars_), 2)
    assert line.startswith(f"error: host 127.0.0.1:{dead} is unreachable (") and line.endswith("nothing was written")
    assert not (tmp_path / "known_hosts").exists()
