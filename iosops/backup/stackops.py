"""`python -m iosops.backup.stackops ACTION --env E`: the backup engine as it runs inside the ops image,
next to a deployed stack's datastores (compose service `ops` / `walstream`, Kubernetes Jobs and the
`ios-walstream` Deployment).

The env's config comes from $IOSOPS_ENVS_DIR/<env>.yaml, rendered for the containers by the host
(iosops.backup.stack.ops_config): datastores by service name, secrets as files under /run/secrets.
Progress goes to stderr; the result is ONE JSON line, last on stdout; exit 0 / 1 (failed) / 2 (bad
input) as every task. The lock, the audit line and webhook messages belong to the `inv` task that
started the container, not to this process.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import BadInput, IosopsError
from ..runner import Runner

ACTIONS = ("backup", "list", "verify", "prune", "restore", "restore-prepare", "restore-finish", "walstream")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="iosops.backup.stackops", description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("--env", required=True)
    p.add_argument("--set", action="append", default=[], help="config override key.path=<json>")
    p.add_argument("--only", default="")
    p.add_argument("--id", default="", help="verify: this backup (default: the newest)")
    p.add_argument("--all", action="store_true", help="verify: every backup")
    p.add_argument("--force", action="store_true", help="prune: even after a failed backup")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--backup", default="", help="restore: exactly this recovery point")
    p.add_argument("--to-time", default="")
    p.add_argument("--latest", action="store_true")
    p.add_argument("--data-dir", default="", help="restore: the PostgreSQL data directory (a mounted volume)")
    p.add_argument("--no-safety", action="store_true", help="restore: no safety backup (the data is gone anyway)")
    # restore-finish: what restore-prepare answered
    p.add_argument("--target", default="", choices=["", "immediate", "time", "latest"])
    p.add_argument("--target-time", default="")
    p.add_argument("--safety", default="", help="restore-finish: id of the safety backup prepare took")
    return p


def _clear_stale_pid(data_dir: Path) -> None:
    """The stack's PostgreSQL container is stopped before restore-finish runs (the host saw to it): a
    postmaster.pid left by a crash names a PID of that container, which in this container may be a live
    process of ours. pg_ctl would then believe the old cluster runs: remove the stale file first."""
    (data_dir / "postmaster.pid").unlink(missing_ok=True)


def _reset_spool(env, runner: Runner) -> None:
    """A restored cluster is on a new timeline with no slot: the streamer must not resume from its spool
    (segments of the old timeline, already in the store: it uploaded them when it stopped)."""
    spool = Path(env.cfg.backup.walstream.spool_dir)
    if spool.is_dir():  # emptied: a new timeline, a new slot
        runner.remove(spool)


def run(args: argparse.Namespace) -> dict:
    from ..config import load_env
    from . import catalog
    from .wal import parse_sets

    overrides = parse_sets(args.set)
    if args.data_dir:
        overrides.setdefault("backup", {}).setdefault("postgres", {})["data_dir"] = args.data_dir
    if args.action == "restore-finish":
        # The stack's PostgreSQL is stopped; the cluster being recovered runs in this container: verify
        # it through its socket, not the service name.
        from .restore import STACK_SOCKET_DIR

        overrides.setdefault("backup", {}).setdefault("postgres", {})["host"] = STACK_SOCKET_DIR
    env = load_env(args.env, overrides=overrides)
    runner = Runner(dry_run=args.dry_run, plan_to_stdout=False)
    if args.action == "walstream":
        from .walstream import run as stream

        return {"exit": stream(env, runner)}
    if args.action == "backup":
        from ..errors import OperationFailed
        from .run import run_backup

        try:
            man = run_backup(env, runner, only=args.only)
        except OperationFailed:
            catalog.record_last(env, runner, "failed", False)
            raise
        catalog.record_last(env, runner, man.id, True)
        return {"backup": man.model_dump(), "plan": runner.plan() if args.dry_run else []}
    if args.action == "list":
        return {"rows": catalog.rows(catalog.entries(env))}
    if args.action == "verify":
        return {"results": catalog.verify(env, runner, args.id, args.all)}
    if args.action == "prune":
        plan = catalog.prune(env, runner, force=args.force)
        return {"keep": plan.keep, "delete": plan.delete, "debris": plan.debris, "wal_delete": len(plan.wal_delete),
                "dry_run": args.dry_run}
    return _restore(env, runner, args)


def _restore(env, runner: Runner, args: argparse.Namespace) -> dict:
    from dataclasses import asdict

    from . import restore as rs
    from .store import open_store

    if not args.data_dir and (args.only == "" or "postgres" in args.only):
        raise BadInput(f"{args.action} needs --data-dir (the PostgreSQL data directory, a mounted volume)")
    store = open_store(env)
    if args.action == "restore-finish":
        from .catalog import find

        if not args.backup or not args.target:
            raise BadInput("restore-finish needs --backup and --target (what restore-prepare answered)")
        plan = rs.RestorePlan(find(env, store, args.backup), args.target,
                              rs.parse_time(args.target_time) if args.target_time else None)
        safety = find(env, store, args.safety) if args.safety else None
        comps = rs.components(plan, args.only)
        inst = rs.pg_instance(env) if "postgres" in comps else None
        staging = inst.data_dir.with_name(f"{inst.data_dir.name}.restoring") if inst else None
        if inst and not args.dry_run:
            _clear_stale_pid(inst.data_dir)
        redis_dir = Path(env.cfg.backup.redis.restore_dir) if "redis" in comps and env.cfg.backup.redis.restore_dir \
            else None
        prep = rs.Prepared(plan, comps, inst, staging, safety,
                           rs.RestoreResult(plan.base.id, plan.target, args.target_time, args.safety), redis_dir)
        try:
            result = rs.finish(env, runner, store, prep)
        finally:
            if inst and not args.dry_run and inst.running(runner):
                inst.stop(runner, check=False)  # the stack's own PostgreSQL container takes over
        if inst:
            _reset_spool(env, runner)
        return asdict(result)
    plan = rs.choose(env, store, args.backup, args.to_time, args.latest)
    prep = rs.prepare(env, runner, store, plan, args.only, safety=not args.no_safety)
    answer = {"backup": plan.base.id, "target": plan.target,
              "target_time": plan.target_time.isoformat() if plan.target_time else "",
              "components": prep.comps, "safety": prep.safety.id if prep.safety else "",
              "phases": prep.result.phases}
    if args.action == "restore-prepare":
        return answer
    if prep.inst and not args.dry_run:
        _clear_stale_pid(prep.inst.data_dir)
    try:
        return asdict(rs.finish(env, runner, store, prep))
    finally:
        if prep.inst and not args.dry_run and prep.inst.running(runner):
            prep.inst.stop(runner, check=False)


def main(argv: list[str] | None = None) -> int:
    from ..secretref import redact

    args = _parser().parse_args(argv)
    try:
        out = run(args)
    except IosopsError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr, flush=True)
        return getattr(exc, "exit_code", 1)
    except OSError as exc:  # a volume or store this container cannot use: one line, not a traceback
        print(f"error: {args.action}: {type(exc).__name__}: {redact(str(exc))}", file=sys.stderr, flush=True)
        return 1
    print(redact(json.dumps(out, sort_keys=True, default=str)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
