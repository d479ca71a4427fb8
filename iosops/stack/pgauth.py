"""Does this checkout's PostgreSQL password open the stack's data volume?

The volume outlives the checkout that made it: a second checkout on the same machine generates its own
secrets.postgres_password (`generate: true`), while PostgreSQL keeps the password the cluster was
initialised with, so every connection of the new release fails (SQLSTATE 28P01). Look, then act: log in
inside the running PostgreSQL container with this checkout's password (a probe and a pure parser,
iosops.commands.pg) before `inv deploy` / `inv up` change anything; when PostgreSQL is not running yet,
right after they start it, removing what they started. Either way: one line, exit 2, the two ways out.
"""
from __future__ import annotations

from typing import Optional

from ..commands import compose as cc
from ..commands import docker as d
from ..commands import pg
from ..config import Env
from ..errors import BadInput
from ..runner import Runner

OK, MISMATCH, UNKNOWN = "ok", "mismatch", "unknown"


def probe(runner: Runner, container: str, env: Env) -> str:
    """OK, MISMATCH or UNKNOWN for the env's password in a running PostgreSQL container (read-only)."""
    s = env.cfg.stack
    r = runner.probe(pg.password_check_in(d.DOCKER, container, s.postgres_user, s.postgres_db), check=False,
                     input=env.secret("postgres_password").get())
    return pg.parse_password_check(r.rc, r.stderr + r.stdout)


def mismatch(env: Env, volume: str, *, on_this_machine: bool = True, where: str = "",
             undone: str = "Nothing was changed") -> BadInput:
    """The one-line refusal: what is wrong and the two ways out (restore the secret, or start fresh)."""
    ref = env.cfg.secrets.get("postgres_password")
    if ref is not None and ref.file:
        path = env.path(ref.file)
        mine = f"({path})"
        restore = (f"restore that secret (copy {ref.file} from the checkout that created the volume to {path})"
                   if not ref.file.startswith("/") else
                   f"restore that secret (put the password the volume was created with into {path})")
    else:
        var = ref.env if ref is not None else "?"
        mine = f"(environment variable {var})"
        restore = f"restore that secret (export {var} with the password the volume was created with)"
    if on_this_machine:
        fresh = f"start fresh with `inv down --env {env.name} --volumes` (deletes the stack's data)"
    else:
        fresh = (f"set the password of role {env.cfg.stack.postgres_user} in that database to this secret "
                 "(ALTER ROLE ... PASSWORD)")
    return BadInput(f"the PostgreSQL volume {volume}{where} was initialised by another checkout or with another "
                    f"password: this checkout's secrets.postgres_password {mine} fails to log in (password "
                    f"authentication failed). Either {restore}, or {fresh}; then run this again."
                    + (f" {undone}" if undone else ""))


# -- inv deploy, inv up (compose stacks: iosops.deploy, iosops.stack.local) ------------------------------
def check_compose(t) -> Optional[list[str]]:
    """Before a deploy changes anything on the data host `t` (an iosops.deploy.target.Target). None: nothing
    more to check (no volume yet: it will be initialised with this password; or the running PostgreSQL
    accepted it). A list: check again once the datastores run (`check_compose_started`); the list names
    the datastore services not running now, removed again if the check fails."""
    vols = t.runner.run(d.compose_volumes(t.project, "pgdata"), mutating=False, check=False).stdout.split()
    if not vols:
        return None
    ids = t.containers("postgres")
    verdict = probe(t.runner, ids[0], t.env) if ids else UNKNOWN
    if verdict == MISMATCH:
        raise _compose_mismatch(t, vols[0])
    return None if verdict == OK else [svc for svc in t.datastores() if not t.containers(svc)]


def check_compose_started(t, started: list[str], what: str = "deploy") -> None:
    """After `up` of the datastores: on a mismatch remove the services this `what` started, then refuse."""
    ids = t.containers("postgres")
    if not ids or probe(t.runner, ids[0], t.env) != MISMATCH:
        return
    if started:
        t.runner.run(cc.rm(t.base(), started), check=False)
    vols = t.runner.run(d.compose_volumes(t.project, "pgdata"), mutating=False, check=False).stdout.split()
    raise _compose_mismatch(t, vols[0] if vols else f"{t.project}_pgdata",
                            undone=(f"Rolled back: removed {', '.join(started)}, which this {what} had started; "
                                    "the volume is untouched" if started else "The volume is untouched"))


def _compose_mismatch(t, volume: str, undone: str = "Nothing was changed") -> BadInput:
    return mismatch(t.env, volume, on_this_machine=not t.remote, where=f" on {t.name}" if t.remote else "",
                    undone=undone)
