"""Blue-green deploy and rollback on Kubernetes, all through kubectl argv run by the runner.

deploy: check the kubectl context -> read which colour is live -> render with the new tag -> validate
-> apply everything but the live colour's Deployment (so the idle colour gets the new image) ->
`kubectl rollout status` -> smoke test through the preview Service -> switch the live Service (and
the preview Service to the old colour, and the HPA to the new one). The old colour keeps its pods for
the rollback window; `scale_down` removes them later. Any failure after the first change rolls back
the selectors and the idle colour, and says what it restored.

State lives in the cluster, not on the deploying machine: the live colour is the `ios-api` Service's
selector; the switch time and previous colour are annotations on it.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import yaml

from ..commands import kubectl as k
from ..config import Env, K8sCfg
from ..errors import BadInput, OperationFailed
from ..notify import Tracker, tracked
from ..runner import Runner
from .render import (API, COLOURS, PREVIEW, check_secrets, check_tag, deployment, external_targets, k8s_cfg,
                     other, render, secret_manifests, validate)

ANN = "iosops.io/"
SWITCHED_AT = ANN + "switched-at"
PREVIOUS = ANN + "previous-colour"
DEPLOYED_TAG = ANN + "deployed-tag"
MIN_REPLICAS = 3  # the HPA's minReplicas: an idle colour about to take traffic starts at least this big

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- probes: a command plus a pure parser ------------------------------------------------------------

@dataclass
class ClusterState:
    live: Optional[str] = None  # colour the ios-api Service selects; None before the first deploy
    replicas: dict[str, int] = field(default_factory=dict)  # colour -> spec.replicas, existing only
    tags: dict[str, str] = field(default_factory=dict)  # colour -> image tag of its api container
    revisions: dict[str, int] = field(default_factory=dict)  # colour -> deployment.kubernetes.io/revision
    annotations: dict[str, str] = field(default_factory=dict)  # ours, on the live Service


def _items(text: str) -> list[dict]:
    text = text.strip()
    if not text:
        return []
    data = json.loads(text)
    return data.get("items", []) if data.get("kind", "").endswith("List") else [data]


def parse_state(service_json: str, deployments_json: str) -> ClusterState:
    state = ClusterState()
    for svc in _items(service_json):
        colour = svc.get("spec", {}).get("selector", {}).get("app.kubernetes.io/color")
        state.live = colour if colour in COLOURS else None
        state.annotations = {k_: v for k_, v in (svc["metadata"].get("annotations") or {}).items()
                             if k_.startswith(ANN)}
    for dep in _items(deployments_json):
        name = dep["metadata"]["name"]
        colour = name.rsplit("-", 1)[-1]
        if colour not in COLOURS:
            continue
        state.replicas[colour] = int(dep.get("spec", {}).get("replicas", 1))
        rev = (dep["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", "0")
        state.revisions[colour] = int(rev) if str(rev).isdigit() else 0
        for c in dep["spec"]["template"]["spec"]["containers"]:
            if c["name"] == "api":
                state.tags[colour] = c["image"].rsplit(":", 1)[-1] if ":" in c["image"].rsplit("/", 1)[-1] else ""
    if state.live not in state.replicas:  # a selector pointing at no Deployment: nothing is live
        state.live = None
    return state


def parse_smoke(stdout: str, expected_tag: str) -> Optional[str]:
    """None when /ready is 200 and /version reports the expected tag, else what was wrong."""
    try:
        data = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return f"no result from the smoke test: {stdout.strip()[-200:]!r}"
    ready, version = data.get("/ready", {}), data.get("/version", {})
    if ready.get("status") != 200:
        return f"/ready answered {ready.get('status')} ({ready.get('error') or ready.get('body')})"
    if version.get("status") != 200:
        return f"/version answered {version.get('status')} ({version.get('error')})"
    got = (version.get("body") or {}).get("git_sha")
    if expected_tag and got != expected_tag:
        return f"/version reports {got!r}, expected {expected_tag!r} (the preview Service reaches the wrong pods)"
    return None


def check_context(env: Env, runner: Runner, cfg: K8sCfg) -> None:
    if not cfg.context:
        raise BadInput(f"env {env.name}: k8s.context is not set; name the kubectl context of this env's cluster "
                       f"in envs/{env.name}.yaml")
    res = runner.run(k.current_context(cfg.kubectl), mutating=False, check=False)
    current = res.stdout.strip() if res.rc == 0 else ""
    if current != cfg.context:
        raise BadInput(f"kubectl context is {current or '(none)'!r}, but env {env.name} deploys only to "
                       f"{cfg.context!r}; run `kubectl config use-context {cfg.context}` and retry")


def read_state(runner: Runner, cfg: K8sCfg) -> ClusterState:
    ctx, ns = cfg.context, cfg.namespace
    try:
        svc = runner.run(k.get_json(ctx, ns, "service", [API], cfg.kubectl), mutating=False, timeout=60)
        deps = runner.run(k.get_json(ctx, ns, "deployment", [deployment(c) for c in COLOURS], cfg.kubectl),
                          mutating=False, timeout=60)
    except OperationFailed as exc:  # unreachable cluster, no permission: nothing was changed
        raise BadInput(f"cannot read the cluster of context {ctx!r} ({exc}); check the API server, VPN and "
                       "credentials, then retry") from None
    try:
        return parse_state(svc.stdout, deps.stdout)
    except (ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"unexpected answer from the cluster of context {ctx!r} ({type(exc).__name__}: {exc}); "
                       "is it a Kubernetes API server?") from None


def smoke(runner: Runner, cfg: K8sCfg, colour: str, tag: str) -> None:
    url = f"http://{PREVIEW}.{cfg.namespace}.svc"
    res = runner.run(k.smoke_exec(cfg.context, cfg.namespace, deployment(colour), "api", url, cfg.smoke_timeout_s,
                                  cfg.kubectl), check=False, timeout=cfg.smoke_timeout_s * 3 + 30)
    if res.dry_run:
        return
    problem = parse_smoke(res.stdout, tag) if res.rc == 0 else f"exit {res.rc}: {(res.stderr or res.stdout).strip()[-200:]}"
    if problem:
        raise OperationFailed(f"smoke test through {PREVIEW} failed: {problem}")


def switch(runner: Runner, cfg: K8sCfg, to: str, annotations: dict[str, str]) -> None:
    """Live Service to `to`, preview Service to the other colour, HPA to `to`'s Deployment."""
    ctx, ns, kc = cfg.context, cfg.namespace, cfg.kubectl
    runner.run(k.switch_service(ctx, ns, API, to, annotations, kc))
    runner.run(k.switch_service(ctx, ns, PREVIEW, other(to), {}, kc))
    runner.run(k.hpa_target(ctx, ns, API, deployment(to), kc))


