"""`inv status`: per host its roles, the live colour, each colour's image and replicas with their health,
nginx and maintenance mode (web hosts), the datastores and walstream with their health (data host), the
last deploy (who, when, release) and the env's lock holder. Kubernetes: the Deployments/StatefulSets,
their rollouts, images and ready replicas, the live colour of the ios-api Service (kubectl).

Read-only: nothing here changes a host; a host that cannot be read is reported, the others still are."""
from __future__ import annotations

from typing import Any

from ..config import Env
from ..deploy import maintenance as mt
from ..deploy.switch import active_colour
from ..deploy.target import Target
from ..errors import IosopsError
from ..runner import Runner
from .common import containers, hosts, k8s_cfg, kubernetes, lock, state_of
from .probes import COLOURS, Container, parse_k8s_status

SIDECARS = ("walstream",)


def _replicas(cs: list[Container]) -> dict[str, Any]:
    return {"running": sum(1 for c in cs if c.state == "running"),
            "healthy": sum(1 for c in cs if c.health == "healthy"),
            "containers": [{"name": c.name, "id": c.id[:12], "image": c.image, "state": c.state, "health": c.health}
                           for c in cs]}


def host_status(t: Target, want_replicas: int) -> dict[str, Any]:
    out: dict[str, Any] = {"host": t.name, "roles": sorted(t.roles), "problems": []}
    try:
        cs = containers(t)
        st = state_of(t)
        active = active_colour(t) if t.web else None
        maint = t.read(mt.REL) if t.web else None
    except IosopsError as exc:
        out.update(reachable=False, problems=[f"cannot read {t.name}: {exc}"])
        return out
    out["reachable"] = True
    by_service: dict[str, list[Container]] = {}
    for c in cs:
        by_service.setdefault(c.service, []).append(c)
    problems: list[str] = out["problems"]
    if st.get("error"):
        problems.append(st["error"])
    out["last_deploy"] = {"at": st.get("deployed_at"), "by": st.get("deployed_by"), "release": st.get("release")}
    if st.get("rolled_back_at"):
        out["last_rollback"] = {"at": st.get("rolled_back_at"), "by": st.get("rolled_back_by")}
    deployed = bool(st) or bool(cs)
    out["deployed"] = deployed
    if t.web:
        images = st.get("images", {})
        out["active"] = active
        out["previous"] = st.get("previous")
        out["colours"] = {colour: {"image": images.get(colour), "live": colour == active,
                                   **_replicas(by_service.get(f"api-{colour}", []))} for colour in COLOURS}
        out["nginx"] = _replicas(by_service.get("nginx", []))
        out["maintenance"] = bool(maint and maint.strip())
        if deployed:
            if active is None:
                problems.append("no colour is live (nginx was never switched here)")
            else:
                live = out["colours"][active]
                if live["healthy"] < want_replicas:
                    problems.append(f"api-{active} (live): {live['healthy']}/{want_replicas} replicas healthy")
            if out["nginx"]["healthy"] < 1:
                problems.append("nginx is not healthy" if out["nginx"]["containers"] else "nginx is not running")
            if out["maintenance"]:
                problems.append("maintenance mode is on (nginx answers 503)")
    if t.data:
        out["datastores"] = {svc: _replicas(by_service.get(svc, [])) for svc in t.datastores()}
        out["walstream"] = _replicas(by_service.get("walstream", []))
        if deployed:
            for svc, r in {**out["datastores"], "walstream": out["walstream"]}.items():
                if r["healthy"] < 1:
                    problems.append(f"{svc} is {'not running' if not r['containers'] else r['containers'][0]['health']}")
    return out


def compose_status(env: Env, runner: Runner) -> dict[str, Any]:
    ts = hosts(env, runner)
    rows = [host_status(t, env.cfg.deploy.replicas) for t in ts]
    return {"env": env.name, "target": env.cfg.target, "lock": lock(env, runner), "hosts": rows,
            "ok": all(not h["problems"] for h in rows)}


