"""SSH test hosts: containers of iosops/sshd-host on 127.0.0.1 ports (label iosops.test=1), their host
keys, and a known_hosts file that trusts them (as `inv hosts.trust` would write it)."""
import subprocess
import time
from pathlib import Path
from typing import Optional

from iosops.hosts.known_hosts import HostKey, host_id, render
from iosops.hosts.trust import offered_keys
from tests.conftest import free_port
from tests.integration.conftest import TEST_LABELS, docker

IMAGE = "iosops/sshd-host:bookworm"


def new_client_key(folder: Path) -> Path:
    key = folder / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def start_host(name: str, key: Path, *, port: Optional[int] = None, fresh_keys: bool = False,
               net_admin: bool = False) -> int:
    """Start a test host publishing sshd on 127.0.0.1:port; wait until it answers. The image carries the
    host keys made when it was built (every container shares them): fresh_keys makes this container's
    own, as a reinstalled host would have."""
    port = port or free_port()
    labels = sum((["--label", f"{k}={v}"] for k, v in TEST_LABELS.items()), [])
    extra = ["--cap-add", "NET_ADMIN"] if net_admin else []
    entry = (["--entrypoint", "bash", IMAGE, "-c", "rm -f /etc/ssh/ssh_host_*; exec /usr/local/bin/sshd-entrypoint"]
             if fresh_keys else [IMAGE])
    run = docker("run", "-d", "--name", name, *labels, *extra,
                 "-e", f"SSH_AUTHORIZED_KEY={key.with_suffix('.pub').read_text().strip()}",
                 "-p", f"127.0.0.1:{port}:22", *entry)
    assert run.returncode == 0, run.stderr
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip() == "healthy" and \
                docker("exec", name, "test", "-s", "/etc/ssh/ssh_host_ed25519_key.pub").returncode == 0:
            # sshd answers once its keys exist; a banner proves it is up (the health check is a TCP connect)
            try:
                offered_keys("127.0.0.1", port, 5)
                return port
            except Exception:  # not up yet
                pass
        time.sleep(0.3)
    raise AssertionError(f"test host {name} did not come up: {docker('logs', name).stderr[-500:]}")


def fingerprints(name: str) -> dict[str, str]:
    """{keytype: SHA256 fingerprint} of the host keys inside the container, by OpenSSH's ssh-keygen."""
    out = docker("exec", name, "sh", "-c", "for f in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf $f; done").stdout
    kinds = {"ED25519": "ssh-ed25519", "ECDSA": "ecdsa-sha2-nistp256", "RSA": "ssh-rsa"}
    return {kinds[line.split()[-1].strip("()")]: line.split()[1] for line in out.splitlines() if line.strip()}


def trust(path: Path, port: int, env: str = "staging", address: str = "127.0.0.1") -> None:
    """Write `path` trusting every key the host offers now (the fixture form of `inv hosts.trust`)."""
    keys = [HostKey(host_id(address, port), t, b) for t, b in offered_keys(address, port, 10)]
    old = path.read_text() if path.exists() else ""
    from iosops.hosts.known_hosts import parse

    path.write_text(render(parse(old) + keys, env))


def remove(name: str) -> None:
    docker("rm", "-f", name)
