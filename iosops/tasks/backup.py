from invoke import task

from ._common import DRY_HELP, ENV_HELP, JSON_HELP, confirm_typed, emit, emit_plan, mutating, task_env, new_runner

ONLY_HELP = "Comma-separated components: postgres, redis, elasticsearch (default: backup.components)"


@task(help={"env": ENV_HELP, "only": ONLY_HELP, "dry_run": DRY_HELP, "json_": JSON_HELP})
def backup(c, env=None, only="", dry_run=False, json_=False):
    """Take one recovery point (PostgreSQL base backup, Redis RDB, Elasticsearch snapshot); manifest last. Runs where the env's data lives: the ops container of the deployed stack (compose, SSH host, Kubernetes Job), or this host (backup.runs_on: host)."""
    from iosops.backup import targets
    from iosops.backup.catalog import record_last
    from iosops.errors import OperationFailed

    with mutating("backup", env, {"only": only}, dry_run=dry_run, as_json=json_) as (e, runner):
        host = targets.where(e) == "host"
        try:
            man = targets.backup(e, runner, only=only)
        except OperationFailed:
            if host:
                record_last(e, runner, "failed", False)
            raise
        if host:
            record_last(e, runner, man.get("id", "<new backup>"), True)
    if dry_run:
        emit_plan(runner, json_)
        return
    size = sum(a.get("size", 0) for a in man.get("artifacts", []))
    emit(man, json_, [f"backup {man['id']}: {size / 1e6:.1f} MB in {man.get('duration_s')}s "
                      f"({', '.join(man.get('components', []))})"])


@task(name="list", help={"env": ENV_HELP, "json_": JSON_HELP})
def list_(c, env=None, json_=False):
    """List recovery points (newest last); incomplete ones are shown as such and never restorable."""
    from iosops.backup import targets
    from iosops.errors import IosopsError

    from ._common import fail

    with task_env(env) as e:
        try:
            rows = targets.list_rows(e, new_runner(as_json=json_))
        except IosopsError as exc:
            raise fail(exc) from None
    lines = [f"{r['id']:28} {'restorable' if r['complete'] else 'INCOMPLETE (not restorable)':27} "
             f"{'verified' if r['verified'] else ('VERIFY FAILED' if r['verified'] is False else 'unverified'):13} "
             f"{(r['size'] or 0) / 1e6:9.1f} MB  {','.join(r['components'])}" for r in rows] or ["no backups"]
    emit(rows, json_, lines)


@task(help={"env": ENV_HELP, "id": "Backup id (default: the newest)", "all_": "Verify every backup",
            "dry_run": DRY_HELP, "json_": JSON_HELP})
def verify(c, env=None, id="", all_=False, dry_run=False, json_=False):
    """Re-download, check sha256, decrypt, and test each artifact (pg_verifybackup, redis-check-rdb)."""
    from iosops.backup import targets

    with mutating("backups.verify", env, {"id": id, "all": all_}, dry_run=dry_run, as_json=json_) as (e, runner):
        results = targets.verify(e, runner, id, all_)
    if dry_run:
        emit_plan(runner, json_)
        return
    emit(results, json_, [f"{r['id']}: {'OK' if r['ok'] else 'FAILED'} ({len(r['checks'])} artifact(s))" for r in results])


@task(help={"env": ENV_HELP, "dry_run": DRY_HELP, "force": "Run even though the last backup failed",
            "json_": JSON_HELP})
def prune(c, env=None, dry_run=False, force=False, json_=False):
    """Apply grandfather-father-son retention; sweep incomplete backups and WAL no kept backup needs."""
    from iosops.backup import targets

    with mutating("backups.prune", env, {"force": force}, dry_run=dry_run, as_json=json_) as (e, runner):
        data = targets.prune(e, runner, force=force)
    emit(data, json_, [f"kept {len(data.get('keep', []))}, deleted {len(data.get('delete', []))} expired, "
                       f"{len(data.get('debris', []))} incomplete, {data.get('wal_delete', 0)} WAL file(s)"
                       f"{' (dry-run: nothing deleted)' if dry_run else ''}"])


