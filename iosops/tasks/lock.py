from invoke import task

from ._common import ENV_HELP, JSON_HELP, emit, task_env


@task(help={"env": ENV_HELP, "json_": JSON_HELP})
def status(c, env=None, json_=False):
    """Show who holds the env's lock, if anyone."""
    from iosops.ops import EnvLock

    with task_env(env) as e:
        holder = EnvLock(e.state_dir, e.name).holder()
    emit(holder, json_, [f"env {e.name}: locked by {holder['who']} since {holder['since']} running "
                         f"`{holder['task']}`" if holder else f"env {e.name}: not locked"])


@task(help={"env": ENV_HELP})
def release(c, env=None):
    """Force-release the env's lock (only when its holder is known to be dead). Audited."""
    from iosops.ops import AuditLog, EnvLock, clean_args, now_iso, who

    with task_env(env) as e:
        lock = EnvLock(e.state_dir, e.name)
        holder = lock.holder()
        lock.release()
        AuditLog(e.state_dir).append({"ts": now_iso(), "who": who(), "env": e.name, "task": "lock.release",
                                      "args": clean_args({"holder": (holder or {}).get("who", "")}),
                                      "outcome": "ok", "exit_code": 0})
    print(f"released lock of {holder['who']}" if holder else f"no change: env {e.name} was not locked")


@task(help={"env": ENV_HELP, "lines": "How many lines", "run": "Only the line of this run id (as a "
            "notification names it)", "json_": JSON_HELP})
def audit(c, env=None, lines=20, run="", json_=False):
    """Show the last lines of the audit log for an env."""
    from iosops.ops import AuditLog

    with task_env(env) as e:
        rows = [r for r in AuditLog(e.state_dir).tail(10_000) if r.get("env") == e.name
                and (not run or r.get("run") == run)][-int(lines):]
    emit(rows, json_, [f"{r['ts']} {r.get('run', '-')} {r['who']} {r['task']} {r['outcome']} "
                       f"{r.get('duration_s', '')}s {r.get('args', {})}"
                       + (f" error: {r['error']}" if r.get("error") else "") for r in rows])
