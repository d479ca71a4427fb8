"""Backups, restores and backup housekeeping of a Kubernetes env: Jobs of the ops image, run with kubectl.

Every action is a Job made from the deployed CronJob `ios-backup`'s template (so it runs exactly the
image, ConfigMap `ios-ops-config` and Secret keys the last deploy put there), with other arguments to
`python -m iosops.backup.stackops`: the Job is created from a manifest written to the state dir (the
plan shows where), its log is streamed (`kubectl logs --follow`), its status read until Complete or
Failed, and the in-container JSON result (the log's last JSON line) returned. backoffLimit 0: a failed
run is reported, not retried behind the operator's back. Finished Jobs stay for inspection
(`kubectl logs job/NAME`) until ttlSecondsAfterFinished removes them (7 days; 1 hour for `list`).

restore: safety backup -> API colours, the WAL streamer and PostgreSQL scaled to 0, their pods gone ->
restore Job (mounts PostgreSQL's volume, runs as its uid, `stackops restore ... --data-dir PGDATA`; on
failure it puts the previous directory back) -> Redis (a cache here) flushed -> everything scaled back
to its previous size, rollouts awaited -> /ready through the live Service. Any failure after the scale-down
scales everything back and exits 1 naming what was restored.

Plain functions for the tasks (`inv backup|backups.*|restore --env E` when the env's target is kubernetes).
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .. import wait
from ..commands import kubectl as k
from ..commands import redis as rc
from ..config import Env, K8sCfg
from ..errors import BadInput, OperationFailed
from ..runner import Runner, error_line
from . import opsconfig as ops
from .deploy import API, COLOURS, _items, check_context, deployment, parse_smoke, utcnow
from .render import k8s_cfg

CRONJOB = "ios-backup"
WALSTREAM = "ios-walstream"
PG_STS = "ios-postgres"
REDIS_STS = "ios-redis"
# The StatefulSet's volumeClaimTemplate `data` of pod 0, its mount and PGDATA (ios-postgres-config);
# tests/integration/test_k8s_gates.py checks these against the rendered manifests.
PG_CLAIM = "data-ios-postgres-0"
PG_MOUNT = "/var/lib/postgresql/data"
PGDATA = f"{PG_MOUNT}/pgdata"
PG_UID = 999  # the postgres image's uid: PostgreSQL only runs as the owner of its data directory
KEEP_S = 7 * 24 * 3600  # finished Jobs kept for inspection
LIST_KEEP_S = 3600
POLL_S = 5.0
POD_START_S = 600  # image pull and scheduling, before the log can be followed
# A container that will never start: waiting for the Job's deadline (hours) would only hide it.
STUCK = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}
# The pods a restore stops: the API colours (no writes), the streamer (its slot dies with the cluster), PostgreSQL.
STOP_SELECTOR = f"app.kubernetes.io/name in ({API},{WALSTREAM},{PG_STS})"

Clock = Callable[[], dt.datetime]
Sleep = Callable[[float], None]


# -- pure parts ----------------------------------------------------------------------------------------

def job_name(purpose: str, t: dt.datetime) -> str:
    return f"ios-{purpose}-{t.astimezone(dt.timezone.utc):%Y%m%d-%H%M%S}"


def job_manifest(cron: dict, name: str, namespace: str, args: list[str], purpose: str, *, ttl_s: int,
                 secret_items: Optional[list[dict]] = None, restore: bool = False) -> dict:
    """A Job from the CronJob's jobTemplate with other stackops arguments (pure). `restore` adds
    PostgreSQL's volume and runs the pod as its owner."""
    tmpl = copy.deepcopy(cron["spec"]["jobTemplate"])
    spec = tmpl["spec"]
    spec["backoffLimit"] = 0
    spec["ttlSecondsAfterFinished"] = ttl_s
    pod_meta = spec["template"].setdefault("metadata", {})
    pod_meta.setdefault("labels", {})["iosops.io/job"] = purpose
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    container["args"] = list(args)
    if secret_items is not None:
        for v in pod.get("volumes", []):
            if v["name"] == ops.SECRET_VOLUME:
                v["secret"]["items"] = secret_items
    if restore:
        pod["volumes"] = [*pod.get("volumes", []), {"name": "pgdata", "persistentVolumeClaim": {"claimName": PG_CLAIM}}]
        container["volumeMounts"] = [*container.get("volumeMounts", []), {"name": "pgdata", "mountPath": PG_MOUNT}]
        pod["securityContext"] = {**pod.get("securityContext", {}), "runAsUser": PG_UID, "runAsGroup": PG_UID,
                                  "fsGroup": PG_UID, "fsGroupChangePolicy": "OnRootMismatch"}
    labels = {**(cron["metadata"].get("labels") or {}), "iosops.io/job": purpose}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": namespace, "labels": labels,
                         "annotations": {"cronjob.kubernetes.io/instantiate": "manual"}},
            "spec": spec}


