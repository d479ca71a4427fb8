"""The backup services of the live check stack: docker/compose.yml's own `walstream` and `ops` services,
run as a compose project beside the throwaway stack of `inv up`, so its Prometheus scrapes a real
walstream and the backup panels show what a deployed stack's services produce.

The project directory (under the check's config dir) holds the compose file as `inv deploy` writes it
(docker/compose.yml, stack.env, compose.labels.yml, ops/<env>.yaml and secrets/ from
iosops.backup.stack.write_ops_files), plus one override, compose.check.yml: the compose file's `data`
network (and the networks only services not run here use) and `pgdata` volume are the check stack's own
(`<stack>-net`, `<stack>-pgdata`), so `walstream` and `ops` reach its PostgreSQL as `postgres`, and
Prometheus reaches walstream as `walstream:9898`. Compose still creates the `backup` network and the
file's other volumes (empty; only `opsdata` is used).
Everything carries `iosops.stack=<stack>` (from the compose file) and the stack's labels, so the check's
`inv down --volumes` removes it with the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from ..backup.stack import prepare_host, run_ops
from ..commands import compose as cc
from ..commands import docker as d
from ..commands import host as hc
from ..commands import pg
from ..config import Env
from ..deploy.health import wait_service_healthy
from ..deploy.stackfiles import labels_override, stack_env
from ..deploy.target import Target
from ..errors import BadInput
from ..runner import Runner
from ..stack.local import names as stack_names

OVERRIDE = "compose.check.yml"
PASSWORD_IN_CONTAINER = "/tmp/iosops_backup_password"  # nosec B105 B108 # a path, not a password; inside the check stack's PostgreSQL container, removed right after


@dataclass
class OpsResult:
    project_dir: str
    ops_image: str
    walstream: list[str] = field(default_factory=list)
    backup_id: str = ""
    verified: bool = False


def project_dir(cdir: Path) -> Path:
    return cdir / "ops"


def check_override(env: Env, compose_text: str) -> str:
    """The compose file's data network and PostgreSQL volume are the check stack's (both exist already).
    So are the networks only services not run here use (edge, app, monitoring): compose creates every
    network of the file on `up`, and networks are a scarce resource on a shared Docker engine. `backup`
    (the ops services' way out to an S3 store) stays their own: a container joins a network once."""
    sn = stack_names(env)
    nets = (yaml.safe_load(compose_text).get("networks") or {})
    out = {"networks": {k: {"external": True, "name": sn["network"]} for k in nets if k != "backup"},
           "volumes": {"pgdata": {"external": True, "name": sn["pgdata"]}}}
    return ("# written by inv monitoring.check: the ops services of docker/compose.yml on the check stack's "
            "network and volume\n" + yaml.safe_dump(out, sort_keys=True))


class CheckProject(Target):
    """A Target (as `inv deploy` has one per host) whose compose files end with the check override."""

    def base(self) -> list[str]:
        files = [str(self.dir / "compose.yml")]
        if self.env.cfg.stack.labels:
            files.append(str(self.dir / "compose.labels.yml"))
        files.append(str(self.dir / OVERRIDE))
        return cc.base(self.compose(), self.project, str(self.dir), files, str(self.dir / "stack.env"))


def write_project(env: Env, runner: Runner, cdir: Path, ops_image: str) -> CheckProject:
    t = CheckProject(env, runner, PurePosixPath(project_dir(cdir)))
    compose_text = env.path(env.cfg.deploy.compose_file).read_text()
    runner.run(hc.mkdir_p(str(t.dir / "secrets")))
    runner.run(hc.chmod(0o700, str(t.dir / "secrets")))
    t.put("compose.yml", compose_text)
    if env.cfg.stack.labels:
        t.put("compose.labels.yml", labels_override(env, compose_text))
    t.put(OVERRIDE, check_override(env, compose_text))
    t.put("stack.env", stack_env(env, {}, t, ops_image), 0o600)
    prepare_host(t, env)  # ops/<env>.yaml, the backup secrets, the store directory (owned by uid 999)
    # Only the services that are not run here use it (the check's PostgreSQL and API are `inv up`'s):
    # an empty file keeps compose from warning about an undefined secret on every call.
    t.put("secrets/postgres_password", "", 0o644)
    return t


def ensure_backup_role(env: Env, runner: Runner) -> None:
    """pg-ensure-backup-role in the check stack's PostgreSQL (started by `inv up` without the backup
    password file a deployed stack mounts): the password goes in on stdin to a file that lives only
    for this command, never on a command line."""
    argv = d.exec_input(stack_names(env)["postgres"], pg.ensure_backup_role_from_stdin(),
                        env={"BACKUP_PASSWORD_FILE": PASSWORD_IN_CONTAINER})
    runner.run(argv, input=env.secret("backup_password").get())


def start(env: Env, runner: Runner, cdir: Path, ops_image: str, timeout: float) -> tuple[CheckProject, OpsResult]:
    """Backup role, project files, `compose up walstream`, healthy (its /metrics answers)."""
    if runner.run(d.inspect_format(ops_image, "{{.Id}}"), mutating=False, check=False).rc != 0 and not runner.dry_run:
        raise BadInput(f"image {ops_image} is missing; `inv build --tag {ops_image.rpartition(':')[2]}` builds it "
                       f"beside the API image")
    t = write_project(env, runner, cdir, ops_image)
    ensure_backup_role(env, runner)
    runner.run(cc.up(t.base(), ["walstream"]))
    result = OpsResult(project_dir=str(t.dir), ops_image=ops_image)
    result.walstream = wait_service_healthy(t, "walstream", timeout)
    return t, result


def backup_and_verify(t: CheckProject, env: Env, result: OpsResult) -> OpsResult:
    """One real backup of PostgreSQL and its verification, each a `compose run --rm ops` as `inv backup`
    runs them: they write iosops_backup_* into the shared volume that walstream serves; the backup's
    WAL switch gives walstream a completed segment to archive (iosops_wal_archive_*). Redis is left out:
    the check stack's Redis (from `inv up`) keeps its dump in no volume the ops container could mount."""
    man = run_ops(t, env, "backup", "--only", "postgres").get("backup", {})
    result.backup_id = man.get("id", "")
    results = run_ops(t, env, "verify").get("results", [])
    result.verified = bool(results) and all(r.get("ok") for r in results)
    return result
