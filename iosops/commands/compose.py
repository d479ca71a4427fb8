"""Compose argv builders: the same calls work for `docker compose` (v2) and `docker-compose` (1.29)."""
from __future__ import annotations

from typing import Mapping, Sequence

V2 = ["/usr/bin/docker", "compose"]
V1 = ["docker-compose"]


def detect_v2() -> list[str]:
    """Probe: exit 0 when the v2 plugin exists (then use V2), else fall back to V1."""
    return [*V2, "version", "--short"]


def base(cmd: Sequence[str], project: str, directory: str, files: Sequence[str], env_file: str,
         profiles: Sequence[str] = ()) -> list[str]:
    argv = [*cmd, "--project-name", project, "--project-directory", directory]
    for f in files:
        argv += ["--file", f]
    argv += ["--env-file", env_file]
    for p in profiles:
        argv += ["--profile", p]
    return argv


def up(base_argv: Sequence[str], services: Sequence[str], scale: Mapping[str, int] = {}) -> list[str]:
    """Start only the named services; never touch their dependencies (the other colour keeps serving)."""
    argv = [*base_argv, "up", "--detach", "--no-deps", "--no-build"]
    for svc, n in sorted(scale.items()):
        argv += ["--scale", f"{svc}={n}"]
    return argv + list(services)


def run_once(base_argv: Sequence[str], service: str, argv: Sequence[str], env: Mapping[str, str] = {},
             volumes: Sequence[str] = ()) -> list[str]:
    """A one-off container of `service` (its image, networks, env and secrets), removed afterwards;
    `volumes` are mounted into this container only (e.g. a secret file the service itself must not have)."""
    extra = [a for k, v in sorted(env.items()) for a in ("-e", f"{k}={v}")]
    extra += [a for v in volumes for a in ("-v", v)]
    return [*base_argv, "run", "--rm", "--no-deps", "-T", *extra, service, *argv]


def exec_(base_argv: Sequence[str], service: str, argv: Sequence[str]) -> list[str]:
    """A command in the running container of `service` (no TTY: output is captured)."""
    return [*base_argv, "exec", "-T", service, *argv]


def stop(base_argv: Sequence[str], services: Sequence[str], timeout: int = 30) -> list[str]:
    return [*base_argv, "stop", "--timeout", str(timeout), *services]


def kill(base_argv: Sequence[str], services: Sequence[str], signal: str = "SIGKILL") -> list[str]:
    """Kill the containers of `services` (no clean shutdown: the DR drill's lost host)."""
    return [*base_argv, "kill", "-s", signal, *services]


def rm(base_argv: Sequence[str], services: Sequence[str]) -> list[str]:
    return [*base_argv, "rm", "--force", "--stop", *services]


def down(base_argv: Sequence[str], volumes: bool = False) -> list[str]:
    return [*base_argv, "down", "--remove-orphans", *(["--volumes"] if volumes else [])]


def ps_service(project: str, service: str) -> list[str]:
    """Container ids of one service of a project, by compose's own labels (same in v1 and v2)."""
    return ["/usr/bin/docker", "ps", "--quiet", "--filter", f"label=com.docker.compose.project={project}",
            "--filter", f"label=com.docker.compose.service={service}"]
