"""What the day-2 tasks share: the env's hosts, finding one by name, the containers of the stack on a
host, the host's deploy state, the env's lock holder."""
from __future__ import annotations

import json

from ..commands import docker as d
from ..config import Env
from ..deploy.target import Target, targets
from ..errors import BadInput, IosopsError
from ..ops import trail_for
from ..runner import Runner
from .probes import Container, parse_ps


def kubernetes(env: Env) -> bool:
    return env.cfg.target == "kubernetes"


def k8s_cfg(env: Env):
    """The env's Kubernetes settings; reading a cluster needs its context named (never the current one)."""
    from ..k8s.render import k8s_cfg as cfg_of

    cfg = cfg_of(env)
    if not cfg.context or not cfg.namespace:
        raise BadInput(f"env {env.name}: k8s.context and k8s.namespace must be set (envs/{env.name}.yaml); "
                       "nothing was read")
    return cfg


def hosts(env: Env, runner: Runner) -> list[Target]:
    return targets(env, runner)


def names(t: Target) -> set[str]:
    """What a person may call a host: its runner's name (user@address:port), its address, address:port."""
    out = {t.name}
    if t.host is not None:
        out |= {t.host.address, f"{t.host.address}:{t.host.port}", f"{t.host.user}@{t.host.address}"}
    return out


def find_host(ts: list[Target], name: str, role: str = "") -> Target:
    """The host called `name` (default: the first of the role); unknown, or without the role: bad input."""
    pool = [t for t in ts if not role or role in t.roles]
    if not name:
        if not pool:
            raise BadInput(f"no host has the {role} role; nothing was done")
        return pool[0]
    for t in ts:
        if name in names(t):
            if t in pool:
                return t
            raise BadInput(f"host {name} has no {role} role (roles: {', '.join(sorted(t.roles))}); "
                           f"{role} hosts: {', '.join(h.host.address if h.host else h.name for h in pool)}; "
                           "nothing was done")
    known = ", ".join(h.host.address if h.host else h.name for h in pool)
    raise BadInput(f"unknown host {name!r}; {role + ' ' if role else ''}hosts of this env: {known}; nothing was done")


def containers(t: Target, all_: bool = True) -> list[Container]:
    """The stack's containers on the host (stopped ones too with all_: a crashed replica is news)."""
    return parse_ps(t.runner.run(d.ps_project(t.project, all_), mutating=False).stdout)


def state_of(t: Target) -> dict:
    """The host's state.json (written by inv deploy / rollback): {} when nothing was deployed there."""
    raw = t.read("state.json")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {"error": f"{t.path('state.json')} is not valid JSON"}
    return data if isinstance(data, dict) else {}


def lock(env: Env, runner: Runner) -> dict:
    """The env's lock where it lives (on the data host for an env on SSH hosts, else this machine):
    {"holder": None (free) | {} (held, holder unknown) | {who, since, task, ...}, "at": where}; a lock that
    cannot be read is {"error": why} (status still reports the hosts)."""
    try:
        trail = trail_for(env, runner=runner)
    except IosopsError as exc:
        return {"holder": None, "at": "", "error": str(exc)}
    try:
        return {"holder": trail.lock.holder(), "at": trail.lock.where}
    except IosopsError as exc:
        return {"holder": None, "at": trail.lock.where, "error": str(exc)}
    finally:
        trail.close()