def parse_job_status(text: str) -> tuple[str, str]:
    """("complete" | "failed" | "running", why) from `get job -o json`."""
    items = _items(text)
    if not items:
        return "failed", "the Job is gone (deleted, or removed by its TTL)"
    for c in items[0].get("status", {}).get("conditions") or []:
        if c.get("status") != "True":
            continue
        if c.get("type") == "Complete":
            return "complete", ""
        if c.get("type") == "Failed":
            return "failed", ": ".join(x for x in (c.get("reason"), c.get("message")) if x)
    return "running", ""


def parse_pods(text: str) -> tuple[Optional[int], str]:
    """(exit code of the Job's container, how it ended or why it cannot start) from `get pod -o json`."""
    for pod in reversed(_items(text)):
        for cs in pod.get("status", {}).get("containerStatuses") or []:
            state = cs.get("state", {})
            if "terminated" in state:
                t = state["terminated"]
                return t.get("exitCode"), f"container exited {t.get('exitCode')} ({t.get('reason', '?')})"
            if "waiting" in state and state["waiting"].get("reason") in STUCK:
                w = state["waiting"]
                return None, f"{w['reason']}: {(w.get('message') or '')[:200]}".rstrip(": ")
        if pod.get("status", {}).get("phase") == "Pending":
            return None, "pod pending (not scheduled or image not pulled yet)"
    return None, ""


