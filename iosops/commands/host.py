"""Host argv builders: files, users, packages, firewall, kernel parameters, the Docker engine (the commands
`inv provision` and the deploy targets run on a host, locally or over SSH).

Paths are passed to `sh -c` scripts as positional arguments ("$1") or quoted with shlex.quote, never
pasted in raw: a path with a space or a quote stays one word."""
from __future__ import annotations

import shlex
from typing import Iterable, Sequence

# -- files and directories ------------------------------------------------------------------------------
# Write stdin to $1 atomically (temporary file in the same directory, then rename) with mode $2.
PUT = ('set -e; mkdir -p "$(dirname "$1")"; t=$(mktemp "$1.XXXXXX"); cat > "$t"; '
       'chmod "$2" "$t"; mv -f "$t" "$1"')


def put(path: str, mode: int) -> list[str]:
    """Atomic write of the runner's stdin to `path` with octal `mode` (0o644 -> "644")."""
    return ["sh", "-c", PUT, "put", path, f"{mode:o}"]


def mkdir_mode(path: str, mode: int) -> list[str]:
    """A directory and its parents; `mode` (octal, 0o755 -> "755") for the last one."""
    return ["mkdir", "-p", "-m", f"{mode:o}", path]


def move(src: str, dest: str) -> list[str]:
    """Rename src to dest; -T: dest is never taken as a directory to move into."""
    return ["mv", "-T", src, dest]


def remove_tree(path: str) -> list[str]:
    return ["rm", "-rf", "--", path]


def passthrough() -> list[str]:
    """A pipeline stage that passes its input on unchanged."""
    return ["cat"]


def cat(path: str) -> list[str]:
    return ["cat", path]


def mkdir_p(*paths: str) -> list[str]:
    return ["mkdir", "-p", *paths]


def chmod(mode: int, path: str) -> list[str]:
    return ["chmod", f"{mode:o}", path]


def chown(owner: str, path: str) -> list[str]:
    return ["chown", owner, path]


def install_dir(path: str, mode: int, owner: str, group: str = "") -> list[str]:
    """`install -d`: create the directory (and parents) with this mode and owner; fixes an existing one's owner."""
    return ["install", "-d", "-m", f"{mode:o}", "-o", owner, "-g", group or owner, path]


def stat(fmt: str, path: str) -> list[str]:
    return ["stat", "-c", fmt, path]


def stat_and_sha256(fmt: str, path: str) -> list[str]:
    """`stat -c FMT` then `sha256sum` of one file: a probe of mode/owner and content in one round trip."""
    q = shlex.quote(path)
    return ["sh", "-c", f"stat -c {shlex.quote(fmt)} {q} && sha256sum {q}"]


def readable(path: str) -> list[str]:
    return ["test", "-r", path]


def sync_fs(path: str) -> list[str]:
    """Flush the filesystem holding `path` (syncfs(2)), not every filesystem of the host."""
    return ["sync", "-f", path]


def now() -> list[str]:
    """The host's clock, seconds with nanoseconds."""
    return ["date", "+%s.%N"]


def version(program: str) -> list[str]:
    """`PROGRAM --version`: is the tool there, and which one."""
    return [program, "--version"]


def reachable() -> list[str]:
    """The cheapest command that proves a host answers (and that its host key was accepted)."""
    return ["true"]


def port_listening(port: int) -> list[str]:
    """Exit 0 when some process listens on TCP `port`."""
    return ["sh", "-c", f"ss -Hltn 'sport = :{int(port)}' | grep -q LISTEN"]


# -- packages, users, groups ---------------------------------------------------------------------------
def packages_status(packages: Sequence[str]) -> list[str]:
    """One line per package: `NAME STATUS` ("install ok installed" when installed)."""
    return ["dpkg-query", "-W", "-f=${Package} ${Status}\\n", *packages]


def apt_install(packages: Sequence[str]) -> list[str]:
    """Run with DEBIAN_FRONTEND=noninteractive; the package names are positional arguments of the script."""
    return ["sh", "-c", "apt-get update -qq && apt-get install -y -qq --no-install-recommends \"$@\" >/dev/null",
            "apt", *packages]


def group_exists(group: str) -> list[str]:
    return ["getent", "group", group]


def groupadd_system(group: str) -> list[str]:
    return ["groupadd", "--system", group]


def user_id(user: str) -> list[str]:
    return ["id", "-u", user]


def user_groups(user: str) -> list[str]:
    return ["id", "-nG", user]


def useradd(user: str, uid: int, groups: Sequence[str], shell: str = "/bin/bash") -> list[str]:
    return ["useradd", "--create-home", "--uid", str(uid), "--shell", shell, "--groups", ",".join(groups), user]


def usermod_append_groups(user: str, groups: Sequence[str]) -> list[str]:
    return ["usermod", "--append", "--groups", ",".join(groups), user]


# -- firewall, kernel, Docker engine -------------------------------------------------------------------
def nft_list_table(family: str, table: str) -> list[str]:
    return ["nft", "list", "table", family, table]


def nft_load(path: str) -> list[str]:
    return ["nft", "-f", path]


def sysctl_values(keys: Iterable[str]) -> list[str]:
    """The live values, one per line, in the order of `keys`."""
    return ["sysctl", "-n", *keys]


def sysctl_load(path: str) -> list[str]:
    return ["sysctl", "--load", path]


def docker_server_version() -> list[str]:
    """Fails unless the Docker engine answers (the CLI alone prints no server version)."""
    return ["docker", "info", "--format", "{{.ServerVersion}}"]


def docker_restart() -> list[str]:
    return ["sh", "-c", "systemctl enable docker && systemctl restart docker"]
