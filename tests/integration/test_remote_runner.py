"""The runner's remote path: fabric over SSH to a real sshd container (iosops/sshd-host) on 127.0.0.1."""
import subprocess
import time
import uuid

import pytest

from iosops.config import load_env
from iosops.runner import CommandFailed, RemoteRunner, Runner, SSHHost
from tests.conftest import free_port
from tests.integration.conftest import TEST_LABELS, docker


@pytest.fixture
def ssh_host(offline_images, tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    port = free_port()
    name = f"iosops-itest-sshd-{uuid.uuid4().hex[:6]}"
    image = load_env("local", environ={}).cfg.images.sshd
    labels = sum((["--label", f"{k}={v}"] for k, v in TEST_LABELS.items()), [])
    run = docker("run", "-d", "--name", name, *labels, "-e", f"SSH_AUTHORIZED_KEY={(key.with_suffix('.pub')).read_text().strip()}",
                 "-p", f"127.0.0.1:{port}:22", image)
    assert run.returncode == 0, run.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip() != "healthy":
        time.sleep(0.3)
    yield SSHHost("127.0.0.1", port=port, user="root", key_filename=str(key))
    docker("rm", "-f", name)


def test_remote_command_runs_over_ssh(ssh_host):
    remote = RemoteRunner(Runner(), ssh_host)
    try:
        assert remote.run(["id", "-un"], mutating=False).stdout.strip() == "root"
        assert remote.run(["sh", "-c", "echo $GREETING"], env={"GREETING": "hi there"}).stdout.strip() == "hi there"
        with pytest.raises(CommandFailed, match=r"\[root@127.0.0.1:\d+\] sh -c 'exit 7'"):
            remote.run(["sh", "-c", "exit 7"])
    finally:
        remote.close()


def test_remote_dry_run_connects_to_nothing(ssh_host):
    parent = Runner(dry_run=True)
    remote = RemoteRunner(parent, ssh_host)
    remote.run(["touch", "/should-not-exist"])
    assert parent.plan() == [f"[root@127.0.0.1:{ssh_host.port}] touch /should-not-exist"]
    assert remote._conn is None
