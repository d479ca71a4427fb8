"""List, verify and prune recovery points."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..commands import compress as cz
from ..commands import pg
from ..commands import redis as rc
from ..config import Env
from ..errors import BadInput, OperationFailed
from ..runner import Runner
from . import manifest as mf
from .artifacts import download
from .metrics import write_metrics
from .store import open_store
from .wal import archived_segments


@dataclass
class Entry:
    id: str
    complete: bool
    manifest: Optional[mf.Manifest] = None
    verified: Optional[bool] = None
    verified_at: str = ""


def verify_record(store, backup_id: str) -> dict:
    key = mf.verify_key(backup_id)
    return json.loads(store.get_bytes(key)) if store.exists(key) else {}


def entries(env: Env, store=None) -> list[Entry]:
    store = store or open_store(env)
    complete, incomplete = mf.list_ids(store)
    out = []
    for bid in complete:
        rec = verify_record(store, bid)
        out.append(Entry(bid, True, mf.load(store, bid), rec.get("ok"), rec.get("verified_at", "")))
    out += [Entry(bid, False) for bid in incomplete]
    return sorted(out, key=lambda e: e.id)


def rows(items: list[Entry]) -> list[dict]:
    """`inv backups.list` rows (plain data: --json, and the ops container's answer to the host)."""
    return [{"id": i.id, "complete": i.complete, "verified": i.verified,
             "size": i.manifest.total_size() if i.manifest else None,
             "components": i.manifest.components if i.manifest else [],
             "completed_at": i.manifest.completed_at if i.manifest else ""} for i in items]


def find(env: Env, store, backup_id: str) -> mf.Manifest:
    complete, incomplete = mf.list_ids(store)
    if backup_id in complete:
        return mf.load(store, backup_id)
    if backup_id in incomplete:
        raise BadInput(f"backup {backup_id} is incomplete (no manifest): it cannot be restored or verified")
    raise BadInput(f"unknown backup id {backup_id!r}; `inv backups.list --env {env.name}` shows the ids")


# -- verify ---------------------------------------------------------------------------------------
def verify_artifact(env: Env, runner: Runner, store, art: mf.Artifact, work: Path) -> str:
    """Each check reads what the download before it wrote: it is planned with that download in a dry-run
    (which downloads nothing), not run as a probe."""
    bindir = env.cfg.backup.postgres.bin_dir
    if art.kind == "base-tar":
        d = work / "pgdata"
        d.mkdir()
        download(env, runner, store, art, consumer_argv=cz.tar_extract(str(d)))
        runner.run(pg.verifybackup(bindir, str(d)))
        return "sha256 ok, pg_verifybackup ok"
    if art.kind == "logical-dump":
        f = work / "dump.pgc"
        download(env, runner, store, art, stdout_path=f)
        runner.run(pg.restore_list(bindir, str(f)))
        return "sha256 ok, pg_restore --list ok"
    if art.kind == "rdb":
        f = work / "dump.rdb"
        download(env, runner, store, art, stdout_path=f)
        runner.run(rc.check_rdb(str(f)))
        return "sha256 ok, redis-check-rdb ok"
    if art.kind == "snapshot":
        if not env.cfg.backup.elasticsearch_url:
            return "not checked (no elasticsearch_url configured)"
        repo, snap = art.key.split("://", 1)[1].split("/", 1)
        r = runner.http("GET", f"{env.cfg.backup.elasticsearch_url.rstrip('/')}/_snapshot/{repo}/{snap}", mutating=False)
        state = r.value.json()["snapshots"][0]["state"] if r.rc == 0 else f"HTTP {r.rc}"
        if state != "SUCCESS":
            raise OperationFailed(f"artifact {art.key}: snapshot state is {state}")
        return "snapshot SUCCESS"
    raise OperationFailed(f"artifact {art.key}: unknown kind {art.kind}")


def verify(env: Env, runner: Runner, backup_id: str = "", all_: bool = False) -> list[dict]:
    store = open_store(env)
    ids = [e.id for e in entries(env, store) if e.complete]
    if not ids:
        raise OperationFailed(f"no complete backups in {store.url} to verify")
    targets = ids if all_ else [backup_id] if backup_id else [ids[-1]]
    results = []
    for bid in targets:
        man = find(env, store, bid)
        checks, ok, error = {}, True, ""
        with tempfile.TemporaryDirectory(prefix="iosops-verify-") as tmp:
            for art in man.artifacts:
                work = Path(tmp) / art.component
                work.mkdir(exist_ok=True)
                try:  # download() checks the sha256 as the bytes stream (CorruptArtifact names the key)
                    checks[art.key] = verify_artifact(env, runner, store, art, work)
                except OperationFailed as exc:
                    detail = str(exc)
                    ok, error = False, detail if art.key in detail else f"{art.key}: {detail}"
                    checks[art.key] = f"FAILED: {exc}"
                    break
                finally:
                    shutil.rmtree(work, ignore_errors=True)
        rec = {"id": bid, "ok": ok, "verified_at": mf.now().isoformat(), "checks": checks}
        if not runner.dry_run:
            store.put_bytes(mf.verify_key(bid), json.dumps(rec).encode())
            write_metrics(env, runner, {"iosops_backup_last_verify_success": 1 if ok else 0,
                                        "iosops_backup_last_verify_timestamp_seconds": time.time()})
        results.append(rec)
        if not ok:
            raise OperationFailed(f"backup {bid} failed verification: {error}")
    return results


# -- prune ----------------------------------------------------------------------------------------
@dataclass
class PrunePlan:
    keep: dict[str, str] = field(default_factory=dict)  # id -> reason
    delete: list[str] = field(default_factory=list)
    debris: list[str] = field(default_factory=list)
    wal_delete: list[str] = field(default_factory=list)


def _started(e: Entry) -> dt.datetime:
    return e.manifest.started


def plan_prune(env: Env, items: list[Entry], wal: dict[str, dict], now: dt.datetime) -> PrunePlan:
    """Pure: which recovery points and WAL files grandfather-father-son retention keeps."""
    r = env.cfg.backup.retention
    plan = PrunePlan()
    done = sorted((e for e in items if e.complete), key=_started)
    if done:
        plan.keep[done[-1].id] = "newest"
    verified = [e for e in done if e.verified]
    if verified:
        plan.keep.setdefault(verified[-1].id, "newest verified")
    for e in done:
        if now - _started(e) <= dt.timedelta(days=r.keep_days):
            plan.keep.setdefault(e.id, f"younger than {r.keep_days} days")

    def newest_per(bucket, count: int, label: str) -> None:
        seen: dict = {}
        for e in reversed(done):
            k = bucket(_started(e))
            if k not in seen:
                seen[k] = e.id
        for bid in list(seen.values())[:count]:
            plan.keep.setdefault(bid, label)

    newest_per(lambda t: t.date(), r.daily, "daily")
    newest_per(lambda t: t.isocalendar()[:2], r.weekly, "weekly")
    newest_per(lambda t: (t.year, t.month), r.monthly, "monthly")
    plan.delete = [e.id for e in done if e.id not in plan.keep]
    plan.debris = [e.id for e in items if not e.complete]
    kept = [e for e in done if e.id in plan.keep and e.manifest.postgres and e.manifest.postgres.start_wal]
    if kept:
        oldest_needed = min(e.manifest.postgres.start_wal[8:] for e in kept)  # segment number, any timeline
        plan.wal_delete = sorted(n for n in wal if len(n.removesuffix(".partial")) == 24 and n[8:32] < oldest_needed)
    return plan


def last_run_path(env: Env) -> Path:
    return env.state_dir / f"backup-last-{env.name}.json"


def record_last(env: Env, runner: Runner, backup_id: str, ok: bool) -> None:
    """The last backup run's outcome (what `inv backup`'s cron wrapper and prune's guard read)."""
    runner.write_file(last_run_path(env), json.dumps({"id": backup_id, "ok": ok}))


def prune(env: Env, runner: Runner, force: bool = False) -> PrunePlan:
    last = last_run_path(env)
    if last.exists() and not force:
        rec = json.loads(last.read_text())
        if not rec.get("ok"):
            raise OperationFailed(f"the last backup ({rec.get('id')}) failed, so retention will not run: a failed "
                                  "backup must never be followed by deleting good ones. Run a successful backup "
                                  "first (or --force after checking)")
    store = open_store(env)
    items = entries(env, store)  # a store that is down raises here: nothing is deleted
    wal = archived_segments(store)
    plan = plan_prune(env, items, wal, mf.now())
    objects = {o.key for o in store.list(mf.BACKUPS + "/")}
    for bid in plan.delete + plan.debris:
        # The manifest goes first: a half-deleted backup is then debris, never "restorable".
        keys = sorted((k for k in objects if k.startswith(f"{mf.BACKUPS}/{bid}/")),
                      key=lambda k: (not k.endswith(mf.MANIFEST), k))
        for key in keys:
            runner.call(f"delete {store.url}/{key}", store.delete, key)
    for name in plan.wal_delete:
        for key in (f"{mf.WAL}/{name}.json", f"{mf.WAL}/{name}.zst", f"{mf.WAL}/{name}.zst.age"):
            if key.endswith(".json") or store.exists(key):
                runner.call(f"delete {store.url}/{key}", store.delete, key)
    return plan
