"""`inv images.prune --keep N`: on every host, the env's API and ops image tags beyond the N newest of
each repository are removed, never one a container (running or stopped) was made from, nor one a
host's state.json names (the live and the rollback colour, and the ops image of the same release).
Look at every host first, then act; a dry-run lists what would go."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..images.image import image_ref
from ..commands import docker as d
from ..config import Env
from ..deploy.stackfiles import ops_image_for
from ..deploy.target import Target, check_reachable
from ..errors import BadInput, OperationFailed
from ..runner import Runner
from .common import hosts, kubernetes, state_of
from .probes import PrunePlan, normal_ref, parse_container_images, parse_images, plan_prune


@dataclass
class HostPrune:
    host: str
    removed: list[str] = field(default_factory=list)
    kept: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def repositories(env: Env) -> list[str]:
    """The env's image repositories as the hosts name them (with the registry, when there is one)."""
    return [image_ref(env, "x", repo).rsplit(":", 1)[0] for repo in (env.cfg.build.repository, env.cfg.build.ops_repository)]


def named_in_state(env: Env, states: list[dict]) -> set[str]:
    """Every image a host's state.json names, and the ops image of each (same tag): never removed."""
    refs: set[str] = set()
    for st in states:
        for ref in (st.get("images") or {}).values():
            if ref:
                refs |= {normal_ref(ref), normal_ref(ops_image_for(env, ref))}
        if st.get("release"):
            refs |= {normal_ref(image_ref(env, st["release"])), normal_ref(image_ref(env, st["release"],
                                                                                   env.cfg.build.ops_repository))}
    return refs


def used_by_containers(t: Target) -> tuple[set[str], set[str]]:
    """(image ids, image names) of every container on the host, running or stopped."""
    r = None
    for _ in range(2):  # a container removed between the two reads fails the second: read both again
        ids = t.runner.run(d.container_ids_all(), mutating=False).stdout.split()
        if not ids:
            return set(), set()
        r = t.runner.run(d.container_images(ids), mutating=False, check=False)
        if r.rc == 0:
            return parse_container_images(r.stdout)
    why = (r.stderr or r.stdout).strip()[-200:] if r else ""
    raise OperationFailed(f"[{t.name}] cannot tell which images the containers use ({why}); nothing was removed")


def look(env: Env, t: Target, keep: int, named: set[str]) -> PrunePlan:
    rows = [row for repo in repositories(env)
            for row in parse_images(t.runner.run(d.images_of(repo), mutating=False).stdout)]
    used_ids, used_refs = used_by_containers(t)
    return plan_prune(rows, keep, used_ids, used_refs, named)


def prune(env: Env, runner: Runner, keep: int) -> list[HostPrune]:
    if keep < 1:
        raise BadInput(f"--keep {keep}: keep at least 1 image per repository; nothing was removed")
    if kubernetes(env):
        raise BadInput(f"env {env.name} runs on Kubernetes: its nodes' images are the kubelet's to collect "
                       "(imageGCHighThresholdPercent), and the registry's retention policy decides the rest; "
                       "nothing was removed")
    ts = hosts(env, runner)
    check_reachable(ts)
    named = named_in_state(env, [state_of(t) for t in ts])
    plans = [(t, look(env, t, keep, named)) for t in ts]
    out = []
    for t, plan in plans:
        res = HostPrune(t.name, kept=plan.keep)
        for ref in plan.remove:
            r = t.runner.run(d.rmi(ref), check=False)
            if r.rc == 0:
                res.removed.append(ref)
            else:
                why = (r.stderr or r.stdout).strip().splitlines()
                res.failed.append({"ref": ref, "error": why[-1] if why else f"exit {r.rc}"})
        out.append(res)
    return out