# -- deploy ------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    env: str
    action: str
    tag: str = ""
    live: str = ""
    previous: str = ""
    keep_until: str = ""
    applied: str = ""
    steps: list[str] = field(default_factory=list)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def placement(cfg: K8sCfg) -> str:
    return f"kubernetes context {cfg.context}, namespace {cfg.namespace}"


def deploy(env: Env, runner: Runner, tag: str, *, now: Clock = utcnow) -> Outcome:
    """The blue-green deploy, with its webhook messages (start, then success, failure or rolled back)."""
    with tracked(env, runner, "deploy", version=tag or "") as ev:
        out = _deploy(env, runner, tag, now, ev)
        ev.set(summary=f"{out.tag} live on {out.live}" + (f"; {out.previous} kept until {out.keep_until} for "
                                                          "`inv k8s.rollback`" if out.previous else ""))
    return out


def _deploy(env: Env, runner: Runner, tag: str, now: Clock, ev: Tracker) -> Outcome:
    cfg = k8s_cfg(env)
    check_tag(tag)
    ev.set(target=placement(cfg))
    check_context(env, runner, cfg)
    state = read_state(runner, cfg)
    ev.start(previous=state.tags.get(state.live, "") if state.live else "")
    # Before the first deploy nothing is live: render as if green were, so blue is the idle colour.
    live = state.live or "green"
    target = other(live)
    idle_replicas = max(MIN_REPLICAS, state.replicas.get(live, 0)) if state.live else None
    rendered = render(env, runner, tag, live=live, idle_replicas=idle_replicas)
    check_secrets(env, rendered)
    validate(env, runner, rendered)
    # every reference revealed before anything changes
    secrets = secret_manifests(env, cfg.namespace, frozenset(external_targets(rendered.objects)))

    objects = [o for o in rendered.objects if not (o["kind"] == "Deployment" and o["metadata"]["name"] == deployment(live))]
    path = env.state_dir / "k8s" / env.name / f"apply-{tag}.yaml"
    runner.write_file(path, yaml.safe_dump_all(objects, sort_keys=False))
    out = Outcome(env.name, "deploy", tag=tag, live=target, previous=state.live or "", applied=str(path),
                  dry_run=runner.dry_run)

    ctx, ns, kc = cfg.context, cfg.namespace, cfg.kubectl
    changed = switched = False
    step = "apply"
    try:
        changed = True
        runner.run(k.apply_file(ctx, str(path), kc))  # creates the Namespace on a first deploy
        for _name, manifest in secrets:  # pods wait for a missing Secret, so after is fine
            runner.run(k.apply_stdin(ctx, ns, kc), input=manifest)
        step = "rollout"
        runner.run(k.rollout_status(ctx, ns, deployment(target), cfg.rollout_timeout_s, kc),
                   timeout=cfg.rollout_timeout_s + 60)
        step = "smoke test"
        smoke(runner, cfg, target, tag)
        step = "switch"
        switched = True
        switch(runner, cfg, target, {DEPLOYED_TAG: tag, PREVIOUS: state.live or "", SWITCHED_AT: iso(now())})
    except OperationFailed as exc:
        restored = undo_deploy(runner, cfg, state, target, switched) if changed else []
        raise OperationFailed(f"deploy of {tag} to {env.name} failed at {step}: {exc}; rolled back: "
                              f"{'; '.join(restored) or 'nothing had changed'}",
                              rolled_back="; ".join(restored)) from None
    if state.live:
        out.keep_until = iso(now() + dt.timedelta(seconds=cfg.rollback_window_s))
        out.steps.append(f"{deployment(state.live)} keeps {state.replicas.get(state.live)} replica(s) for rollback "
                         f"until {out.keep_until}; then: inv k8s.scale-down --env {env.name}")
    return out