@task(name="restore", help={"env": ENV_HELP, "backup": "Restore exactly this recovery point",
                            "to_time": "Point-in-time target (ISO 8601)", "latest": "Everything recoverable",
                            "only": ONLY_HELP, "yes": "Skip the typed confirmation (every env asks for its name at a terminal)",
                            "dry_run": DRY_HELP, "json_": JSON_HELP})
def restore_(c, env=None, backup="", to_time="", latest=False, only="", yes=False, dry_run=False, json_=False):
    """Restore one recovery point (PostgreSQL to a time, Redis, Elasticsearch): safety backup, stop writes (maintenance mode), restore, verify; rolls every component back on failure."""
    from iosops.backup import targets

    args = {"backup": backup, "to_time": to_time, "latest": latest, "only": only}
    with mutating("restore", env, args, dry_run=dry_run, as_json=json_) as (e, runner):
        confirm_typed(e.name, f"replaces the data of env {e.name}", f"inv restore --env {e.name}", yes=yes,
                      dry_run=dry_run)
        result = targets.restore(e, runner, backup_id=backup, to_time=to_time, latest=latest, only=only)
    if dry_run:
        emit_plan(runner, json_)
        return
    emit(result, json_, [f"restored {result.get('backup_id')} ({result.get('target')}) in {result.get('seconds')}s; "
                         f"verified: {result.get('verified')}; safety backup: {result.get('safety_backup') or 'none'}"])


@task(name="dr-drill", help={"env": ENV_HELP, "size": "small (tests, seconds) or 1gb (~1 GB PostgreSQL + 1M Redis keys)",
                             "report": "Write the Markdown report here (JSON beside it); default .iosops/drills/<id>.md",
                             "image": "API image to run (default: build the current tree)", "dry_run": DRY_HELP,
                             "json_": JSON_HELP})
def dr_drill(c, env=None, size="small", report="", image="", dry_run=False, json_=False):
    """Disaster-recovery drill in an isolated stack: back up, keep writing, destroy, restore, measure RTO/RPO."""
    import json
    from pathlib import Path

    from iosops.backup.drill import SIZES, as_json, drill, report_markdown
    from iosops.errors import BadInput, OperationFailed

    with mutating("dr-drill", env, {"size": size, "report": report}, dry_run=dry_run, as_json=json_) as (e, runner):
        if size not in SIZES:
            raise BadInput(f"--size {size!r}: use one of {', '.join(SIZES)}")
        rep = drill(e, runner, size=size, image=image)
        from iosops.backup.metrics import write_metrics

        write_metrics(e, runner, {"iosops_drill_rto_seconds": rep.rto_seconds, "iosops_drill_rpo_seconds": rep.rpo_seconds,
                                  "iosops_drill_verified": 1 if rep.verified else 0})
        md = Path(report) if report else e.state_dir / "drills" / f"{rep.id}.md"
        runner.write_file(md, report_markdown(rep))
        runner.write_file(md.with_suffix(".json"), json.dumps(as_json(rep), indent=2))
        if dry_run:
            emit_plan(runner, json_)
            return
        emit(as_json(rep), json_, [f"DR drill {rep.id}: RTO {rep.rto_seconds}s (target {rep.targets['rto_seconds']}s), "
                                   f"RPO {rep.rpo_seconds}s (target {rep.targets['rpo_seconds']}s), verified: "
                                   f"{rep.verified}; report: {md}"])
        if not rep.verified:
            raise OperationFailed(f"drill {rep.id}: verification failed: "
                                  f"{[k for k, v in rep.checks.items() if not v]}; report: {md}")
        if not rep.targets_met:
            raise OperationFailed(f"drill {rep.id}: a target was missed (RTO {rep.rto_seconds}s, RPO {rep.rpo_seconds}s); "
                                  f"report: {md}")
