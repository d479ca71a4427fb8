"""Restore Elasticsearch indices from the backup's snapshot through the REST API.

Documented sequence: the snapshot must exist and be SUCCESS; an open index cannot be restored over, so
the indices being restored are closed first (`POST <indices>/_close`); then
`POST _snapshot/<repo>/<snap>/_restore?wait_for_completion=true` with the snapshot's indices and
`include_global_state: false`; then the doc counts are compared with the manifest. A failure restores the
safety snapshot the same way. Tested against a FAKE only: no Elasticsearch exists on this machine.
"""
from __future__ import annotations

from typing import Optional

from ..config import Env
from ..errors import BadInput, IosopsError, OperationFailed
from ..runner import Runner
from . import manifest as mf
from .sources import es_doc_counts


def _base(env: Env) -> str:
    return env.cfg.backup.elasticsearch_url.rstrip("/")


def check_es_target(env: Env, man: mf.Manifest) -> None:
    if not env.cfg.backup.elasticsearch_url:
        raise BadInput(f"env {env.name}: restoring elasticsearch needs backup.elasticsearch_url; set it or drop "
                       "elasticsearch from --only")
    if not man.fingerprints.get("elasticsearch", {}).get("snapshot"):
        raise BadInput(f"backup {man.id} records no Elasticsearch snapshot; pick another backup (inv backups.list)")


def restore_snapshot(env: Env, runner: Runner, man: mf.Manifest) -> dict[str, int]:
    """Close the snapshot's indices, restore them, and return the doc counts of the restored indices."""
    snap = man.fingerprints["elasticsearch"]["snapshot"]
    repo, name, indices = snap["repository"], snap["snapshot"], sorted(snap.get("indices", []))
    base = _base(env)
    got = runner.http("GET", f"{base}/_snapshot/{repo}/{name}", mutating=False)
    if got.rc:
        raise OperationFailed(f"elasticsearch: snapshot {repo}/{name} is not readable (HTTP {got.rc}); nothing was "
                              "changed in elasticsearch")
    if got.value is not None and got.value.json()["snapshots"][0]["state"] != "SUCCESS":
        raise OperationFailed(f"elasticsearch: snapshot {repo}/{name} is not SUCCESS; nothing was changed")
    if not indices:
        return {}
    joined = ",".join(indices)
    r = runner.http("POST", f"{base}/{joined}/_close?ignore_unavailable=true")
    if r.rc:
        raise OperationFailed(f"elasticsearch: closing {joined} before the restore failed (HTTP {r.rc})")
    r = runner.http("POST", f"{base}/_snapshot/{repo}/{name}/_restore?wait_for_completion=true",
                    json={"indices": joined, "include_global_state": False})
    if r.rc:
        raise OperationFailed(f"elasticsearch: restoring {repo}/{name} failed (HTTP {r.rc}): {r.stdout[:200]}")
    if r.value is not None:
        shards = r.value.json().get("snapshot", {}).get("shards", {})
        if shards.get("failed"):
            raise OperationFailed(f"elasticsearch: restore of {repo}/{name} left {shards['failed']} failed shard(s)")
    if runner.dry_run:
        return {}
    now = es_doc_counts(env, runner)
    return {i: now.get(i, -1) for i in indices}


def restore_elasticsearch(env: Env, runner: Runner, man: mf.Manifest, safety: Optional[mf.Manifest]) -> dict:
    want = man.fingerprints["elasticsearch"].get("indices", {})
    try:
        got = restore_snapshot(env, runner, man)
        if not runner.dry_run and got != {i: want[i] for i in got if i in want}:
            raise OperationFailed(f"restored doc counts {got} differ from the backup's manifest {want}")
        return {"indices": got}
    except IosopsError as exc:
        if runner.dry_run:
            raise
        raise OperationFailed(f"elasticsearch restore failed ({exc}); rolled back: "
                              f"{rollback_elasticsearch(env, runner, safety)}") from None


def rollback_elasticsearch(env: Env, runner: Runner, safety: Optional[mf.Manifest]) -> str:
    if safety is None or not safety.fingerprints.get("elasticsearch", {}).get("snapshot"):
        return "NOTHING for Elasticsearch: no safety snapshot was taken"
    try:
        got = restore_snapshot(env, runner, safety)
    except IosopsError as exc:
        return f"FAILED to restore safety snapshot of {safety.id} ({exc}): restore it by hand"
    want = safety.fingerprints["elasticsearch"].get("indices", {})
    same = all(got.get(i) == n for i, n in want.items())
    return (f"Elasticsearch indices restored from safety snapshot of {safety.id}"
            + ("; doc counts equal the pre-restore ones" if same else ", BUT doc counts differ from the pre-restore ones"))