def undo_deploy(runner: Runner, cfg: K8sCfg, state: ClusterState, target: str, switched: bool) -> list[str]:
    """Put selectors and the idle colour back as they were. Every step is tried; failures are named."""
    ctx, ns, kc = cfg.context, cfg.namespace, cfg.kubectl
    done: list[str] = []

    def attempt(what: str, argv: list[str]) -> None:
        try:
            runner.run(argv)
            done.append(what)
        except OperationFailed as exc:
            done.append(f"FAILED to {what} ({exc})")

    if switched and state.live:
        before = {key: state.annotations.get(key, "") for key in (DEPLOYED_TAG, PREVIOUS, SWITCHED_AT)}
        attempt(f"service {API} back to {state.live}", k.switch_service(ctx, ns, API, state.live, before, kc))
        attempt(f"service {PREVIEW} back to {target}", k.switch_service(ctx, ns, PREVIEW, target, {}, kc))
        attempt(f"hpa {API} back to {deployment(state.live)}", k.hpa_target(ctx, ns, API, deployment(state.live), kc))
    dep = deployment(target)
    if target in state.replicas:
        rev = state.revisions.get(target, 0)
        attempt(f"{dep} back to revision {rev or 'previous'}", k.rollout_undo(ctx, ns, dep, rev, kc))
        attempt(f"{dep} back to {state.replicas[target]} replica(s)", k.scale(ctx, ns, dep, state.replicas[target], kc))
    else:
        attempt(f"{dep} removed (it did not exist before)", k.delete(ctx, ns, "deployment", dep, kc))
    return done


# -- rollback and scale-down -------------------------------------------------------------------------

def rollback(env: Env, runner: Runner, *, now: Clock = utcnow) -> Outcome:
    """Send traffic back to the other colour (scaling it up first if the window had passed)."""
    with tracked(env, runner, "rollback") as ev:
        out = _rollback(env, runner, now, ev)
        ev.set(summary=f"traffic on {out.live}; {out.previous} kept for inspection")
    return out


