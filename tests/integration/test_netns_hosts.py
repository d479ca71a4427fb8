"""The netns test hosts (tests/netns_hosts.py) are what they claim: separate machines as far as SSH, Docker,
the filesystem, the firewall and the network are concerned, which provisioning cannot leak out of, and
which leave nothing behind (also after a crash).

Each check is made against something that would differ if the isolation were missing: the machine's
engine ID, the machine's /etc, /srv and nft tables, the other hosts."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import paramiko
import pytest

from iosops.config import load_env
from iosops.errors import OperationFailed
from iosops.hosts.known_hosts import KnownHosts
from iosops.runner import Runner, SSHHost
from tests.conftest import ROOT, run_inv
from tests.netns_hosts import alive, cleanup_stale, leftovers, runs

# paramiko warns about every unknown host key (fabric's default policy): the keys are checked by hand below.
pytestmark = pytest.mark.filterwarnings("ignore:Unknown ssh-ed25519 host key:UserWarning")

REDIS = load_env("local", environ={}).cfg.images.redis
DOCKER = "/usr/bin/docker"


@pytest.fixture(scope="module")
def hosts(netns_hosts, offline_images):
    took = netns_hosts.load_images([REDIS])
    print(f"netns hosts up in {netns_hosts.timings['up_s']} s; {REDIS} loaded into 3 engines: {took}")
    return netns_hosts


@pytest.fixture(scope="module")
def ssh(hosts):
    runners: dict[str, Runner] = {}

    def run(h, script: str, check: bool = True, timeout: float = 120):
        if h.name not in runners:
            runners[h.name] = Runner(say=lambda line: None).on(SSHHost(h.address, port=h.ssh_port, user="root", key_filename=h.key_file,
                                                   known_hosts=KnownHosts(Path(hosts.known_hosts_file), "staging")))
        return runners[h.name].run(["sh", "-c", script], check=check, timeout=timeout)

    yield run
    for r in runners.values():
        r.close()


def _redis_ping(address: str, port: int = 6379, timeout: float = 3) -> bytes:
    with socket.create_connection((address, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(b"PING\r\n")
        return s.recv(64)


def _server_key(address: str) -> str:
    with socket.create_connection((address, 22), timeout=10) as s:
        t = paramiko.Transport(s)
        try:
            t.start_client(timeout=10)
            k = t.get_remote_server_key()
            return f"{k.get_name()} {k.get_base64()}"
        finally:
            t.close()


def test_root_logs_in_with_the_run_key_only(hosts, ssh, tmp_path):
    for h in hosts:
        out = ssh(h, "id -un; hostname; ip -4 -o addr show dev eth0").stdout.split("\n")
        assert out[0] == "root" and out[1] == h.name, out
        assert f"inet {h.address}/24" in out[2], out
    # another key is refused, and a password is not even offered
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    stranger = Runner(say=lambda line: None).on(SSHHost(hosts[0].address, user="root", key_filename=str(other),
                                                                            known_hosts=KnownHosts(Path(hosts.known_hosts_file), "staging")))
    with pytest.raises(OperationFailed, match="Authentication failed"):
        stranger.run(["true"])
    stranger.close()
    with socket.create_connection((hosts[0].address, 22), timeout=10) as s:
        t = paramiko.Transport(s)
        try:
            t.start_client(timeout=10)
            with pytest.raises(paramiko.BadAuthenticationType) as bad:
                t.auth_none("root")
            assert bad.value.allowed_types == ["publickey"]
        finally:
            t.close()


def test_each_host_runs_its_own_engine(hosts, ssh):
    fmt = "'{{.ID}} {{.Name}}'"
    over_ssh = [ssh(h, f"docker info --format {fmt}").stdout.split() for h in hosts]
    over_socket = [hosts.docker(h, "info", "--format", "{{.ID}} {{.Name}}").stdout.split() for h in hosts]
    machine = subprocess.run([DOCKER, "info", "--format", "{{.ID}}"], capture_output=True, text=True, check=True).stdout.strip()
    ids = [x[0] for x in over_ssh]
    assert len(set(ids)) == len(hosts), ids
    assert machine not in ids
    assert over_ssh == over_socket  # the extra socket is the same engine the SSH session uses
    assert [x[1] for x in over_ssh] == [h.name for h in hosts]
    for h in hosts:  # load_images reached every engine
        assert ssh(h, f"docker image inspect --format '{{{{.Id}}}}' {REDIS}").stdout.startswith("sha256:")


def _not_the_machines(ssh, h, path: str) -> None:
    """Safety first: a write test touches `path` in a host only if it is not this machine's directory."""
    st = os.stat(path)
    assert ssh(h, f"stat -c '%d %i' {path}").stdout.split() != [str(st.st_dev), str(st.st_ino)], path


