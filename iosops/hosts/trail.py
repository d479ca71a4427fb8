"""The env lock and the audit log on the env's data host (Kamal keeps them on the primary host): two
checkouts, CI and cron reach the same directory `<hosts.base_dir>/<stack.name>/` over SSH, so they
exclude each other and their audit lines land in one file.

Same interface as the local lock file and log (iosops.ops Lock/Audit); the commands are the argv lists of
iosops.commands.lock, run on the data host through the task's runner (`runner.on(host)`: host key checked;
its own SSH session). A dry-run takes no lock, so they are never in a dry-run plan.
"""
from __future__ import annotations

import json
import socket
import uuid
from pathlib import PurePosixPath
from typing import Any, Mapping, Optional

from ..commands import lock as cl
from ..config import Env
from ..errors import BadInput, IosopsError, LockHeld, OperationFailed
from ..ops import Trail, held_message, holder_info, is_stale
from ..runner import RemoteRunner, Runner
from .known_hosts import HostKeyRefused
from .ssh import remote_runner


class HostLock:
    """`<dir>/lock`, a directory made atomically by mkdir, holding info.json (who, host, pid, since, task,
    and this run's owner id, so a run releases only its own lock)."""

    def __init__(self, runner: RemoteRunner, dir_: PurePosixPath, env: str):
        self.runner, self.dir, self.env = runner, dir_, env
        self.owner = ""

    @property
    def where(self) -> str:
        return f"{self.runner.host}:{self.dir / 'lock'}"

    def _run(self, argv: list[str], what: str, check: bool = True, mutating: bool = True):
        # This runner is never a dry-run one (dry-runs take no lock); `mutating` only labels the action.
        try:
            return self.runner.run(argv, mutating=mutating, check=check)
        except HostKeyRefused:
            raise
        except IosopsError as exc:
            raise OperationFailed(f"env {self.env}: could not {what} on its data host {self.runner.host}: {exc}") from None

    def holder(self) -> Optional[dict]:
        return cl.parse_holder(self._run(cl.lock_read(str(self.dir)), "read the lock", mutating=False).stdout)

    def acquire(self, task: str, reason: str = "") -> list[str]:
        notes: list[str] = []
        owner = uuid.uuid4().hex
        info = json.dumps({**holder_info(task, reason), "owner": owner}, sort_keys=True)
        try:
            for _ in range(2):
                try:
                    r = self.runner.run(cl.lock_take(str(self.dir), info), check=False)
                except HostKeyRefused:
                    raise
                except IosopsError as exc:  # the data host does not answer: nothing was changed anywhere
                    raise BadInput(f"env {self.env}: its lock cannot be taken on the data host {self.runner.host} "
                                   f"({exc}); nothing was changed") from None
                if r.rc == 0:
                    self.owner = owner
                    return notes
                if r.rc != cl.HELD:
                    raise OperationFailed(f"env {self.env}: could not take the lock at {self.where}: "
                                          f"{(r.stderr or r.stdout).strip()[:300]}")
                h = self.holder()
                if h is None:
                    continue  # released in between: try again
                if is_stale(h, socket.gethostname()) and h.get("owner"):
                    # Only that holder's owner id: a run that took the lock since is never removed.
                    self._run(cl.lock_release(str(self.dir), h["owner"]), "remove a stale lock", check=False)
                    notes.append(f"removed stale lock of {h.get('who')} (pid {h['pid']} on this machine is gone)")
                    continue
                raise LockHeld(held_message(self.env, h, self.where))
            raise LockHeld(f"env {self.env}: could not take the lock at {self.where}")
        finally:
            self.runner.close()  # a long run does not keep an idle session open; release reconnects

    def release(self) -> None:
        if not self.owner:
            return
        r = self._run(cl.lock_release(str(self.dir), self.owner), "release the lock", check=False)
        if r.rc not in (0, cl.NOT_OURS):
            raise OperationFailed(f"{(r.stderr or r.stdout).strip()[:300]}")
        self.owner = ""

    def force_release(self) -> None:
        self._run(cl.lock_release(str(self.dir)), "release the lock")

    def close(self) -> None:
        self.runner.close()


class HostAudit:
    """`<dir>/audit.log` on the data host: one line per run, appended in one write."""

    def __init__(self, runner: RemoteRunner, dir_: PurePosixPath):
        self.runner, self.dir = runner, dir_
        self.path = dir_ / "audit.log"

    @property
    def at(self) -> str:
        return str(self.runner.host)

    def append(self, record: Mapping[str, Any]) -> None:
        self.runner.run(cl.audit_append(str(self.dir), cl.audit_line(record)))

    def tail(self, n: int = 20) -> list[dict]:
        try:
            r = self.runner.probe(cl.audit_tail(str(self.dir), n))
        except HostKeyRefused:
            raise
        except IosopsError as exc:
            raise OperationFailed(f"could not read the audit log at {self.at}:{self.path}: {exc}") from None
        return cl.parse_audit(r.stdout)


def trail_dir(env: Env) -> PurePosixPath:
    return PurePosixPath(env.cfg.hosts.base_dir) / env.cfg.stack.name


def host_trail(env: Env, runner: Runner) -> Trail:
    """The lock and audit log of a compose env on SSH hosts, on its data host."""
    runner = remote_runner(env, runner, env.cfg.hosts.data_host())
    d = trail_dir(env)
    return Trail(HostLock(runner, d, env.name), HostAudit(runner, d))