def _rollback(env: Env, runner: Runner, now: Clock, ev: Tracker) -> Outcome:
    cfg = k8s_cfg(env)
    ev.set(target=placement(cfg))
    check_context(env, runner, cfg)
    state = read_state(runner, cfg)
    if not state.live:
        raise BadInput(f"env {env.name}: nothing is deployed (no {API} Service selecting a colour); nothing to roll back")
    back = other(state.live)
    if back not in state.replicas:
        raise BadInput(f"env {env.name}: {deployment(back)} does not exist, so there is no previous version to roll "
                       "back to; deploy a known-good tag instead (inv k8s.deploy --tag T)")
    ctx, ns, kc = cfg.context, cfg.namespace, cfg.kubectl
    out = Outcome(env.name, "rollback", tag=state.tags.get(back, ""), live=back, previous=state.live,
                  dry_run=runner.dry_run)
    ev.set(version=out.tag, previous=state.tags.get(state.live, ""))
    scaled = switched = False
    step = "scale up"
    try:
        if state.replicas[back] == 0:
            n = max(MIN_REPLICAS, state.replicas.get(state.live, 0))
            scaled = True
            runner.run(k.scale(ctx, ns, deployment(back), n, kc))
            runner.run(k.rollout_status(ctx, ns, deployment(back), cfg.rollout_timeout_s, kc),
                       timeout=cfg.rollout_timeout_s + 60)
            out.steps.append(f"{deployment(back)} scaled up to {n}")
        step = "smoke test"
        smoke(runner, cfg, back, state.tags.get(back, ""))
        step = "switch"
        switched = True
        switch(runner, cfg, back, {DEPLOYED_TAG: state.tags.get(back, ""), PREVIOUS: state.live,
                                   SWITCHED_AT: iso(now())})
    except OperationFailed as exc:
        restored: list[str] = []
        if switched:
            restored += undo_switch(runner, cfg, state)
        if scaled:
            try:
                runner.run(k.scale(ctx, ns, deployment(back), 0, kc))
                restored.append(f"{deployment(back)} back to 0 replicas")
            except OperationFailed as exc2:
                restored.append(f"FAILED to scale {deployment(back)} back to 0 ({exc2})")
        raise OperationFailed(f"rollback of {env.name} failed at {step}: {exc}; traffic stays on {state.live}; "
                              f"rolled back: {'; '.join(restored) or 'nothing had changed'}",
                              rolled_back="; ".join(restored)) from None
    out.steps.append(f"traffic on {back} ({out.tag}); {deployment(state.live)} kept for inspection: "
                     f"inv k8s.scale-down --env {env.name}")
    return out


def undo_switch(runner: Runner, cfg: K8sCfg, state: ClusterState) -> list[str]:
    ctx, ns, kc = cfg.context, cfg.namespace, cfg.kubectl
    assert state.live  # nosec B101 # invariant: callers only undo a switch they made to a live colour
    before = {key: state.annotations.get(key, "") for key in (DEPLOYED_TAG, PREVIOUS, SWITCHED_AT)}
    done = []
    for what, argv in ((f"service {API} back to {state.live}", k.switch_service(ctx, ns, API, state.live, before, kc)),
                       (f"service {PREVIEW} back to {other(state.live)}",
                        k.switch_service(ctx, ns, PREVIEW, other(state.live), {}, kc)),
                       (f"hpa {API} back to {deployment(state.live)}", k.hpa_target(ctx, ns, API, deployment(state.live), kc))):
        try:
            runner.run(argv)
            done.append(what)
        except OperationFailed as exc:
            done.append(f"FAILED to {what} ({exc})")
    return done


def scale_down(env: Env, runner: Runner, *, force: bool = False, now: Clock = utcnow) -> Outcome:
    """Scale the non-live colour to 0 once the rollback window since the last switch has passed."""
    cfg = k8s_cfg(env)
    check_context(env, runner, cfg)
    state = read_state(runner, cfg)
    if not state.live:
        raise BadInput(f"env {env.name}: nothing is deployed; nothing to scale down")
    idle = other(state.live)
    out = Outcome(env.name, "scale-down", tag=state.tags.get(state.live, ""), live=state.live, previous=idle,
                  dry_run=runner.dry_run)
    if state.replicas.get(idle, 0) == 0:
        out.steps.append(f"no change: {deployment(idle)} is already at 0 replicas (or absent)")
        return out
    switched_at = state.annotations.get(SWITCHED_AT, "")
    if switched_at and not force:
        try:
            until = dt.datetime.strptime(switched_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc) + \
                dt.timedelta(seconds=cfg.rollback_window_s)
        except ValueError:
            until = None
        if until and now() < until:
            raise BadInput(f"rollback window open until {iso(until)}: {deployment(idle)} stays up so "
                           f"`inv k8s.rollback --env {env.name}` is instant; rerun after that, or pass --force")
    runner.run(k.scale(cfg.context, cfg.namespace, deployment(idle), 0, cfg.kubectl))
    out.steps.append(f"{deployment(idle)} scaled to 0")
    return out