def parse_result(log: str) -> Optional[dict]:
    """The in-container result: the log's last line that is a JSON object (progress goes to stderr,
    which the log interleaves; the result line is printed last)."""
    for line in reversed(log.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                return data
    return None


def restore_args(env: Env, backup_id: str, to_time: str, latest: bool) -> list[str]:
    target = ["--backup", backup_id] if backup_id else ["--to-time", to_time] if to_time else ["--latest"]
    return ["restore", "--env", env.name, *target, "--only", "postgres", "--data-dir", PGDATA]


def check_target(backup_id: str, to_time: str, latest: bool) -> str:
    given = [x for x in (backup_id and f"--backup {backup_id}", to_time and f"--to-time {to_time}",
                         latest and "--latest") if x]
    if len(given) != 1:
        raise BadInput("name exactly one recovery point: --backup ID, --to-time T or --latest"
                       + (f" (got {', '.join(given)})" if given else ""))
    return given[0]


def check_store(env: Env) -> None:
    if env.cfg.backup.store.kind != "s3":
        raise BadInput(f"env {env.name}: backup.store.kind is {env.cfg.backup.store.kind}; on Kubernetes an ops "
                       "pod's local store is its own emptyDir, gone when the Job ends: configure an s3 store "
                       f"(backup.store in envs/{env.name}.yaml), deploy (inv k8s.deploy) and retry")


def check_only(only: str, allowed: tuple[str, ...], what: str) -> list[str]:
    parts = [p.strip() for p in only.split(",") if p.strip()]
    bad = [p for p in parts if p not in allowed]
    if bad:
        raise BadInput(f"--only {only!r}: {what}")
    return parts


# -- running a Job -------------------------------------------------------------------------------------

class JobFailed(OperationFailed):
    def __init__(self, message: str, exit_code: Optional[int]):
        super().__init__(message)
        self.container_exit = exit_code


def read_cronjob(runner: Runner, cfg: K8sCfg, env: Env) -> dict:
    try:
        res = runner.run(k.get_json(cfg.context, cfg.namespace, "cronjob", [CRONJOB], cfg.kubectl), mutating=False,
                         timeout=60)
    except OperationFailed as exc:
        raise BadInput(f"cannot read the cluster of context {cfg.context!r} ({exc}); check the API server, VPN "
                       "and credentials, then retry") from None
    items = _items(res.stdout)
    if not items:
        raise BadInput(f"env {env.name}: no CronJob {CRONJOB} in namespace {cfg.namespace}; deploy first "
                       f"(inv k8s.deploy --env {env.name} --tag T): its template is what backup Jobs run")
    return items[0]


def run_job(env: Env, runner: Runner, cfg: K8sCfg, cron: dict, purpose: str, args: list[str], *, now: Clock,
            sleep: Sleep, ttl_s: int = KEEP_S, restore: bool = False, secret_items: Optional[list[dict]] = None) -> dict:
    """Create the Job, follow its log, wait for Complete/Failed; the in-container JSON result.
    Raises JobFailed (naming the Job, why it failed and the log's error line)."""
    ctx, ns, kc = cfg.context, cfg.namespace, cfg.kubectl
    name = job_name(purpose, now())
    manifest = job_manifest(cron, name, ns, args, purpose, ttl_s=ttl_s, secret_items=secret_items, restore=restore)
    path = env.state_dir / "k8s" / env.name / f"{name}.json"
    runner.write_file(path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    runner.run(k.create_file(ctx, ns, str(path), kc), timeout=60)
    deadline_s = int(manifest["spec"].get("activeDeadlineSeconds") or 14400)
    log = runner.run(k.logs_follow(ctx, ns, name, POD_START_S, kc), check=False, stream=True,
                     timeout=deadline_s + POD_START_S)
    if runner.dry_run:
        return {"job": name, "dry_run": True}

    def finished() -> tuple[bool, Any]:
        """Done: (state, why). Not yet: what its pod is doing."""
        state, why = parse_job_status(runner.run(k.get_json(ctx, ns, "job", [name], kc), mutating=False,
                                                 timeout=60).stdout)
        if state != "running":
            return True, (state, why)
        pods = runner.run(k.get_selected_json(ctx, ns, "pod", f"job-name={name}", kc), mutating=False, timeout=60)
        _, how = parse_pods(pods.stdout)
        if how.split(":")[0] in STUCK:  # it will never start: stop it now rather than at its deadline
            runner.run(k.delete_job(ctx, ns, name, 120, kc), check=False, timeout=180)
            raise JobFailed(f"Job {name} cannot start its container: {how}; the Job was deleted", None)
        return False, how or "no pod yet"

    try:
        state, why = wait.until(f"Job {name} to finish", finished, timeout=deadline_s + 120, interval=POLL_S,
                                sleep=sleep)
    except wait.WaitTimeout as exc:
        runner.run(k.delete_job(ctx, ns, name, 120, kc), check=False, timeout=180)
        raise JobFailed(f"{exc}; the Job was deleted", None) from None
    result = parse_result(log.stdout)
    if state == "complete" and result is None:  # the follow may have been cut off: read the end once
        result = parse_result(runner.run(k.logs_tail(ctx, ns, name, 50, kc), mutating=False, check=False).stdout)
    if state == "failed":
        pods = runner.run(k.get_selected_json(ctx, ns, "pod", f"job-name={name}", kc), mutating=False, timeout=60)
        code, how = parse_pods(pods.stdout)
        detail = error_line(log.stdout) if log.stdout.strip() else ""
        raise JobFailed(f"Job {name} failed ({'; '.join(x for x in (why, how) if x) or 'no reason given'})"
                        + (f": {detail}" if detail else ""), code)
    if result is None:
        raise JobFailed(f"Job {name} completed but its log has no JSON result line (kubectl logs job/{name})", None)
    return result


def _job(env: Env, runner: Runner, purpose: str, args: list[str], *, now: Clock, sleep: Sleep, ttl_s: int = KEEP_S,
         secret_items: Optional[list[dict]] = None) -> dict:
    """Check the context and the store, read the CronJob, run one Job; a container's exit 2 is bad input."""
    cfg = k8s_cfg(env)
    check_store(env)
    check_context(env, runner, cfg)
    cron = read_cronjob(runner, cfg, env)
    try:
        return run_job(env, runner, cfg, cron, purpose, args, now=now, sleep=sleep, ttl_s=ttl_s,
                       secret_items=secret_items)
    except JobFailed as exc:
        if exc.container_exit == 2:
            raise BadInput(str(exc)) from None
        raise


# -- the functions the tasks call -----------------------------------------------------------------------

def backup(env: Env, runner: Runner, only: str = "", *, now: Clock = utcnow, sleep: Sleep = time.sleep) -> dict:
    """One recovery point, taken by a Job of the ops image; the in-container result (manifest JSON)."""
    parts = check_only(only, ("postgres", "redis", "elasticsearch"),
                       "components are postgres, redis, elasticsearch")
    args = ["backup", "--env", env.name, *(["--only", ",".join(parts)] if parts else [])]
    return _job(env, runner, "backup", args, now=now, sleep=sleep)


def list_backups(env: Env, runner: Runner, *, now: Clock = utcnow, sleep: Sleep = time.sleep) -> dict:
    return _job(env, runner, "backups-list", ["list", "--env", env.name], now=now, sleep=sleep, ttl_s=LIST_KEEP_S)


def verify(env: Env, runner: Runner, backup_id: str = "", all_: bool = False, *, now: Clock = utcnow,
           sleep: Sleep = time.sleep) -> dict:
    """Verify in a Job that also mounts the age identity (when the env encrypts): only verify/restore read it."""
    args = ["verify", "--env", env.name, *(["--id", backup_id] if backup_id else []), *(["--all"] if all_ else [])]
    return _job(env, runner, "backups-verify", args, now=now, sleep=sleep, secret_items=ops.secret_items(env, restore=True))


def prune(env: Env, runner: Runner, force: bool = False, *, now: Clock = utcnow, sleep: Sleep = time.sleep) -> dict:
    return _job(env, runner, "backups-prune", ["prune", "--env", env.name, *(["--force"] if force else [])],
                now=now, sleep=sleep)


# -- restore ---------------------------------------------------------------------------------------------

@dataclass
class Sizes:
    """What the restore scales down, and back to: `kind/name` -> replicas before (only those > 0)."""
    live: Optional[str] = None
    replicas: dict[str, int] = field(default_factory=dict)


def parse_sizes(service_json: str, deployments_json: str, statefulset_json: str) -> Sizes:
    out = Sizes()
    for svc in _items(service_json):
        colour = svc.get("spec", {}).get("selector", {}).get("app.kubernetes.io/color")
        out.live = colour if colour in COLOURS else None
    for kind, text in (("deployment", deployments_json), ("statefulset", statefulset_json)):
        for o in _items(text):
            n = int(o.get("spec", {}).get("replicas", 1))
            if n > 0:
                out.replicas[f"{kind}/{o['metadata']['name']}"] = n
    return out


def restore(env: Env, runner: Runner, backup_id: str = "", to_time: str = "", latest: bool = False, only: str = "",
            *, now: Clock = utcnow, sleep: Sleep = time.sleep) -> dict:
    """Restore PostgreSQL of a Kubernetes env to a recovery point (see the module doc for the order)."""
    target = check_target(backup_id, to_time, latest)
    check_only(only, ("postgres",), "on Kubernetes a restore replaces PostgreSQL (the data of record); Redis is a "
               "cache there (flushed after the restore) and Elasticsearch snapshots are restored through its own "
               "_restore API; use --only postgres or leave --only out")
    cfg = k8s_cfg(env)
    check_store(env)
    check_context(env, runner, cfg)
    ctx, ns, kc = cfg.context, cfg.namespace, cfg.kubectl
    cron = read_cronjob(runner, cfg, env)
    sizes = parse_sizes(
        runner.run(k.get_json(ctx, ns, "service", [API], kc), mutating=False, timeout=60).stdout,
        runner.run(k.get_json(ctx, ns, "deployment", [*(deployment(c) for c in COLOURS), WALSTREAM], kc),
                   mutating=False, timeout=60).stdout,
        runner.run(k.get_json(ctx, ns, "statefulset", [PG_STS], kc), mutating=False, timeout=60).stdout)
    pg = f"statefulset/{PG_STS}"
    if pg not in sizes.replicas:
        raise BadInput(f"env {env.name}: StatefulSet {PG_STS} is missing or at 0 replicas in namespace {ns}; "
                       "nothing to restore into (deploy first, or scale it back up and retry)")
    out: dict[str, Any] = {"env": env.name, "target": target, "safety_backup": "", "steps": [],
                           "dry_run": runner.dry_run}
    started = time.monotonic()

    try:  # 1. the safety backup: nothing has changed yet, a failure is just a failure
        safety = run_job(env, runner, cfg, cron, "backup", ["backup", "--env", env.name], now=now, sleep=sleep)
    except OperationFailed as exc:
        raise OperationFailed(f"restore of {env.name} ({target}): the safety backup failed, nothing was changed: "
                              f"{exc}") from None
    out["safety_backup"] = str(safety.get("id") or safety.get("backup_id") or "<safety backup id>")
    out["steps"].append(f"safety backup {out['safety_backup']}")

    # 2. stop writers, the streamer and PostgreSQL; 3. the restore Job; 4. flush the cache; 5. back up; 6. verify
    down_order = [r for r in (*(f"deployment/{deployment(c)}" for c in COLOURS), f"deployment/{WALSTREAM}", pg)
                  if r in sizes.replicas]
    scaled: list[str] = []
    restored = False
    step = "scale down"
    try:
        for ref in down_order:
            scaled.append(ref)
            runner.run(k.scale_ref(ctx, ns, ref, 0, kc), timeout=60)
        step = "waiting for the pods to stop"
        res = runner.run(k.wait_pods_deleted(ctx, ns, STOP_SELECTOR, cfg.rollout_timeout_s, kc), check=False,
                         timeout=cfg.rollout_timeout_s + 60)
        if res.rc != 0 and "no matching resources" not in (res.stderr + res.stdout):
            raise OperationFailed(f"pods still running after {cfg.rollout_timeout_s}s: {error_line(res.stderr or res.stdout)}")
        out["steps"].append(f"scaled to 0: {', '.join(down_order)}")
        step = "restore Job"
        out["restore"] = run_job(env, runner, cfg, cron, "restore", restore_args(env, backup_id, to_time, latest),
                                 now=now, sleep=sleep, restore=True, secret_items=ops.secret_items(env, restore=True))
        restored = True
        out["steps"].append(f"PostgreSQL restored ({target})")
        step = "flushing Redis (a cache of the old data)"
        runner.run(k.exec_in(ctx, ns, f"statefulset/{REDIS_STS}", "redis", rc.default_cli("FLUSHALL"), kc), timeout=120)
        step = "scale up"
        scale_up(runner, cfg, sizes, down_order)
        scaled = []
        out["steps"].append("scaled back: " + ", ".join(f"{r} to {sizes.replicas[r]}" for r in reversed(down_order)))
        step = "/ready check"
        ready(runner, cfg, sizes)
        out["steps"].append(f"/ready answered 200 through {API}")
    except OperationFailed as exc:
        back = scale_back(runner, cfg, sizes, scaled) if scaled else []
        if restored:
            state = (f"PostgreSQL holds {target} (restored); the pre-restore state is safety backup "
                     f"{out['safety_backup']} (inv restore --env {env.name} --backup {out['safety_backup']})")
        elif step == "restore Job":
            state = "the restore Job put the previous PostgreSQL data directory back (its log says so)"
        else:
            state = "PostgreSQL's data was not touched"
        nothing = "nothing: every workload is back at its size" if step == "/ready check" else "nothing had changed"
        raise OperationFailed(f"restore of {env.name} ({target}) failed at {step}: {exc}; {state}; rolled back: "
                              f"{'; '.join(back) or nothing}", rolled_back="; ".join(back)) from None
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


def scale_up(runner: Runner, cfg: K8sCfg, sizes: Sizes, refs: list[str]) -> None:
    """PostgreSQL first (and ready), then the streamer and the API colours, then their rollouts."""
    ctx, ns, kc = cfg.context, cfg.namespace, cfg.kubectl
    for ref in reversed(refs):
        runner.run(k.scale_ref(ctx, ns, ref, sizes.replicas[ref], kc), timeout=60)
        if ref.startswith("statefulset/"):
            runner.run(k.rollout_status_ref(ctx, ns, ref, cfg.rollout_timeout_s, kc), timeout=cfg.rollout_timeout_s + 60)
    for ref in reversed(refs):
        if ref.startswith("deployment/"):
            runner.run(k.rollout_status_ref(ctx, ns, ref, cfg.rollout_timeout_s, kc), timeout=cfg.rollout_timeout_s + 60)


def scale_back(runner: Runner, cfg: K8sCfg, sizes: Sizes, refs: list[str]) -> list[str]:
    """Every scaled workload back to its size, each tried; failures named, never raised."""
    ctx, ns, kc = cfg.context, cfg.namespace, cfg.kubectl
    done = []
    for ref in reversed(refs):
        try:
            runner.run(k.scale_ref(ctx, ns, ref, sizes.replicas[ref], kc), timeout=60)
            runner.run(k.rollout_status_ref(ctx, ns, ref, cfg.rollout_timeout_s, kc), timeout=cfg.rollout_timeout_s + 60)
            done.append(f"{ref} back to {sizes.replicas[ref]} replica(s), rolled out")
        except OperationFailed as exc:
            done.append(f"FAILED to bring {ref} back to {sizes.replicas[ref]} ({exc})")
    return done


def ready(runner: Runner, cfg: K8sCfg, sizes: Sizes) -> None:
    """GET /ready (and /version) through the live Service from inside a live pod, as the deploy's smoke test."""
    if not sizes.live or f"deployment/{deployment(sizes.live)}" not in sizes.replicas:
        return  # no API serves (nothing live before the restore): nothing to ask
    url = f"http://{API}.{cfg.namespace}.svc"
    res = runner.run(k.smoke_exec(cfg.context, cfg.namespace, deployment(sizes.live), "api", url, cfg.smoke_timeout_s,
                                  cfg.kubectl), check=False, timeout=cfg.smoke_timeout_s * 3 + 30)
    if res.dry_run:
        return
    problem = parse_smoke(res.stdout, "") if res.rc == 0 else f"exit {res.rc}: {(res.stderr or res.stdout).strip()[-200:]}"
    if problem:
        raise OperationFailed(problem)