def test_srv_is_the_hosts_own_and_its_engine_sees_it(hosts, ssh):
    token = uuid.uuid4().hex
    d = f"/srv/netns-test-{token[:8]}"
    h1, h2, h3 = hosts[0], hosts[1], hosts[2]
    _not_the_machines(ssh, h1, "/srv")
    ssh(h1, f"mkdir -p {d} && echo {token} > {d}/hello.txt")
    try:
        seen = ssh(h1, f"docker run --rm -v {d}:/m:ro {REDIS} cat /m/hello.txt").stdout.strip()
        assert seen == token
        for other in (h2, h3):
            assert ssh(other, f"test -e {d}", check=False).rc == 1, other.name
            assert ssh(other, f"docker run --rm -v {d}:/m:ro {REDIS} cat /m/hello.txt", check=False).rc != 0
        assert not Path(d).exists()  # this machine's /srv
    finally:
        ssh(h1, f"rm -rf {d}", check=False)


def test_a_published_port_answers_from_another_host_and_from_here(hosts, ssh):
    h1, h3 = hosts[0], hosts[2]
    name = f"netns-redis-{uuid.uuid4().hex[:6]}"
    ssh(h3, f"docker run -d --name {name} -p {h3.address}:6379:6379 {REDIS}")
    try:
        deadline, got = time.monotonic() + 30, b""
        while time.monotonic() < deadline and got != b"+PONG\r\n":
            try:
                got = _redis_ping(h3.address)
            except OSError:
                time.sleep(0.3)
        assert got == b"+PONG\r\n"  # from the test process (root namespace)
        probe = ("python3 -c \"import socket; s=socket.create_connection(('%s', 6379), 5); "
                 "s.sendall(b'PING\\r\\n'); print(s.recv(64))\"")
        assert ssh(h1, probe % h3.address).stdout.strip() == "b'+PONG\\r\\n'"  # host 1, over SSH
        # a container on host 1 (a web service reaching the data host), through host 1's NAT
        assert ssh(h1, f"docker run --rm {REDIS} redis-cli -h {h3.address} ping").stdout.strip() == "PONG"
        # and it is host 3's: nothing listens on host 1's own address
        assert ssh(h1, probe % h1.address, check=False).rc != 0
    finally:
        ssh(h3, f"docker rm -f {name}", check=False)


def test_users_and_etc_written_in_a_host_stay_in_it(hosts, ssh):
    token = uuid.uuid4().hex[:8]
    user, marker = f"nt{token}", f"/etc/iosops-netns-{token}"
    h1, h2 = hosts[0], hosts[1]
    for d in ("/etc", "/home", "/root", "/var/log"):
        _not_the_machines(ssh, h1, d)
    ssh(h1, f"useradd --create-home --shell /bin/bash {user} && echo {token} > {marker} && "
            f"mkdir -p /var/log/netns-{token} /root/netns-{token}")
    assert ssh(h1, f"id -u {user} && cat {marker} && test -d /home/{user}").stdout.split()[1] == token
    assert f"\n{user}:" not in "\n" + Path("/etc/passwd").read_text()
    assert f"\n{user}:" not in "\n" + Path("/etc/shadow").read_text()
    for p in (marker, f"/home/{user}", f"/var/log/netns-{token}", f"/root/netns-{token}"):
        assert not Path(p).exists(), p
    assert ssh(h2, f"id -u {user}", check=False).rc != 0
    assert ssh(h2, f"test -e {marker}", check=False).rc == 1


