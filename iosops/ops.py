"""Every mutating task runs inside `operation()`: one lock per env (who/when/what), one audit line per
run (run id, who, when, env, task, args without secrets, outcome). Dry-runs take no lock and write no audit
line, because they change nothing.

Where the lock and the log live is the env's `Trail` (trail_for): a compose env on SSH hosts keeps them
on its data host (iosops.hosts.trail, Kamal's way), so every checkout, CI and cron exclude each other;
`local` (and anything acting on this machine only) keeps a lock file and a log under the state dir.
Both kinds have the same interface (Lock, Audit); nothing else branches on where they are.
"""
from __future__ import annotations

import datetime as dt
import errno
import getpass
import json
import os
import socket
import time
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Protocol, Union

from .commands.lock import audit_line
from .errors import IosopsError, LockHeld
from .secretref import redact

SECRET_WORDS = ("password", "secret", "token", "key")

# The run in progress (set by operation() for real runs): notifications name its audit line.
_current: ContextVar[dict | None] = ContextVar("iosops_current_run", default=None)


def current_run() -> dict | None:
    """{"run", "task", "env", "who", "audit", "audit_at", "audit_flags"} of the mutating run in progress
    (audit: the log's path on the machine `audit_at`; audit_flags: what `inv lock.audit` needs to read it),
    or None (dry-run, or a library call outside an `inv` task)."""
    return _current.get()


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def who() -> str:
    return os.environ.get("IOSOPS_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def clean_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments as they may be logged: secret-looking keys dropped to ***, every value redacted."""
    out: dict[str, Any] = {}
    for k, v in args.items():
        if any(w in k.lower() for w in SECRET_WORDS):
            out[k] = "***"
        elif isinstance(v, str):
            out[k] = redact(v)
        else:
            out[k] = v
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    try:  # a zombie (PID 1 here does not reap) is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


class Lock(Protocol):
    """The env's lock. `where` names it for people (host and path)."""
    where: str

    def holder(self) -> Optional[dict]: ...

    def acquire(self, task: str, reason: str = "") -> list[str]: ...

    def release(self) -> None: ...  # this run's own lock

    def force_release(self) -> None: ...  # whoever holds it (inv lock.release)


class Audit(Protocol):
    """The env's audit log: `at` is the machine it is on, `path` the file there."""
    at: str
    path: Any

    def append(self, record: Mapping[str, Any]) -> None: ...

    def tail(self, n: int = 20) -> list[dict]: ...


def holder_info(task: str, reason: str) -> dict[str, Any]:
    return {"who": who(), "host": socket.gethostname(), "pid": os.getpid(), "since": now_iso(),
            "task": task, "reason": reason}


def is_stale(holder: Mapping[str, Any], here: str, alive=None) -> bool:
    """A holder is provably dead only when it ran on this machine and its pid is gone; a run elsewhere
    (another checkout, CI) cannot be checked from here."""
    pid = holder.get("pid")
    return holder.get("host") == here and isinstance(pid, int) and not (alive or _pid_alive)(pid)


def held_message(env: str, holder: Mapping[str, Any], where: str = "", release_cmd: str = "") -> str:
    release_cmd = release_cmd or f"inv lock.release --env {env}"
    at = f"; lock at {where}" if where else ""
    if not holder:
        return (f"env {env} is locked (holder unknown: the lock{(' at ' + where) if where else ''} has no holder "
                f"info; it is being taken right now, or a run died while taking it); if no run is going on: "
                f"{release_cmd}")
    return (f"env {env} is locked by {holder.get('who', '?')} since {holder.get('since', '?')} running "
            f"`{holder.get('task', '?')}` (pid {holder.get('pid', '?')} on {holder.get('host', '?')}{at}); wait for "
            f"it, or if that run is dead: {release_cmd}")


class EnvLock:
    """The lock file of an env on this machine (state_dir/locks/<env>.lock), created O_EXCL."""

    def __init__(self, state_dir: Path, env: str):
        self.path = state_dir / "locks" / f"{env}.lock"
        self.env = env

    @property
    def where(self) -> str:
        return f"{socket.gethostname()}:{self.path}"

    def holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def acquire(self, task: str, reason: str = "") -> list[str]:
        """Take the lock or raise LockHeld naming the holder. Returns notes (e.g. a stale lock removed)."""
        notes: list[str] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        info = holder_info(task, reason)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                h = self.holder() or {}
                if is_stale(h, socket.gethostname()):
                    self.path.unlink(missing_ok=True)
                    notes.append(f"removed stale lock of {h.get('who')} (pid {h['pid']} is gone)")
                    continue
                raise LockHeld(held_message(self.env, h)) from None
            with os.fdopen(fd, "w") as fh:
                json.dump(info, fh)
            return notes
        raise LockHeld(f"env {self.env}: could not take the lock at {self.path}")

    def release(self) -> None:
        self.path.unlink(missing_ok=True)

    def force_release(self) -> None:
        self.release()


class AuditLog:
    """The audit log of an env on this machine (state_dir/audit.log)."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / "audit.log"
        self.at = socket.gethostname()

    def append(self, record: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:  # one write of one line: concurrent appends stay whole
            fh.write(audit_line(record) + "\n")

    def tail(self, n: int = 20) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines()[-n:] if line.strip()]


@dataclass
class Trail:
    """Where an env's lock and audit log are; `flags` are what `inv lock.*` needs to find them again."""
    lock: Lock
    audit: Audit
    flags: str = ""

    def close(self) -> None:
        closer = getattr(self.lock, "close", None)
        if closer:
            closer()


def local_trail(state_dir: Path, env: str, flags: str = "") -> Trail:
    return Trail(EnvLock(state_dir, env), AuditLog(state_dir), flags)


def trail_for(env: Any, *, here: bool = False, runner: Any = None) -> Trail:
    """The env's lock and audit log: on its data host for a compose env on SSH hosts (reached through the
    task's `runner`), else (and for tasks that act on this machine or a cluster only: here=True) under this
    machine's state dir."""
    on_hosts = env.cfg.target == "compose" and bool(env.cfg.hosts.hosts)
    if on_hosts and not here:
        from .hosts.trail import host_trail

        if runner is None:
            raise TypeError(f"env {env.name} keeps its lock on its data host: trail_for needs the task's runner")
        return host_trail(env, runner)
    return local_trail(env.state_dir, env.name, " --here" if on_hosts else "")


@contextmanager
def operation(where: Union[Path, Trail], env: str, task: str, args: Mapping[str, Any], *, dry_run: bool,
              say=None, reason: str = "") -> Iterator[dict]:
    """Lock + audit around one mutating run (`where`: the env's Trail, or a state dir for the local
    one). Yields a dict the body may fill with `detail`."""
    ctx: dict[str, Any] = {}
    if dry_run:
        yield ctx
        return
    trail = where if isinstance(where, Trail) else local_trail(Path(where), env)
    say = say or (lambda line: None)
    try:
        for note in trail.lock.acquire(task, reason):
            say(note)
    except BaseException:
        trail.close()
        raise
    start = time.monotonic()
    run_id = new_run_id()
    ctx["run"] = run_id
    record: dict[str, Any] = {"ts": now_iso(), "run": run_id, "who": who(), "env": env, "task": task,
                              "args": clean_args(args)}
    token = _current.set({"run": run_id, "task": task, "env": env, "who": record["who"],
                          "audit": str(trail.audit.path), "audit_at": trail.audit.at, "audit_flags": trail.flags})
    try:
        yield ctx
        record.update(outcome="ok", exit_code=0)
    except IosopsError as exc:
        record.update(outcome="failed", exit_code=exc.exit_code, error=str(exc))
        raise
    except KeyboardInterrupt:
        record.update(outcome="interrupted", exit_code=130)
        raise
    except BaseException as exc:
        record.update(outcome="error", exit_code=1, error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        _current.reset(token)
        record["duration_s"] = round(time.monotonic() - start, 3)
        if ctx.get("detail"):
            record["detail"] = ctx["detail"]
        _finish(trail, record, env, say)


def _finish(trail: Trail, record: Mapping[str, Any], env: str, say) -> None:
    """Audit line, then release. Neither may hide the run's own outcome: a failure here (the data host
    went away) is a warning that keeps the line (stderr) and says how to release."""
    try:
        try:
            trail.audit.append(record)
        except IosopsError as exc:
            say(f"warning: the audit line could not be written at {trail.audit.at}:{trail.audit.path} ({exc}); "
                f"it was: {audit_line(record)}")
        finally:
            try:
                trail.lock.release()
            except IosopsError as exc:
                say(f"warning: the lock at {trail.lock.where} could not be released ({exc}); release it with "
                    f"inv lock.release --env {env}{trail.flags}")
    finally:
        trail.close()
