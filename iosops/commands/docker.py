"""docker CLI argv builders (for what the runner runs as commands; builds use the docker SDK)."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

DOCKER = "/usr/bin/docker" if __import__("os").path.exists("/usr/bin/docker") else "docker"


def labels_args(labels: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for k, v in sorted(labels.items()):
        out += ["--label", f"{k}={v}"]
    return out


def network_create(name: str, labels: Mapping[str, str], internal: bool = False) -> list[str]:
    return [DOCKER, "network", "create", *labels_args(labels), *(["--internal"] if internal else []), name]


def volume_create(name: str, labels: Mapping[str, str]) -> list[str]:
    return [DOCKER, "volume", "create", *labels_args(labels), name]


def run_detached(name: str, image: str, *, network: str, labels: Mapping[str, str],
                 env: Mapping[str, str] = {}, pass_env: Sequence[str] = (),
                 publish: Sequence[str] = (), volumes: Sequence[str] = (), user: Optional[str] = None,
                 health_cmd: Optional[str] = None, network_alias: Optional[str] = None,
                 command: Sequence[str] = (), read_only: bool = False, tmpfs: Sequence[str] = (),
                 memory: Optional[str] = None, restart: str = "unless-stopped") -> list[str]:
    """`docker run -d`. Secrets go in `pass_env` (names only: values come from the runner's env)."""
    argv = [DOCKER, "run", "--detach", "--name", name, "--network", network, *labels_args(labels),
            "--restart", restart, "--log-opt", "max-size=10m", "--log-opt", "max-file=3"]
    if network_alias:
        argv += ["--network-alias", network_alias]
    for k, v in sorted(env.items()):
        argv += ["--env", f"{k}={v}"]
    for k in pass_env:
        argv += ["--env", k]
    for p in publish:
        argv += ["--publish", p]
    for v in volumes:
        argv += ["--volume", v]
    for t in tmpfs:
        argv += ["--tmpfs", t]
    if user:
        argv += ["--user", user]
    if read_only:
        argv += ["--read-only"]
    if memory:
        argv += ["--memory", memory]
    if health_cmd:
        argv += ["--health-cmd", health_cmd, "--health-interval", "2s", "--health-timeout", "3s",
                 "--health-retries", "30", "--health-start-period", "2s"]
    return argv + [image, *command]


def inspect_format(name: str, fmt: str) -> list[str]:
    return [DOCKER, "inspect", "--format", fmt, name]


def health_status(name: str) -> list[str]:
    return inspect_format(name, "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}")


def ps_by_label(label: str) -> list[str]:
    return [DOCKER, "ps", "--all", "--quiet", "--filter", f"label={label}"]


def ls_by_label(kind: str, label: str) -> list[str]:
    """kind: network | volume."""
    return [DOCKER, kind, "ls", "--quiet", "--filter", f"label={label}"]


def rm_containers(ids: Sequence[str]) -> list[str]:
    return [DOCKER, "rm", "--force", "--volumes", *ids]


def rm_networks(ids: Sequence[str]) -> list[str]:
    return [DOCKER, "network", "rm", *ids]


def rm_volumes(ids: Sequence[str]) -> list[str]:
    return [DOCKER, "volume", "rm", "--force", *ids]


def exec_(name: str, argv: Sequence[str], user: Optional[str] = None) -> list[str]:
    return [DOCKER, "exec", *(["--user", user] if user else []), name, *argv]


def logs_tail(name: str, n: int = 30) -> list[str]:
    return [DOCKER, "logs", "--tail", str(n), name]


def compose_volumes(project: str, volume: str) -> list[str]:
    """Names of a compose project's volume (by compose's own labels, same in v1 and v2): a probe."""
    return [DOCKER, "volume", "ls", "--quiet", "--filter", f"label=com.docker.compose.project={project}",
            "--filter", f"label=com.docker.compose.volume={volume}"]
