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

from ..commands import host as hc
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
            r.probe(hc.reachable())
        except HostKeyRefused:
            raise
        except IosopsError as exc:
            raise BadInput(f"host {r.host} is unreachable ({exc}); nothing was changed on any host") from None


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def put(r: RemoteRunner, path: str, content: str, mode: int) -> None:
    r.run(hc.put(path, mode), input=content)


def provision_host(env: Env, r: RemoteRunner, host: Optional[HostCfg] = None) -> HostOutcome:
    h = env.cfg.hosts
    out = HostOutcome(str(r.host))
    user = h.deploy_user

    # packages
    q = r.probe(hc.packages_status(h.packages), check=False)
    installed = {line.split()[0] for line in q.stdout.splitlines() if line.endswith("install ok installed")}
    missing = [p for p in h.packages if p not in installed]
    if missing:
        r.run(hc.apt_install(missing), env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=600)
        out.changed.append(f"installed {' '.join(missing)}")

    # deploy user in the docker group
    if r.probe(hc.group_exists("docker"), check=False).rc != 0:
        r.run(hc.groupadd_system("docker"))
        out.changed.append("created group docker")
    ident = r.probe(hc.user_id(user), check=False)
    if ident.rc != 0:
        r.run(hc.useradd(user, h.deploy_uid, ["docker"]))
        out.changed.append(f"created user {user} (uid {h.deploy_uid}, group docker)")
    else:
        groups = r.probe(hc.user_groups(user)).stdout.split()
        if "docker" not in groups:
            r.run(hc.usermod_append_groups(user, ["docker"]))
            out.changed.append(f"added {user} to group docker")
    if h.authorized_key_file:
        key = env.path(h.authorized_key_file).read_text().strip() + "\n"
        path = f"/home/{user}/.ssh/authorized_keys"
        cur = r.probe(hc.stat_and_sha256("%a %U", path), check=False)
        if cur.stdout.split()[:3] != ["600", user, _sha(key)]:
            r.run(hc.install_dir(f"/home/{user}/.ssh", 0o700, user))
            put(r, path, key, 0o600)
            r.run(hc.chown(f"{user}:{user}", path))
            out.changed.append(f"wrote {path}")

    # directories and modes
    for path, (mode, owner) in f.directories(env).items():
        cur = r.probe(hc.stat("%a %U %G", path), check=False)
        want = f"{mode:o} {owner} {owner}"
        if cur.stdout.strip() != want:
            r.run(hc.install_dir(path, mode, owner))
            r.run(hc.chmod(mode, path))
            out.changed.append(f"directory {path} -> {want}")

    # managed files
    changed_files = set()
    for path, (content, mode) in f.managed(env, host).items():
        cur = r.probe(hc.stat_and_sha256("%a", path), check=False)
        if cur.stdout.split()[:2] != [f"{mode:o}", _sha(content)]:
            put(r, path, content, mode)
            changed_files.add(path)
            out.changed.append(f"wrote {path}")

    # firewall loaded (our table only)
    fw = r.probe(hc.nft_list_table("inet", "iosops"), check=False)
    if fw.rc != 0 or f.NFTABLES in changed_files:
        r.run(hc.nft_load(f.NFTABLES))
        out.changed.append("loaded firewall table inet iosops")

    # kernel parameters
    if h.sysctl_live:
        live = r.probe(hc.sysctl_values(h.sysctl), check=False).stdout.splitlines()
        if [v.split() for v in live] != [v.split() for v in h.sysctl.values()]:
            r.run(hc.sysctl_load(f.SYSCTL))
            out.changed.append("applied sysctl values")
    else:
        out.notes.append("sysctl: persisted in the file only (hosts.sysctl_live is false: a container "
                         "cannot change kernel parameters)")

    # the Docker engine
    if h.require_engine:
        ok = r.probe(hc.docker_server_version(), check=False)
        if ok.rc != 0 or f.DAEMON_JSON in changed_files:
            r.run(hc.docker_restart())
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