def k8s_status(env: Env, runner: Runner) -> dict[str, Any]:
    from ..commands import kubectl as k
    from ..k8s.render import API

    cfg = k8s_cfg(env)
    svc = runner.run(k.get_json(cfg.context, cfg.namespace, "service", [API], cfg.kubectl), mutating=False, timeout=60)
    work = runner.run(k.get_json(cfg.context, cfg.namespace, "deployments,statefulsets", [], cfg.kubectl),
                      mutating=False, timeout=60)
    st = parse_k8s_status(svc.stdout, work.stdout)
    problems = [f"{w['kind'].lower()}/{w['name']}: {w['ready']}/{w['replicas']} ready, rollout {w['rollout']}"
                for w in st["workloads"] if w["replicas"] and (w["ready"] < w["replicas"] or w["rollout"] != "complete")
                and (w["colour"] is None or w["live"])]
    if st["live"] is None:
        problems.append(f"service {API} selects no colour (nothing deployed yet?)")
    return {"env": env.name, "target": "kubernetes", "context": cfg.context, "namespace": cfg.namespace,
            "lock": lock(env, runner), **st, "problems": problems, "ok": not problems}


def status(env: Env, runner: Runner) -> dict[str, Any]:
    return k8s_status(env, runner) if kubernetes(env) else compose_status(env, runner)


# -- for people ---------------------------------------------------------------------------------------------
def _health(r: dict) -> str:
    if not r["containers"]:
        return "not running"
    return ", ".join(sorted({c["health"] for c in r["containers"]})) + (
        f" ({r['healthy']}/{len(r['containers'])})" if len(r["containers"]) > 1 else "")


def lines(data: dict[str, Any]) -> list[str]:
    lk = data.get("lock") or {}
    h = lk.get("holder")
    if lk.get("error"):
        said = f"unknown ({lk['error']})"
    elif h is None:
        said = "free"
    elif not h:
        said = f"held, holder unknown ({lk['at']})"
    else:
        said = f"held by {h.get('who')} since {h.get('since')} running `{h.get('task')}` ({lk['at']})"
    head = f"env {data['env']} ({data['target']}) · lock: {said}"
    out = [head]
    if data["target"] == "kubernetes":
        ann = data.get("annotations", {})
        out.append(f"  {data['context']}/{data['namespace']}: live colour {data['live'] or 'none'}"
                   + (f", tag {ann['iosops.io/deployed-tag']}" if ann.get("iosops.io/deployed-tag") else "")
                   + (f", switched {ann['iosops.io/switched-at']}" if ann.get("iosops.io/switched-at") else ""))
        for w in data["workloads"]:
            img = ", ".join(w["images"].values())
            out.append(f"  {w['kind'].lower()}/{w['name']}{' (live)' if w['live'] else ''}: {w['ready']}/"
                       f"{w['replicas']} ready, rollout {w['rollout']}, {img}")
    for h in data.get("hosts", []):
        out.append(f"[{h['host']}] roles: {'+'.join(h['roles'])}")
        if not h.get("reachable", True):
            out.append(f"  {h['problems'][0]}")
            continue
        if not h["deployed"]:
            out.append("  nothing deployed here")
            continue
        ld = h["last_deploy"]
        out.append(f"  last deploy: {ld['at'] or '?'} by {ld['by'] or '?'}, release {ld['release'] or '?'}"
                   + (f"; rolled back {h['last_rollback']['at']} by {h['last_rollback']['by']}" if h.get("last_rollback") else ""))
        if "colours" in h:
            out.append(f"  live colour: {h['active'] or 'none'} · maintenance: {'ON' if h['maintenance'] else 'off'}"
                       f" · nginx: {_health(h['nginx'])}")
            for colour, c in h["colours"].items():
                out.append(f"  api-{colour:5} {'live    ' if c['live'] else 'idle    '} {c['image'] or '-':40} "
                           f"{c['running']} running, {c['healthy']} healthy")
        if "datastores" in h:
            out.append("  " + " · ".join(f"{svc}: {_health(r)}" for svc, r in
                                         {**h["datastores"], "walstream": h["walstream"]}.items()))
    problems = data.get("problems") or [f"[{h['host']}] {p}" for h in data.get("hosts", []) for p in h["problems"]]
    out.append("problems: " + ("; ".join(problems) if problems else "none"))
    return out
