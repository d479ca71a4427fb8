"""`inv backup|backups.*|restore` by where the env's data lives, as `inv deploy` dispatches by target:

- backup.runs_on=stack, target local/compose: the ops container next to the deployed compose stack
  (iosops.backup.stack), on this machine or the env's SSH data host;
- backup.runs_on=stack, target kubernetes: Jobs of the ops image (iosops.k8s.backup);
- backup.runs_on=host: this process, against datastores it reaches directly (clusters it manages).

Each returns plain data for the task to render; webhook messages for the stack paths are sent here
(the ops containers have no way out to the webhook).
"""
from __future__ import annotations

import time

from ..config import Env
from ..errors import IosopsError
from ..notify import Event, send
from ..runner import Runner


def where(env: Env) -> str:
    if env.cfg.backup.runs_on == "host":
        return "host"
    return "kubernetes" if env.cfg.target == "kubernetes" else "compose"


def _k8s():
    from ..k8s import backup as k8s_backup  # the Kubernetes Jobs path

    return k8s_backup


def _notified(env: Env, runner: Runner, op: str, summary_of, fn, *args, **kwargs):
    t0 = time.monotonic()
    try:
        out = fn(*args, **kwargs)
    except IosopsError as exc:
        if not runner.dry_run:
            status = "rolled_back" if "rolled back" in str(exc) else "failure"
            send(env, runner, Event(op, status, env.name, target=where(env), duration_s=round(time.monotonic() - t0, 1),
                                    error=str(exc)))
        raise
    version, summary = summary_of(out)
    send(env, runner, Event(op, "success", env.name, version=version, target=where(env),
                            duration_s=round(time.monotonic() - t0, 1), summary=summary))
    return out


def backup(env: Env, runner: Runner, only: str = "") -> dict:
    """The manifest of the new recovery point (as plain data); {} in a dry-run of a stack path."""
    w = where(env)
    if w == "host":
        from .run import run_backup

        return run_backup(env, runner, only=only).model_dump()
    if w == "kubernetes":
        fn = _k8s().backup
    else:
        from . import stack

        fn = stack.backup

    def summary(out: dict) -> tuple[str, str]:
        man = out.get("backup", out)
        size = sum(a.get("size", 0) for a in man.get("artifacts", []))
        return man.get("id", ""), f"{size / 1e6:.1f} MB: {', '.join(man.get('components', []))}"

    out = _notified(env, runner, "backup", summary, fn, env, runner, only)
    return out.get("backup", out)


def list_rows(env: Env, runner: Runner) -> list[dict]:
    w = where(env)
    if w == "host":
        from .catalog import entries, rows

        return rows(entries(env))
    if w == "kubernetes":
        return _k8s().list_backups(env, runner).get("rows", [])
    from . import stack

    return stack.list_rows(env, runner)


def verify(env: Env, runner: Runner, backup_id: str = "", all_: bool = False) -> list[dict]:
    w = where(env)
    if w == "host":
        from .catalog import verify as do_verify

        return do_verify(env, runner, backup_id, all_)
    if w == "kubernetes":
        return _k8s().verify(env, runner, backup_id, all_).get("results", [])
    from . import stack

    return stack.verify(env, runner, backup_id, all_)


def prune(env: Env, runner: Runner, force: bool = False) -> dict:
    w = where(env)
    if w == "host":
        from .catalog import prune as do_prune

        plan = do_prune(env, runner, force=force)
        return {"keep": plan.keep, "delete": plan.delete, "debris": plan.debris, "wal_delete": len(plan.wal_delete),
                "dry_run": runner.dry_run}
    if w == "kubernetes":
        return _k8s().prune(env, runner, force)
    from . import stack

    return stack.prune(env, runner, force)


def restore(env: Env, runner: Runner, *, backup_id: str = "", to_time: str = "", latest: bool = False,
            only: str = "") -> dict:
    """backup_id, target, seconds, verified, safety_backup, phases (+ where it ran)."""
    from dataclasses import asdict

    w = where(env)
    if w == "host":
        from .restore import restore as do_restore

        return asdict(do_restore(env, runner, backup_id=backup_id, to_time=to_time, latest=latest, only=only))
    if w == "kubernetes":
        fn = _k8s().restore
    else:
        from . import stack

        fn = stack.restore
    return _notified(env, runner, "restore", lambda out: (out.get("backup_id", ""), f"verified: {out.get('verified')}"),
                     fn, env, runner, backup_id=backup_id, to_time=to_time, latest=latest, only=only)
