"""Blue-green deploys of docker/compose.yml behind nginx, on this machine or on SSH hosts.

deploy: image -> destructive-migration gate -> datastores up (the data host) -> migrations (once, from
the first web host) -> idle colour up (every web host) -> Docker health + /ready of every replica ->
smoke checks -> testinfra checks -> (all web hosts ready) -> switch the nginx upstream on every web host
(render, `nginx -t`, reload; never reload an invalid config) -> drain the old workers -> the gate:
synthetic probes through every web host's nginx, the new colour's 5xx share in nginx's JSON log and its
p95 latency against the old colour's -> keep the old colour for `rollback`.
Any failure before the switch removes the idle colour (traffic never moved); any failure after it
switches back. The active colour is read from each web host's rendered upstream (look, then act).

Pieces: target.py (hosts, roles, preflight), stackfiles.py (what is rendered on a host), health.py
(waiting, smoke), switch.py (nginx switch, drain, gate); this module is the flows.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..backup.stack import BACKUP_ROLE, ensure_backup_role
from ..commands import compose as cc
from ..commands import python as py
from ..config import Env
from ..errors import BadInput, OperationFailed
from ..notify import Tracker, tag_of, tracked
from ..runner import Runner
from ..stack.pgauth import check_compose, check_compose_started
from . import nginx as ng
from .health import all_healthy, smoke, wait_ready, wait_service_healthy
from .dbusers import APP_ROLE, MIGRATE_ENV, MONITOR_ROLE, OWNER_ROLE, ensure_roles, migrate_secret_mount
from .stackfiles import datastores_fingerprint, ops_image_for, write_stack_files
from .switch import (active_colour, drain, error_window, latency_verdict, nginx_id, probe_all, remove_colour,
                     p95, split_p95, switch)
from .target import (Target, check_image, check_ports, check_reachable, data_target, ensure_tls, targets,
                     web_targets)

# Run in a one-off container of the new image: list the migrations it would apply; apply them unless one
# is marked destructive and ALLOW_DESTRUCTIVE is not 1 (one container start instead of two).
MIGRATE = """
import json, os, psycopg
from iosapi.migrate import apply, discover
from iosapi.settings import load
dsn = load().pg_conninfo
with psycopg.connect(dsn) as c:
    has = c.execute("SELECT to_regclass('schema_migrations')").fetchone()[0]
    done = {v for (v,) in c.execute('SELECT version FROM schema_migrations')} if has else set()
