"""Every mutating task runs inside `operation()`: one lock per env (who/when/what), one audit line per
run (run id, who, when, env, task, args without secrets, outcome). Dry-runs take no lock and write no audit
line, because they change nothing.
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
from pathlib import Path
from typing import Any, Iterator, Mapping

from .errors import IosopsError, LockHeld
from .secrets import redact

SECRET_WORDS = ("password", "secret", "token", "key")

# The run in progress (set by operation() for real runs): notifications name its audit line.
_current: ContextVar[dict | None] = ContextVar("iosops_current_run", default=None)


def current_run() -> dict | None:
    """{"run", "task", "env", "who", "audit"} of the mutating run in progress, or None (dry-run, or a
    library call outside an `inv` task)."""
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


class EnvLock:
    def __init__(self, state_dir: Path, env: str):
        self.path = state_dir / "locks" / f"{env}.lock"
        self.env = env

    def holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def acquire(self, task: str, reason: str = "") -> list[str]:
        """Take the lock or raise LockHeld naming the holder. Returns notes (e.g. a stale lock removed)."""
        notes: list[str] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        info = {"who": who(), "host": socket.gethostname(), "pid": os.getpid(), "since": now_iso(),
                "task": task, "reason": reason}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                h = self.holder() or {}
                if h.get("host") == socket.gethostname() and isinstance(h.get("pid"), int) and not _pid_alive(h["pid"]):
                    self.path.unlink(missing_ok=True)
                    notes.append(f"removed stale lock of {h.get('who')} (pid {h['pid']} is gone)")
                    continue
                raise LockHeld(
                    f"env {self.env} is locked by {h.get('who', '?')} since {h.get('since', '?')} running "
                    f"`{h.get('task', '?')}` (pid {h.get('pid', '?')} on {h.get('host', '?')}); wait for it, "
                    f"or if that run is dead: inv lock.release --env {self.env}") from None
            with os.fdopen(fd, "w") as fh:
                json.dump(info, fh)
            return notes
        raise LockHeld(f"env {self.env}: could not take the lock at {self.path}")

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


class AuditLog:
    def __init__(self, state_dir: Path):
        self.path = state_dir / "audit.log"

    def append(self, record: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = redact(json.dumps(record, sort_keys=True, default=str))
        with open(self.path, "a") as fh:  # one write of one line: concurrent appends stay whole
            fh.write(line + "\n")

    def tail(self, n: int = 20) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines()[-n:] if line.strip()]


@contextmanager
def operation(state_dir: Path, env: str, task: str, args: Mapping[str, Any], *, dry_run: bool,
              say=None, reason: str = "") -> Iterator[dict]:
    """Lock + audit around one mutating run. Yields a dict the body may fill with `outcome_detail`."""
    ctx: dict[str, Any] = {}
    if dry_run:
        yield ctx
        return
    lock = EnvLock(state_dir, env)
    for note in lock.acquire(task, reason):
        if say:
            say(note)
    start = time.monotonic()
    run_id = new_run_id()
    ctx["run"] = run_id
    record: dict[str, Any] = {"ts": now_iso(), "run": run_id, "who": who(), "env": env, "task": task,
                              "args": clean_args(args)}
    token = _current.set({"run": run_id, "task": task, "env": env, "who": record["who"],
                          "audit": str(AuditLog(state_dir).path)})
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
        try:
            AuditLog(state_dir).append(record)
        finally:
            lock.release()
