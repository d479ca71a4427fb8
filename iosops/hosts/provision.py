"""`inv provision`: make each SSH host of an env ready for the compose stack, over fabric.

Look, then act (pyinfra style): every step reads the host's state with a probe and changes only what
differs, so a second run changes nothing and says so. Steps: packages, deploy user (+ docker group,
SSH key), directories and modes, managed files (sysctl, limits, logrotate, docker daemon.json,
nftables), the firewall table loaded, live sysctl values, the Docker engine running.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from typing import Optional

from ..config import Env, HostCfg
from ..errors import BadInput, IosopsError
from ..runner import RemoteRunner, Runner
from . import files as f
from .known_hosts import HostKeyRefused, for_env
from .ssh import remote_runner


@dataclass
class HostOutcome:
    host: str
    changed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def remote_runners(env: Env, runner: Runner) -> list[RemoteRunner]:
    """One runner per SSH host of the env, in config order (the same order as env.cfg.hosts.hosts)."""
    if not env.cfg.hosts.hosts:
        raise BadInput(f"env {env.name} has no SSH hosts; add hosts.hosts to envs/{env.name}.yaml "
                       "(address, port, user, key_file)")
    known = for_env(env)
    return [remote_runner(env, runner, h, known) for h in env.cfg.hosts.hosts]


def check_all_reachable(rs: list[RemoteRunner]) -> None:
    for r in rs:
        if r.dry_run:
            continue
        try:
            r.run(["true"], mutating=False)
        except HostKeyRefused:
            raise
        except IosopsError as exc:
            raise BadInput(f"host {r.host} is unreachable ({exc}); nothing was changed on any host") from None


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def put(r: RemoteRunner, path: str, content: str, mode: int) -> None:
    r.run(["sh", "-c", 'set -e; mkdir -p "$(dirname "$1")"; t=$(mktemp "$1.XXXXXX"); cat > "$t"; '
           'chmod "$2" "$t"; mv -f "$t" "$1"', "put", path, f"{mode:o}"], input=content)


def provision_host(env: Env, r: RemoteRunner, host: Optional[HostCfg] = None) -> HostOutcome:
    h = env.cfg.hosts
    out = HostOutcome(str(r.host))
    user = h.deploy_user

    # packages
    q = r.run(["dpkg-query", "-W", "-f=${Package} ${Status}\\n", *h.packages], mutating=False, check=False)
    installed = {line.split()[0] for line in q.stdout.splitlines() if line.endswith("install ok installed")}
    missing = [p for p in h.packages if p not in installed]
    if missing:
        r.run(["sh", "-c", "apt-get update -qq && apt-get install -y -qq --no-install-recommends \"$@\" >/dev/null",
               "apt", *missing], env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=600)
        out.changed.append(f"installed {' '.join(missing)}")

    # deploy user in the docker group
    if r.run(["getent", "group", "docker"], mutating=False, check=False).rc != 0:
        r.run(["groupadd", "--system", "docker"])
        out.changed.append("created group docker")
    ident = r.run(["id", "-u", user], mutating=False, check=False)
    if ident.rc != 0:
        r.run(["useradd", "--create-home", "--uid", str(h.deploy_uid), "--shell", "/bin/bash",
               "--groups", "docker", user])
        out.changed.append(f"created user {user} (uid {h.deploy_uid}, group docker)")
    else:
        groups = r.run(["id", "-nG", user], mutating=False).stdout.split()
        if "docker" not in groups:
            r.run(["usermod", "--append", "--groups", "docker", user])
            out.changed.append(f"added {user} to group docker")
    if h.authorized_key_file:
        key = env.path(h.authorized_key_file).read_text().strip() + "\n"
        path = f"/home/{user}/.ssh/authorized_keys"
        cur = r.run(["sh", "-c", f"stat -c '%a %U' {path} && sha256sum {path}"], mutating=False, check=False)
        if cur.stdout.split()[:3] != ["600", user, _sha(key)]:
            r.run(["install", "-d", "-m", "700", "-o", user, "-g", user, f"/home/{user}/.ssh"])
            put(r, path, key, 0o600)
            r.run(["chown", f"{user}:{user}", path])
            out.changed.append(f"wrote {path}")

    # directories and modes
    for path, (mode, owner) in f.directories(env).items():
        cur = r.run(["stat", "-c", "%a %U %G", path], mutating=False, check=False)
        want = f"{mode:o} {owner} {owner}"
        if cur.stdout.strip() != want:
            r.run(["install", "-d", "-m", f"{mode:o}", "-o", owner, "-g", owner, path])
            r.run(["chmod", f"{mode:o}", path])
            out.changed.append(f"directory {path} -> {want}")

    # managed files
    changed_files = set()
    for path, (content, mode) in f.managed(env, host).items():
        cur = r.run(["sh", "-c", f"stat -c %a {path} && sha256sum {path}"], mutating=False, check=False)
        if cur.stdout.split()[:2] != [f"{mode:o}", _sha(content)]:
            put(r, path, content, mode)
            changed_files.add(path)
            out.changed.append(f"wrote {path}")

    # firewall loaded (our table only)
    fw = r.run(["nft", "list", "table", "inet", "iosops"], mutating=False, check=False)
    if fw.rc != 0 or f.NFTABLES in changed_files:
        r.run(["nft", "-f", f.NFTABLES])
        out.changed.append("loaded firewall table inet iosops")

    # kernel parameters
    if h.sysctl_live:
        live = r.run(["sysctl", "-n", *h.sysctl], mutating=False, check=False).stdout.splitlines()
        if [v.split() for v in live] != [v.split() for v in h.sysctl.values()]:
            r.run(["sysctl", "--load", f.SYSCTL])
            out.changed.append("applied sysctl values")
    else:
        out.notes.append("sysctl: persisted in the file only (hosts.sysctl_live is false: a container "
                         "cannot change kernel parameters)")

    # the Docker engine
    if h.require_engine:
        ok = r.run(["docker", "info", "--format", "{{.ServerVersion}}"], mutating=False, check=False)
        if ok.rc != 0 or f.DAEMON_JSON in changed_files:
            r.run(["sh", "-c", "systemctl enable docker && systemctl restart docker"])
            out.changed.append("started the Docker engine")
    else:
        out.notes.append("docker engine: not started (hosts.require_engine is false: test host); CLI installed")
    return out


def provision(env: Env, runner: Runner) -> list[HostOutcome]:
    rs = remote_runners(env, runner)
    check_all_reachable(rs)
    try:
        return [provision_host(env, r, h) for r, h in zip(rs, env.cfg.hosts.hosts, strict=True)]
    finally:
        for r in rs:
            r.close()