todo = [{"version": m.version, "name": m.name, "destructive": m.destructive} for m in discover() if m.version not in done]
refused = any(m["destructive"] for m in todo) and os.environ.get("ALLOW_DESTRUCTIVE") != "1"
print(json.dumps({"pending": todo, "applied": None if refused else apply(dsn)}))
"""

def migrate(t: Target, service: str, allow_destructive: bool) -> dict:
    """The migrations in a one-off container of `service` (its image), as the schema's owner: {"pending":
    [...], "applied": [versions] or None when a destructive one was refused}. `inv deploy` and `inv up` both."""
    mig = t.runner.run(cc.run_once(t.base(), service, py.script(MIGRATE),
                                   env={"ALLOW_DESTRUCTIVE": "1" if allow_destructive else "0", **MIGRATE_ENV},
                                   volumes=[migrate_secret_mount(t)]))
    return json.loads(mig.stdout.strip().splitlines()[-1]) if not mig.dry_run else {"pending": [], "applied": []}


@dataclass
class DeployResult:
    env: str
    image: str
    colour: str
    previous: Optional[str]
    hosts: list[str]
    migrations: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    errors_after_switch: int = 0
    requests_after_switch: int = 0
    seconds: float = 0.0
    probes_after_switch: int = 0
    p95_before_ms: Optional[float] = None
    p95_after_ms: Optional[float] = None


# -- the flows ------------------------------------------------------------------------------------------
def _verify(env: Env, runner: Runner, colour: str) -> list[str]:
    if not env.cfg.deploy.verify_hosts:
        return ["verify-hosts: skipped (deploy.verify_hosts is false)"]
    if runner.dry_run:  # the new colour is not started in a dry-run, so its checks could only fail
        runner.call(f"testinfra checks of env {env.name} (colour {colour})", lambda: None)
        return ["verify-hosts: planned, not run (the new colour is not started in a dry-run)"]
    from ..hosts.verify import verify

    report = verify(env, runner, colour=colour)
    return [f"verify-hosts: {report.summary()}"]


def placement(ts: list[Target]) -> str:
    return "compose on " + ", ".join(t.name + (f" ({'+'.join(sorted(t.roles))})" if t.split else "") for t in ts)


def check_profiles(env: Env, ts: list[Target]) -> None:
    if any(t.split for t in ts) and "monitoring" in env.cfg.deploy.profiles:
        raise BadInput(f"env {env.name}: the monitoring profile runs beside the stack on one host; with web and data "
                       "roles on different hosts run monitoring on its own (`inv monitoring.up`) and remove "
                       "`monitoring` from deploy.profiles; nothing was changed")


def deploy(env: Env, runner: Runner, image: str, allow_destructive: bool = False,
           say: Optional[Callable[[str], None]] = None) -> DeployResult:
    """The blue-green deploy, with its webhook messages (start, then success, failure or rolled back)."""
    with tracked(env, runner, "deploy", version=tag_of(image)) as ev:
        result = _deploy(env, runner, image, allow_destructive, say, ev)
        ev.set(summary=f"{result.colour} is live" + (f"; {result.previous} kept running for `inv rollback`"
                                                     if result.previous else ""))
    return result


def load_state(t: Target) -> dict:
    raw = t.read("state.json")
    return json.loads(raw) if raw else {"images": {}}


def save_state(t: Target, st: dict) -> None:
    t.put("state.json", json.dumps(st, indent=2, sort_keys=True) + "\n")


def _deploy(env: Env, runner: Runner, image: str, allow_destructive: bool,
            say: Optional[Callable[[str], None]], ev: Tracker) -> DeployResult:
    start = time.monotonic()
    say = say or runner.info
    ts = targets(env, runner)
    web, dt = web_targets(ts), data_target(ts)
    ev.set(target=placement(ts))
    check_profiles(env, ts)
    check_reachable(ts)
    ops_image = ops_image_for(env, image)
    for t in ts:
        if t.web:
            check_image(t, image)
        if t.data:
            check_image(t, ops_image)
    # A data volume whose PostgreSQL refuses this checkout's password (another checkout made it): refused
    # now, or (PostgreSQL not running) right after the datastores start.
    recheck = check_compose(dt)
    actives = {t.name: active_colour(t) for t in web}
    if len(set(actives.values())) > 1:
        raise BadInput(f"hosts disagree on the active colour ({actives}); run `inv rollback` or fix by hand first")
    active = next(iter(actives.values()))
    idle = "blue" if active is None else ng.other(active)
    result = DeployResult(env.name, image, idle, active, [t.name for t in ts])

    def step(text: str) -> None:
        text = f"[{time.monotonic() - start:5.1f}s] {'(dry-run, not checked) ' if runner.dry_run else ''}{text}"
        result.steps.append(text)
        say(text)

    states: dict[str, dict] = {}
    first: dict[str, bool] = {}
    for t in ts:
        if t.web:
            first[t.name] = nginx_id(t) is None
            if first[t.name]:
                check_ports(t)
            step(ensure_tls(t))
        states[t.name] = load_state(t)
        images = {**states[t.name].get("images", {}), idle: image} if t.web else {}
        write_stack_files(t, images, ops_image)
    previous = states[web[0].name].get("images", {}).get(active, "") if active else ""
    ev.start(previous=tag_of(previous) if previous else "")

    started: list[Target] = []
    try:
        # Look, then act: datastores whose definition did not change since the last deploy and that are
        # healthy are left alone (a compose run costs seconds); anything else goes through `up`.
        core = dt.datastores()
        fp = datastores_fingerprint(dt, {})
        if states[dt.name].get("datastores") == fp and all_healthy(dt, core):
            step(f"[{dt.name}] no change: {', '.join(core)} healthy and unchanged")
        else:
            dt.runner.run(cc.up(dt.base(), core))
            for svc in core:
                wait_service_healthy(dt, svc, env.cfg.deploy.health_timeout_s)
            if recheck is not None:
                check_compose_started(dt, recheck)
            ensure_backup_role(dt)
            step(f"[{dt.name}] backup role {BACKUP_ROLE} ready")
            ensure_roles(dt)
            step(f"[{dt.name}] roles {OWNER_ROLE}, {APP_ROLE}, {MONITOR_ROLE} ready")
        states[dt.name]["datastores"] = fp
        # The WAL streamer runs the ops image of this release (recreated only when that changed).
        dt.runner.run(cc.up(dt.base(), ["walstream"]))
        # Migrations once, against the one database, before any new code serves; as the schema's owner,
        # whose password is mounted into this one-off container only (the serving API never has it).
        outcome = migrate(web[0], f"api-{idle}", allow_destructive)
        if outcome["applied"] is None:
            destructive = [f"{m['version']}_{m['name']}" for m in outcome["pending"] if m["destructive"]]
            raise BadInput(f"migration(s) {', '.join(destructive)} are marked destructive (-- iosops: destructive): "
                           "the running version may still use what they drop (expand/contract, see docs/deploy.md); "
                           "deploy the expand step first, or pass --allow-destructive; nothing was applied or switched")
        result.migrations = outcome["applied"]
        step(f"migrations applied: {', '.join(result.migrations)}" if result.migrations else
             "migrations: no change (schema up to date)")

        for t in web:
            started.append(t)
            t.runner.run(cc.up(t.base(), [f"api-{idle}"], {f"api-{idle}": env.cfg.deploy.replicas}))
        for t in web:
            ids = wait_ready(t, f"api-{idle}", env.cfg.deploy.health_timeout_s)
            step(f"[{t.name}] api-{idle}: {len(ids)} replica(s) healthy and ready")
            step(smoke(t, ids)[0])
        for line in _verify(env, runner, idle):
            step(line)
        for t in web:
            if first[t.name]:
                from .nginx import TEMPLATE, UPSTREAM_TEMPLATE

                t.put("nginx/nginx.conf", ng.render_main(env, env.path(TEMPLATE).read_text()))
                t.put("nginx/conf.d/upstream.conf", ng.render_upstream(env.path(UPSTREAM_TEMPLATE).read_text(), idle))
                t.runner.run(cc.up(t.base(), ["nginx"]))
                wait_service_healthy(t, "nginx", env.cfg.deploy.health_timeout_s)
                step(f"[{t.name}] nginx started, routing to {idle}")
    except (OperationFailed, BadInput) as exc:
        if runner.dry_run:
            raise
        for t in started:
            remove_colour(t, idle)
        what = f"removed api-{idle} on {', '.join(t.name for t in started)}" if started else "nothing to undo"
        where = f"traffic stays on {active}" if active else "no traffic was ever routed"
        if isinstance(exc, BadInput) and not started:
            raise
        raise OperationFailed(f"deploy of {image} failed before the switch: {exc}; rolled back: {what}; {where}",
                              rolled_back=f"{what}; {where}" if started else "") from None

    if active is not None:
        _switch_and_gate(env, runner, web, active, idle, result, step)

    for t in ts:
        st = states[t.name]
        if t.web:
            st["images"] = {**st.get("images", {}), idle: image}
            st.update(active=idle, previous=active)
        st.update(deployed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), deployed_by=_who(),
                  release=tag_of(image))
        save_state(t, st)
    if active:
        step(f"kept api-{active} running for `inv rollback --env {env.name}`")
    result.seconds = round(time.monotonic() - start, 2)
    return result


def _who() -> str:
    from ..ops import who

    return who()


def _switch_and_gate(env: Env, runner: Runner, web: list[Target], active: str, idle: str, result: DeployResult,
                     step: Callable[[str], None]) -> None:
    """All web hosts were ready: switch every one of them or none; then the gate decides (rollback =
    every host back on the old colour)."""
    cfg = env.cfg.deploy
    gate = cfg.error_window_s > 0 and not runner.dry_run
    before = probe_all(web, max(5, cfg.gate_probes // 3), 1.0) if gate else []
    since = {t.name: t.now() for t in web}
    switched: list[Target] = []
    try:
        for t in web:
            switch(t, idle)
            switched.append(t)
        step(f"switched nginx to {idle} on {len(web)} host(s)")
        for t in web:
            drain(t)
        step("drained: the old workers finished their requests")
    except OperationFailed as exc:
        for t in switched:
            switch(t, active)
        for t in web:
            remove_colour(t, idle)
        raise OperationFailed(f"switch to {idle} failed: {exc}; rolled back: traffic back on {active}, "
                              f"api-{idle} removed", rolled_back=f"traffic back on {active}, api-{idle} removed") from None
    if not gate:
        step("gate: not run (" + ("dry-run" if runner.dry_run else "deploy.error_window_s is 0") + ")")
        return

    after = runner.call(f"probe {idle} through nginx on {len(web)} host(s) for {cfg.error_window_s}s",
                        probe_all, web, cfg.gate_probes, cfg.error_window_s, mutating=False).value or []
    errors = total = 0
    for t in web:
        e, n = error_window(t, idle, since[t.name])
        errors, total = errors + e, total + n
    unanswered = sum(1 for p in after for s in p.statuses if not isinstance(s, int))
    errors, total = errors + unanswered, total + unanswered  # a probe nginx never logged still failed
    p_before = _pooled_p95(before)
    p_after = _pooled_p95(after)
    result.errors_after_switch, result.requests_after_switch = errors, total
    result.probes_after_switch = sum(len(p.statuses) for p in after)
    result.p95_before_ms = round(p_before * 1000, 1) if p_before is not None else None
    result.p95_after_ms = round(p_after * 1000, 1) if p_after is not None else None
    why = None
    if total < result.probes_after_switch:
        why = f"only {total} of {result.probes_after_switch} probes reached nginx's log of {idle}"
    elif total and errors / total > cfg.max_error_rate:
        why = f"{idle} answered {errors}/{total} requests with 5xx or not at all (> {cfg.max_error_rate:.1%})"
    else:
        why = latency_verdict(cfg, p_before, split_p95(after))
    if why:
        for t in web:
            switch(t, active)
            drain(t)
        raise OperationFailed(f"gate after the switch: {why}; rolled back: traffic back on {active} "
                              f"(api-{idle} left running without traffic for inspection)",
                              rolled_back=f"traffic back on {active} (api-{idle} left running without "
                                          "traffic for inspection)")
    step(f"gate: {errors}/{total} 5xx over {cfg.error_window_s}s ({result.probes_after_switch} probes); p95 "
         f"{result.p95_after_ms} ms vs {result.p95_before_ms} ms before the switch")


def _pooled_p95(results: list) -> Optional[float]:
    return p95([x for r in results for x in r.latencies])


@dataclass
class RollbackResult:
    env: str
    colour: str
    image: str
    previous: str
    seconds: float = 0.0


def rollback(env: Env, runner: Runner) -> RollbackResult:
    """`inv rollback`: traffic back to the previous colour, with its webhook message."""
    with tracked(env, runner, "rollback") as ev:
        result = _rollback(env, runner, ev)
        ev.set(summary=f"traffic on {result.colour}; {result.previous} keeps running for a redeploy")
    return result


def _rollback(env: Env, runner: Runner, ev: Tracker) -> RollbackResult:
    start = time.monotonic()
    ts = targets(env, runner)
    web = web_targets(ts)
    ev.set(target=placement(ts))
    check_reachable(web)
    actives = {t.name: active_colour(t) for t in web}
    if None in actives.values():
        raise BadInput(f"nothing to roll back on {', '.join(k for k, v in actives.items() if v is None)}: "
                       "no deploy has switched traffic there yet")
    if len(set(actives.values())) > 1:
        raise BadInput(f"hosts disagree on the active colour ({actives}); fix by hand first")
    active = next(iter(actives.values()))
    back = ng.other(active)
    image = live = ""
    for t in web:
        images = load_state(t).get("images", {})
        image, live = images.get(back, ""), images.get(active, "")
        ids = t.containers(f"api-{back}")
        if not ids and not runner.dry_run:
            raise BadInput(f"api-{back} is not running on {t.name}: nothing to roll back to; deploy a known-good "
                           "tag with `inv deploy --tag ...`")
        wait_ready(t, f"api-{back}", min(env.cfg.deploy.health_timeout_s, 30))
    ev.set(version=tag_of(image) if image else "", previous=tag_of(live) if live else "")
    switched: list[Target] = []
    try:
        for t in web:
            switch(t, back)
            switched.append(t)
    except OperationFailed as exc:
        for t in switched:
            switch(t, active)
        raise OperationFailed(f"rollback failed: {exc}; traffic stays on {active}") from None
    for t in web:
        drain(t)
        st = load_state(t)
        st.update(active=back, previous=active, rolled_back_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  rolled_back_by=_who())
        save_state(t, st)
    return RollbackResult(env.name, back, image, active, round(time.monotonic() - start, 2))


def destroy(env: Env, runner: Runner, volumes: bool = False) -> list[str]:
    """Remove the compose stack (all profiles) of every target; data volumes only with volumes=True."""
    done = []
    for t in targets(env, runner):
        if t.read("compose.yml") is None and not runner.dry_run:
            continue
        base = [*t.base(), "--profile", "monitoring", "--profile", "search", "--profile", "ops", "--profile", "quick"]
        t.runner.run(cc.down(base, volumes), check=False)
        done.append(t.name)
    return done
