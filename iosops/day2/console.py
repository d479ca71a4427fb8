"""`inv exec` (a command in one API replica of the live colour) and `inv db.psql` (psql in the PostgreSQL
container on the data host, as the app's role; its password never leaves the container). Interactive
(a TTY, stdin attached) when a person is at a terminal; otherwise output captured and returned. The
command's exit code is the caller's."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from ..commands import docker as d
from ..commands import kubectl as k
from ..commands import pg
from ..config import Env
from ..deploy.switch import active_colour
from ..deploy.target import check_reachable, data_target
from ..errors import BadInput
from ..runner import Runner
from .attach import interactive
from .common import find_host, hosts, k8s_cfg, kubernetes
from .probes import COLOURS


@dataclass
class Ran:
    where: str  # host (or cluster) and container
    rc: int
    stdout: str = ""
    stderr: str = ""
    attached: bool = False


def _run(runner: Runner, argv: list, tty: bool, where: str) -> Ran:
    if tty:
        return Ran(where, interactive(runner, argv), attached=True)
    r = runner.run(argv, check=False)
    return Ran(where, r.rc, r.stdout, r.stderr)


def check_command(command: Sequence[str]) -> list[str]:
    cmd = [c for c in command]
    if not cmd or not cmd[0].strip():
        raise BadInput("inv exec needs a command after --, e.g. inv exec --env local -- python3 -c 'print(1)'; "
                       "nothing was run")
    return cmd


def check_colour(colour: str) -> str:
    if colour and colour not in COLOURS:
        raise BadInput(f"--colour {colour!r}: blue or green; nothing was run")
    return colour


def exec_(env: Env, runner: Runner, command: Sequence[str], host: str = "", colour: str = "",
          tty: bool = False) -> Ran:
    cmd = check_command(command)
    check_colour(colour)
    if kubernetes(env):
        return _exec_k8s(env, runner, cmd, host, colour, tty)
    t = find_host(hosts(env, runner), host, "web")
    check_reachable([t])
    live = active_colour(t)
    colour = colour or live or ""
    if not colour:
        raise BadInput(f"no live colour on {t.name} (nothing deployed there yet); pass --colour, or deploy first; "
                       "nothing was run")
    ids = t.containers(f"api-{colour}")
    if not ids:
        running = [c for c in COLOURS if c != colour and t.containers(f"api-{c}")]
        raise BadInput(f"api-{colour} is not running on {t.name}"
                       + (f" (running: api-{running[0]}, pass --colour {running[0]})" if running else "")
                       + "; nothing was run")
    return _run(t.runner, d.exec_attached(ids[0], cmd, tty), tty, f"{t.name} api-{colour} {ids[0][:12]}")


def _exec_k8s(env: Env, runner: Runner, cmd: list[str], host: str, colour: str, tty: bool) -> Ran:
    from ..k8s.deploy import read_state
    from ..k8s.render import deployment

    if host:
        raise BadInput(f"--host does not apply to a Kubernetes env ({env.name}): kubectl picks a pod of the "
                       "colour's Deployment; nothing was run")
    cfg = k8s_cfg(env)
    state = read_state(runner, cfg)
    colour = colour or state.live or ""
    if not colour:
        raise BadInput(f"no live colour in {cfg.context}/{cfg.namespace}; pass --colour, or deploy first; nothing was run")
    if not state.replicas.get(colour):
        raise BadInput(f"{deployment(colour)} has no replicas in {cfg.context}/{cfg.namespace}; nothing was run")
    ref = f"deployment/{deployment(colour)}"
    return _run(runner, k.exec_attached(cfg.context, cfg.namespace, ref, "api", cmd, tty, cfg.kubectl), tty,
                f"{cfg.context}/{cfg.namespace} {ref}")


def psql(env: Env, runner: Runner, sql: Optional[str] = None, tty: bool = False) -> Ran:
    if sql is None and not tty:
        raise BadInput("db.psql: stdin is not a terminal: pass -c SQL (one statement, output returned); nothing was run")
    if sql is not None and not sql.strip():
        raise BadInput("db.psql -c: empty SQL; nothing was run")
    s = env.cfg.stack
    argv = pg.psql_in_container(s.postgres_user, s.postgres_db, sql)
    interactive_ = sql is None
    if kubernetes(env):
        cfg = k8s_cfg(env)
        ref = "statefulset/ios-postgres"
        return _run(runner, k.exec_attached(cfg.context, cfg.namespace, ref, "postgres", argv, interactive_, cfg.kubectl),
                    interactive_, f"{cfg.context}/{cfg.namespace} {ref}")
    t = data_target(hosts(env, runner))
    check_reachable([t])
    ids = t.containers("postgres")
    if not ids:
        raise BadInput(f"PostgreSQL is not running on {t.name} (deploy with `inv deploy --env {env.name}` first); "
                       "nothing was run")
    return _run(t.runner, d.exec_attached(ids[0], argv, interactive_), interactive_, f"{t.name} postgres {ids[0][:12]}")
