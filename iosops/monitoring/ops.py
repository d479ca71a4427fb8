"""The backup services of the live check stack: docker/compose.yml's own `walstream` and `ops` services in
the check stack's compose project (the one `inv up` runs: iosops.stack.local), so its Prometheus scrapes a
real walstream and the backup panels show what a deployed stack's services produce. `inv up` wrote the
project's files (stack.env with the ops image, ops/<env>.yaml, the backup secrets) and made the backup role.
Everything carries `iosops.stack=<stack>` (from the compose file) and the stack's labels, so the check's
`inv down --volumes` removes it with the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..backup.stack import run_ops
from ..commands import compose as cc
from ..commands import docker as d
from ..config import Env
from ..deploy.health import wait_service_healthy
from ..errors import BadInput
from ..runner import Runner
from ..stack.local import QUICK, QuickTarget


@dataclass
class OpsResult:
    project_dir: str
    ops_image: str
    walstream: list[str] = field(default_factory=list)
    backup_id: str = ""
    verified: bool = False


def start(env: Env, runner: Runner, ops_image: str, timeout: float) -> tuple[QuickTarget, OpsResult]:
    """`compose up walstream` in the stack's project, healthy (its /metrics answers)."""
    if runner.probe(d.inspect_format(ops_image, "{{.Id}}"), check=False).rc != 0 and not runner.dry_run:
        raise BadInput(f"image {ops_image} is missing; `inv build --tag {ops_image.rpartition(':')[2]}` builds it "
                       f"beside the API image")
    t = QuickTarget(env, runner, (QUICK, "monitoring", "ops"))
    runner.run(cc.up(t.base(), ["walstream"]))
    result = OpsResult(project_dir=str(t.dir), ops_image=ops_image)
    result.walstream = wait_service_healthy(t, "walstream", timeout)
    return t, result


def backup_and_verify(t: QuickTarget, env: Env, result: OpsResult) -> OpsResult:
    """One real backup of PostgreSQL and its verification, each a `compose run --rm ops` as `inv backup`
    runs them: they write iosops_backup_* into the shared volume that walstream serves; the backup's
    WAL switch gives walstream a completed segment to archive (iosops_wal_archive_*). PostgreSQL only: what
    the dashboards' backup panels need."""
    man = run_ops(t, env, "backup", "--only", "postgres").get("backup", {})
    result.backup_id = man.get("id", "")
    results = run_ops(t, env, "verify").get("results", [])
    result.verified = bool(results) and all(r.get("ok") for r in results)
    return result
