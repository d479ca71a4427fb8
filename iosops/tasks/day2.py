"""Day-2 tasks: status, logs, exec, db.psql, maintenance (images.prune lives in tasks/images.py)."""
import sys

from invoke import task

from ._common import DRY_HELP, ENV_HELP, JSON_HELP, emit, emit_plan, fail, mutating, task_env, new_runner


def _tty() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _remainder() -> list[str]:
    """What follows `--` on the command line, exactly as the shell split it (invoke's own remainder is
    joined with spaces, which loses the quoting of `python3 -c 'a; b'`)."""
    argv = sys.argv
    return argv[argv.index("--") + 1:] if "--" in argv else []


def _audit(e, task_name: str, args: dict, rc: int) -> None:
    """One audit line, in the env's log (on its data host for SSH hosts), for a command run by hand in the
    stack; no lock: it must work during a stuck deploy. A log that cannot be written is a warning (the
    command has run), with the line itself."""
    from iosops.commands.lock import audit_line
    from iosops.errors import IosopsError
    from iosops.ops import clean_args, new_run_id, now_iso, trail_for, who

    record = {"ts": now_iso(), "run": new_run_id(), "who": who(), "env": e.name, "task": task_name,
              "args": clean_args(args), "outcome": "ok" if rc == 0 else "failed", "exit_code": rc}
    trail = None
    try:
        trail = trail_for(e, runner=new_runner(say=lambda s: None))
        trail.audit.append(record)
    except IosopsError as exc:
        print(f"warning: the audit line could not be written ({exc}); it was: {audit_line(record)}", file=sys.stderr)
    finally:
        if trail is not None:
            trail.close()


def _passthrough(ran) -> None:
    """The command's output as it gave it (secrets masked), then its exit code as ours."""
    from invoke.exceptions import Exit

    from iosops.secretref import redact

    if not ran.attached:
        sys.stdout.write(redact(ran.stdout))
        sys.stdout.flush()
        if ran.stderr:
            sys.stderr.write(redact(ran.stderr))
            sys.stderr.flush()
    if ran.rc != 0:
        raise Exit(code=ran.rc)


@task(help={"env": ENV_HELP, "json_": JSON_HELP})
def status(c, env=None, json_=False):
    """Per host: roles, live colour, image and healthy replicas per colour, datastores, last deploy, lock holder."""
    from iosops.day2.status import lines, status as read_status
    from iosops.errors import IosopsError

    with task_env(env) as e:
        try:
            data = read_status(e, new_runner(as_json=json_, say=lambda s: None))
        except IosopsError as exc:
            raise fail(exc) from None
    emit(data, json_, lines(data))


@task(help={"env": ENV_HELP, "service": "Only this service: api (both colours), api-blue, api-green, nginx, "
            "postgres, redis, walstream, elasticsearch", "since": "Lines newer than this: 10m, 1h30m, 2d, "
            "2026-12-02T10:00:00Z, or all (default 10m)", "tail": "At most this many lines per container "
            "(default all)", "follow": "Keep streaming new lines from every host until Ctrl-C",
            "json_": "One JSON object per line (host, container, ts, text)"})
def logs(c, env=None, service="", since="10m", tail="all", follow=False, json_=False):
    """Container logs of the stack, merged across hosts, each line prefixed [host/container] (Kubernetes: kubectl logs)."""
    import json

    from iosops.day2 import logs as lg
    from iosops.day2.probes import Since, parse_since, parse_tail
    from iosops.errors import IosopsError
    from iosops.secretref import redact

    def show(ll) -> None:
        print(redact(json.dumps(ll.as_dict(), sort_keys=True) if json_ else ll.render()), flush=True)

    with task_env(env) as e:
        try:
            window = Since() if since.strip() == "all" else parse_since(since)
            lines_ = parse_tail(tail)
            runner = new_runner(say=lambda s: None)
            if follow:
                errors = lg.follow(e, runner, service, window, lines_, show)
            else:
                for ll in lg.logs(e, runner, service, window, lines_):
                    show(ll)
                errors = []
        except IosopsError as exc:
            raise fail(exc) from None
    for err in errors:
        print(f"warning: a host's log stream ended: {redact(err)}", file=sys.stderr)


@task(name="exec", help={"env": ENV_HELP, "host": "Web host (address or user@address:port; default: the first "
                         "web host)", "colour": "blue or green (default: the live colour)"})
def exec_(c, env=None, host="", colour=""):
    """Run `-- CMD...` in one API replica (interactive at a terminal); its exit code is passed through. Audited."""
    from iosops.day2.console import exec_ as run_exec
    from iosops.errors import IosopsError

    command = _remainder()
    with task_env(env) as e:
        try:
            ran = run_exec(e, new_runner(say=lambda s: None), command, host=host, colour=colour, tty=_tty())
        except IosopsError as exc:
            raise fail(exc) from None
        _audit(e, "exec", {"host": host, "colour": colour, "where": ran.where, "command": " ".join(command)}, ran.rc)
    _passthrough(ran)


@task(help={"env": ENV_HELP, "command": "Run this SQL and print the result (required when stdin is not a terminal)"})
def psql(c, env=None, command=None):
    """psql in the PostgreSQL container as the app's role (password stays in the container); interactive at a terminal."""
    from iosops.day2.console import psql as run_psql
    from iosops.errors import IosopsError

    with task_env(env) as e:
        try:
            ran = run_psql(e, new_runner(say=lambda s: None), sql=command, tty=_tty())
        except IosopsError as exc:
            raise fail(exc) from None
        _audit(e, "db.psql", {"sql": command if command is not None else "(interactive)", "where": ran.where}, ran.rc)
    _passthrough(ran)


@task(help={"mode": "on or off", "env": ENV_HELP, "reason": "Said in the 503 page (plain words)", "dry_run": DRY_HELP,
            "json_": JSON_HELP})
def maintenance(c, mode, env=None, reason="", dry_run=False, json_=False):
    """`on|off`: nginx on every web host answers 503 + Retry-After (health endpoints excepted), or serves again."""
    from iosops.day2.edge import check_mode, clean_reason, set_maintenance
    from iosops.errors import IosopsError

    try:
        check_mode(mode)
        clean_reason(reason)
    except IosopsError as exc:
        raise fail(exc) from None
    with mutating("maintenance", env, {"mode": mode, "reason": reason}, dry_run=dry_run, as_json=json_) as (e, runner):
        out = set_maintenance(e, runner, mode, reason)
    if dry_run:
        emit_plan(runner, json_)
        return
    lines = [f"[{h.host}] " + (f"maintenance {mode}" + (f" (was: on, {h.before})" if h.before and mode == "off" else "")
                               if h.changed else h.note) for h in out]
    if not any(h.changed for h in out):
        lines.append(f"no change: maintenance is already {mode} on every web host")
    emit([h.__dict__ for h in out], json_, lines)
