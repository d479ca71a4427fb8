from invoke import task

from ._common import ENV_HELP, JSON_HELP, confirm_typed, emit, task_env, new_runner

HERE_HELP = ("This machine's lock file and log, for an env on SSH hosts (what up, down, images.* and k8s.* "
             "use); without it such an env's lock and log are read on its data host")


def _trail(env, here):
    from iosops.ops import trail_for

    return trail_for(env, here=here, runner=new_runner())


@task(help={"env": ENV_HELP, "here": HERE_HELP, "json_": JSON_HELP})
def status(c, env=None, here=False, json_=False):
    """Show who holds the env's lock, if anyone (on its data host for an env on SSH hosts)."""
    with task_env(env) as e:
        trail = _trail(e, here)
        try:
            holder = trail.lock.holder()
        finally:
            trail.close()
    where = trail.lock.where
    if holder is None:
        line = f"env {e.name}: not locked ({where})"
    elif not holder:
        line = f"env {e.name}: locked, holder unknown (no holder info at {where})"
    else:
        line = (f"env {e.name}: locked by {holder.get('who', '?')} since {holder.get('since', '?')} running "
                f"`{holder.get('task', '?')}` (pid {holder.get('pid', '?')} on {holder.get('host', '?')}; {where})")
    emit(holder if holder is None else {**holder, "where": where}, json_, [line])


@task(help={"env": ENV_HELP, "here": HERE_HELP, "yes": "Skip the typed confirmation"})
def release(c, env=None, here=False, yes=False):
    """Force-release the env's lock (only when its holder is known to be dead). Audited."""
    from iosops.ops import clean_args, now_iso, who

    with task_env(env) as e:
        trail = _trail(e, here)
        try:
            holder = trail.lock.holder()
            if holder is not None:
                confirm_typed(e.name, f"overrides the lock held by {holder.get('who', 'an unknown holder')} "
                              f"since {holder.get('since', '?')}", f"inv lock.release --env {e.name}",
                              yes=yes)
                trail.lock.force_release()
                trail.audit.append({"ts": now_iso(), "who": who(), "env": e.name, "task": "lock.release",
                                    "args": clean_args({"holder": holder.get("who", "")}), "outcome": "ok",
                                    "exit_code": 0})
        finally:
            trail.close()
    if holder is None:
        print(f"no change: env {e.name} was not locked ({trail.lock.where})")
    else:
        print(f"released lock of {holder.get('who', 'an unknown holder')} ({trail.lock.where})")


@task(help={"env": ENV_HELP, "lines": "How many lines", "run": "Only the line of this run id (as a "
            "notification names it)", "here": HERE_HELP, "json_": JSON_HELP})
def audit(c, env=None, lines=20, run="", here=False, json_=False):
    """Show the last lines of the audit log for an env (on its data host for an env on SSH hosts)."""
    with task_env(env) as e:
        trail = _trail(e, here)
        try:
            rows = [r for r in trail.audit.tail(10_000) if r.get("env") == e.name
                    and (not run or r.get("run") == run)][-int(lines):]
        finally:
            trail.close()
    emit(rows, json_, [f"{r.get('ts', '?')} {r.get('run', '-')} {r.get('who', '?')} {r.get('task', '?')} "
                       f"{r.get('outcome', '?')} {r.get('duration_s', '')}s {r.get('args', {})}"
                       + (f" error: {r['error']}" if r.get("error") else "") for r in rows])
