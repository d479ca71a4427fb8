"""The runner's remote path: fabric over SSH to a real sshd container (iosops/sshd-host) on 127.0.0.1,
host key checked against a known_hosts file (trusted first, as `inv hosts.trust` does)."""
import uuid

import pytest

from iosops.errors import BadInput
from iosops.hosts.known_hosts import HostKey, HostKeyRefused, KnownHosts, fingerprint, host_id, render
from iosops.runner import CommandFailed, Runner, SSHHost
from tests.integration import sshhosts
from tests.integration.conftest import docker


@pytest.fixture
def ssh_host(offline_images, tmp_path):
    key = sshhosts.new_client_key(tmp_path)
    name = f"iosops-itest-sshd-{uuid.uuid4().hex[:6]}"
    try:
        port = sshhosts.start_host(name, key)
        known = tmp_path / "known_hosts"
        sshhosts.trust(known, port, env="itest")
        yield SSHHost("127.0.0.1", port=port, user="root", key_filename=str(key),
                      known_hosts=KnownHosts(known, "itest")), name
    finally:
        sshhosts.remove(name)


def test_remote_command_runs_over_ssh(ssh_host):
    host, _ = ssh_host
    remote = Runner().on(host)
    try:
        assert remote.run(["id", "-un"], mutating=False).stdout.strip() == "root"
        assert remote.run(["sh", "-c", "echo $GREETING"], env={"GREETING": "hi there"}).stdout.strip() == "hi there"
        with pytest.raises(CommandFailed, match=r"\[root@127.0.0.1:\d+\] sh -c 'exit 7'"):
            remote.run(["sh", "-c", "exit 7"])
        # A file's worth of stdin arrives whole, then EOF (a compose file, a config): 300 KB within the
        # command's 60 s timeout (invoke's in_stream fed stdin one byte per 10 ms: 50 minutes).
        import hashlib

        big = "".join(f"line {i:06d} {'x' * 40}\n" for i in range(6000))
        got = remote.run(["sh", "-c", "cat > /tmp/big && sha256sum < /tmp/big && cat /tmp/big >&2"], input=big, timeout=60)
        assert got.stdout.split()[0] == hashlib.sha256(big.encode()).hexdigest() and got.stderr == big
        with pytest.raises(CommandFailed, match="exit 3"):
            remote.run(["sh", "-c", "cat >/dev/null; exit 3"], input="x")
    finally:
        remote.close()


def test_remote_dry_run_connects_to_nothing(ssh_host):
    host, _ = ssh_host
    parent = Runner(dry_run=True)
    remote = parent.on(host)
    remote.run(["touch", "/should-not-exist"])
    assert parent.plan() == [f"[root@127.0.0.1:{host.port}] touch /should-not-exist"]
    assert remote.remote._conn is None


def _ran(name: str) -> bool:
    return docker("exec", name, "test", "-e", "/tmp/ran").returncode == 0


def test_unknown_host_key_is_refused_before_anything_runs(ssh_host, tmp_path):
    host, name = ssh_host
    empty = tmp_path / "empty_known_hosts"
    host.known_hosts = KnownHosts(empty, "staging", "envs/staging.known_hosts")
    remote = Runner().on(host)
    with pytest.raises(HostKeyRefused) as err:
        remote.run(["touch", "/tmp/ran"])
    ed = sshhosts.fingerprints(name)["ssh-ed25519"]
    assert str(err.value) == (
        f"unknown host key for 127.0.0.1:{host.port} (ssh-ed25519 {ed}; not in envs/staging.known_hosts): nothing was "
        "run; check that fingerprint out of band (on the host: ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then "
        "trust it: inv hosts.trust --env staging")
    assert isinstance(err.value, BadInput) and err.value.exit_code == 2
    assert not _ran(name) and remote.remote._conn is None


def test_changed_host_key_is_refused_naming_both_fingerprints(ssh_host, tmp_path):
    host, name = ssh_host
    # The host's line rewritten with another real ed25519 key (made here): what a reinstalled host or a
    # machine in between looks like from this side.
    (tmp_path / "other").mkdir()
    other = sshhosts.new_client_key(tmp_path / "other")
    b64 = other.with_suffix(".pub").read_text().split()[1]
    forged = tmp_path / "forged_known_hosts"
    forged.write_text(render([HostKey(host_id("127.0.0.1", host.port), "ssh-ed25519", b64)], "staging"))
    host.known_hosts = KnownHosts(forged, "staging", "envs/staging.known_hosts")
    remote = Runner().on(host)
    with pytest.raises(HostKeyRefused) as err:
        remote.run(["touch", "/tmp/ran"])
    msg = str(err.value)
    assert msg.startswith(f"host key of 127.0.0.1:{host.port} CHANGED: envs/staging.known_hosts records ssh-ed25519 "
                          f"{fingerprint(b64)}, the host offers ssh-ed25519 {sshhosts.fingerprints(name)['ssh-ed25519']}")
    assert msg.endswith(f"inv hosts.trust --env staging --replace 127.0.0.1:{host.port}") and "nothing was run" in msg
    assert not _ran(name)


def test_no_known_hosts_file_means_no_connection(ssh_host):
    host, name = ssh_host
    host.known_hosts = None
    with pytest.raises(HostKeyRefused, match="no known_hosts file to check its host key against"):
        Runner().on(host).run(["touch", "/tmp/ran"])
    assert not _ran(name)


def test_file_operations_and_pipelines_happen_on_the_host(ssh_host, tmp_path):
    """A runner holding the host's transport writes, moves and removes files there (never here), and runs
    pipelines there with every stage's failure seen."""
    import io

    host, name = ssh_host
    remote = Runner(say=lambda s: None).on(host)
    path = tmp_path / "remote-only" / "app.conf"  # a path that exists nowhere: created on the host only
    try:
        remote.write_file(path, "a=1\n", mode=0o600)
        assert not path.parent.exists()
        got = docker("exec", name, "stat", "-c", "%a %s", str(path))
        assert got.stdout.split() == ["600", "4"]
        remote.rename(path, path.with_name("moved.conf"))
        assert remote.probe(["cat", str(path.with_name("moved.conf"))]).stdout == "a=1\n"
        assert remote.pipe(["printf", "a\\nb\\n"], ["wc", "-l"]).stdout.strip() == "2"
        with pytest.raises(CommandFailed):
            remote.pipe(["sh", "-c", "exit 4"], ["cat"])
        res = remote.stream(["tr", "a-z", "A-Z"], source=io.BytesIO(b"shout"), sink=lambda f: f.read())
        assert res.value == b"SHOUT"
        remote.remove(path.parent)
        assert docker("exec", name, "test", "-e", str(path.parent)).returncode == 1
    finally:
        remote.close()