def test_an_nft_table_stays_in_its_host(hosts, ssh):
    table = f"netns_{uuid.uuid4().hex[:8]}"
    h1, h2 = hosts[0], hosts[1]
    ssh(h1, f"nft add table inet {table}")
    try:
        assert f"table inet {table}" in ssh(h1, "nft list tables").stdout
        here = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
        assert f"table inet {table}" not in here
        assert f"table inet {table}" not in ssh(h2, "nft list tables").stdout
    finally:
        ssh(h1, f"nft delete table inet {table}", check=False)


def test_each_host_has_its_own_host_key(hosts):
    keys = [_server_key(h.address) for h in hosts]
    assert keys == [h.host_public_key for h in hosts]
    assert len(set(keys)) == len(hosts)
    machine = Path("/etc/ssh/ssh_host_ed25519_key.pub")
    if machine.exists():
        assert " ".join(machine.read_text().split()[:2]) not in keys
    assert Path(hosts.known_hosts_file).read_text().splitlines() == [f"{h.address} {k}" for h, k in zip(hosts, keys, strict=True)]


def test_systemctl_shim_restarts_the_engine_and_refuses_the_rest(hosts, ssh):
    h2 = hosts[1]
    before = hosts.pids()[h2.name]["dockerd"]
    engine_id = ssh(h2, "docker info --format '{{.ID}}'").stdout.strip()
    out = ssh(h2, "systemctl enable docker && systemctl restart docker").stdout
    assert "test-host shim" in out and "restarted docker" in out, out
    after = hosts.pids()[h2.name]["dockerd"]
    assert after != before and alive(after) and not alive(before)
    assert ssh(h2, "docker info --format '{{.ID}}'").stdout.strip() == engine_id  # same engine, same data
    assert ssh(h2, f"docker image inspect {REDIS} >/dev/null").rc == 0
    bad = ssh(h2, "systemctl restart nginx", check=False)
    assert bad.rc == 1 and "is not supported" in bad.stderr and "test-host shim" in bad.stderr
    apt = ssh(h2, "apt-get install -y cowsay", check=False)
    assert apt.rc != 0 and "refused" in apt.stderr


MACHINE_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/nftables.conf",
                 "/etc/docker/daemon.json", "/etc/docker/key.json", "/etc/sysctl.d/60-iosops.conf",
                 "/etc/security/limits.d/60-iosops.conf", "/etc/logrotate.d/iosops")


def _machine_state() -> dict:
    files = {p: (Path(p).read_bytes() if Path(p).exists() else None) for p in MACHINE_FILES}
    dirs = {p: Path(p).exists() for p in ("/home/deploy", "/srv/iosops", "/var/log/iosops")}
    nft = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    sysctl = subprocess.run(["sysctl", "-n", "vm.max_map_count", "net.core.somaxconn"], capture_output=True, text=True).stdout
    return {"files": files, "dirs": dirs, "nft": nft, "sysctl": sysctl}


