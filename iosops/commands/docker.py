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


def logs_since(name: str, since: float) -> list[str]:
    """The container's log from `since` (epoch seconds, millisecond resolution) on."""
    return [DOCKER, "logs", "--since", f"{since:.3f}", name]


def logs_tail(name: str, n: int = 30) -> list[str]:
    return [DOCKER, "logs", "--tail", str(n), name]


def compose_volumes(project: str, volume: str) -> list[str]:
    """Names of a compose project's volume (by compose's own labels, same in v1 and v2): a probe."""
    return [DOCKER, "volume", "ls", "--quiet", "--filter", f"label=com.docker.compose.project={project}",
            "--filter", f"label=com.docker.compose.volume={volume}"]


# -- day-2 (inv status, logs, exec, db.psql, images.prune) ---------------------------------------------
# One line per container of a compose project: id, name, service, image, state, status ("Up 3 minutes
# (healthy)"); parsed by iosops.day2.probes.parse_ps.
PS_FORMAT = '{{.ID}}\t{{.Names}}\t{{.Label "com.docker.compose.service"}}\t{{.Image}}\t{{.State}}\t{{.Status}}'


def ps_project(project: str, all_: bool = False) -> list[str]:
    """Every container of a compose project (running ones, or all with all_), one tab-separated line each."""
    return [DOCKER, "ps", *(["--all"] if all_ else []), "--filter", f"label=com.docker.compose.project={project}",
            "--format", PS_FORMAT]


# Each container's log, every line prefixed with the container's name; one process per host, so the host's
# lines arrive as one stream (followed or not). Arguments: docker since tail follow(0|1) name id [name id ...]
LOGS_SCRIPT = """docker=$1 since=$2 tail=$3 f=; [ "$4" = 1 ] && f=--follow; shift 4
while [ "$#" -gt 1 ]; do
  ( "$docker" logs --timestamps $f --since "$since" --tail "$tail" "$2" 2>&1 |
    while IFS= read -r l || [ -n "$l" ]; do printf '%s %s\\n' "$1" "$l"; done ) &
  shift 2
done
wait
"""


def logs_merged(containers: Sequence[tuple[str, str]], since: str = "", tail: str = "all",
                follow: bool = False) -> list[str]:
    """The logs of several containers of one host, each line `NAME TIMESTAMP TEXT` (docker's timestamps);
    `containers` are (name, id) pairs. Ends when every log ends (or never, with follow)."""
    pairs = [x for name, cid in containers for x in (name, cid)]
    return ["sh", "-c", LOGS_SCRIPT, "logs", DOCKER, since, tail, "1" if follow else "0", *pairs]


def exec_input(name: str, argv: Sequence[str], env: Optional[Mapping[str, str]] = None) -> list[str]:
    """`docker exec -i`: the runner's input on the command's stdin; `env` values are set in argv, so they
    must never be secrets (name a file the secret is written to instead)."""
    flags = [f for k, v in (env or {}).items() for f in ("--env", f"{k}={v}")]
    return [DOCKER, "exec", "-i", *flags, name, *argv]


def exec_attached(name: str, argv: Sequence[str], tty: bool = False, env: Sequence[str] = ()) -> list[str]:
    """`docker exec` with stdin attached (-i) and, for a person at a terminal, a TTY (-t). `env` are
    variable names passed from the caller's environment (values never in argv)."""
    flags = ["--interactive", "--tty"] if tty else []
    for k in env:
        flags += ["--env", k]
    return [DOCKER, "exec", *flags, name, *argv]


IMAGES_FORMAT = "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedAt}}"


def images_of(repository: str) -> list[str]:
    """Every tag of one repository: repository, tag, full image id, creation time."""
    return [DOCKER, "image", "ls", "--no-trunc", "--format", IMAGES_FORMAT, repository]


def container_ids_all() -> list[str]:
    """Every container of the engine, running or stopped (full ids)."""
    return [DOCKER, "ps", "--all", "--quiet", "--no-trunc"]


def container_images(ids: Sequence[str]) -> list[str]:
    """The image each container was created from: its id and the name it was asked for."""
    return [DOCKER, "container", "inspect", "--format", "{{.Id}}\t{{.Image}}\t{{.Config.Image}}", *ids]


def rmi(ref: str) -> list[str]:
    """Remove one tag (never --force: Docker itself refuses an image a container still uses)."""
    return [DOCKER, "image", "rm", ref]