def test_provisioning_a_host_changes_it_not_this_machine(hosts, ssh):
    """`inv provision` (packages, useradd, daemon.json + engine restart, sysctl/limits/logrotate files,
    nftables) then `inv verify-hosts`, over SSH, on host 2 as a lone web+data host."""
    h2 = hosts[1]
    for d in ("/etc", "/home", "/srv", "/var/log"):
        _not_the_machines(ssh, h2, d)
    before = _machine_state()
    cfg = hosts.hosts_config()[1]
    vars_ = {**hosts.iosops_env(), "IOSOPS_HOSTS__HOSTS": json.dumps([{**cfg, "roles": ["web", "data"]}]),
             "IOSOPS_HOSTS__AUTHORIZED_KEY_FILE": hosts.key_file + ".pub",
             "IOSOPS_STACK__NAME": f"iosops-itest-{uuid.uuid4().hex[:6]}"}
    proc = run_inv("provision", "--env", "staging", "--json", env=vars_, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    changed = out["hosts"][0]["changed"]
    assert not any(c.startswith("installed") for c in changed), changed  # the machine has them all
    assert any(c.startswith("created user deploy") for c in changed), changed
    assert "wrote /etc/docker/daemon.json" in changed and "started the Docker engine" in changed, changed
    assert "loaded firewall table inet iosops" in changed, changed
    checks = next(iter(out["verify"].values()))
    assert all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]
    assert {c["name"] for c in checks if c["skipped"]} == {"sysctl-live"}  # the engine is real and checked
    # really so on the host: deploy logs in with the key and reaches the (restarted) engine
    deploy = Runner(say=lambda line: None).on(SSHHost(h2.address, user="deploy", key_filename=h2.key_file,
                                                                        known_hosts=KnownHosts(Path(hosts.known_hosts_file), "staging")))
    try:
        assert deploy.run(["docker", "info", "--format", "{{.LiveRestoreEnabled}} {{.Name}}"]).stdout.split() == ["true", h2.name]
    finally:
        deploy.close()
    assert "table inet iosops" in ssh(h2, "nft list tables").stdout
    assert _machine_state() == before


def test_teardown_of_a_crashed_run_leaves_nothing(offline_images, tmp_path):
    """A run whose owner died (and one of whose engines was killed with its containers still running) is
    removed by cleanup_stale(): containers, engines, sshd, SSH sessions, netns, links, the iptables rule,
    the state dir."""
    owner = subprocess.Popen(["sleep", "600"])
    state = tmp_path / "run.json"
    try:
        up = subprocess.run([sys.executable, "-m", "tests.netns_hosts", "up", "--hosts", "3", "--state", str(state),
                             "--owner-pid", str(owner.pid), "--images", REDIS], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
        assert up.returncode == 0, up.stderr[-3000:]
        st = json.loads(state.read_text())
        hs = st["hosts"]
        pids = []
        for h in hs[:2]:  # a container each on hosts 1 and 2
            sock = h["docker_socket"]
            cid = subprocess.run([DOCKER, "-H", sock, "run", "-d", REDIS], capture_output=True, text=True,
                                 check=True).stdout.strip()
            pids.append(int(subprocess.run([DOCKER, "-H", sock, "inspect", "--format", "{{.State.Pid}}", cid],
                                           capture_output=True, text=True, check=True).stdout))
        ctl = [Path(h["dir"]) / "ctl" for h in hs]
        pids += [int((c / f).read_text()) for c in ctl for f in ("dockerd.pid", "sshd.pid")]
        session = Runner(say=lambda line: None).on(SSHHost(hs[2]["address"], user="root", key_filename=st["key_file"],
                                                                        known_hosts=KnownHosts(Path(st["known_hosts"]), "staging")))
        session.run(["true"])  # an open SSH session (an sshd child in host 3's netns) at teardown
        assert st["run"] in {r["run"] for r in runs()}
        cleanup_stale()  # the owner is alive: nothing of this run is touched
        left = leftovers(st, pids)
        assert all(f"netns {h['name']}" in left for h in hs) and f"link {st['bridge']}" in left, left
        assert sum(x.startswith("process ") for x in left) == len(pids), left
        # the crash: host 1's engine is killed (its container runs on), then the owner dies
        os.kill(int((ctl[0] / "dockerd.pid").read_text()), signal.SIGKILL)
        owner.kill()
        owner.wait(timeout=10)
        t = time.monotonic()
        done = cleanup_stale()
        print(f"cleanup_stale in {time.monotonic() - t:.1f} s:", *done, sep="\n  ")
        assert any(f"run {st['run']}: owner pid {owner.pid} is gone" in line for line in done), done
        assert any("leftover of container" in line for line in done), done  # the orphaned container
        assert any("removed 1 container(s)" in line for line in done), done  # host 2's, by its engine
        assert leftovers(st, pids) == []
        session.close()
    finally:
        if owner.poll() is None:
            owner.kill()
        if state.exists():
            subprocess.run([sys.executable, "-m", "tests.netns_hosts", "down", "--state", str(state)], cwd=ROOT,
                           capture_output=True, timeout=300)
