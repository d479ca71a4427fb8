"""A PostgreSQL cluster this tool manages on the host (drills, local restores): init with WAL
archiving to the project's store, start/stop, promote-wait. Runs as the cluster's OS user."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .. import wait
from ..commands import pg
from ..errors import OperationFailed
from ..runner import Runner
from ..secretref import Secret


def conf_quote(value: str) -> str:
    """A postgresql.conf string literal: single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def os_user(configured: str) -> Optional[str]:
    return configured if os.geteuid() == 0 else None


@dataclass
class PgInstance:
    data_dir: Path
    port: int
    bin_dir: str
    os_user: Optional[str]
    user: str = "ios"
    dbname: str = "ios"
    # Where the cluster's own postgresql.conf puts its socket (a deployed stack's cluster, restored in the
    # ops container); None: a directory beside the data directory, as `init` configures it.
    socket: Optional[Path] = None

    @property
    def socket_dir(self) -> Path:
        # Outside the data directory: a base backup must not carry the socket's lock file.
        return self.socket or self.data_dir.parent / f"{self.data_dir.name}.sock"

    @property
    def log(self) -> str:
        return str(self.data_dir.parent / f"{self.data_dir.name}.log")

    def _chown(self, path: Path) -> None:
        if self.os_user:
            shutil.chown(path, self.os_user, self.os_user)

    def conf_lines(self, archive_command: str) -> list[str]:
        return [
            f"port = {self.port}", "listen_addresses = '127.0.0.1'", f"unix_socket_directories = '{self.socket_dir}'",
            "wal_level = replica", "archive_mode = on", f"archive_command = {conf_quote(archive_command)}",
            # A partly filled segment is archived after 10 s of activity: bounds the RPO of PITR.
            "archive_timeout = 10", "max_wal_senders = 5", "fsync = on",
        ]

    def init(self, runner: Runner, password: Secret, archive_command: str) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir.parent)
        self.socket_dir.mkdir(exist_ok=True)
        self._chown(self.socket_dir)
        pwfile = self.data_dir.parent / ".pwfile"
        runner.write_file(pwfile, password.get(), mode=0o600)
        if not runner.dry_run:
            self._chown(pwfile)
        try:
            runner.run(pg.as_user(self.os_user, pg.initdb(self.bin_dir, str(self.data_dir), self.user, str(pwfile))))
        finally:
            if not runner.dry_run:
                pwfile.unlink(missing_ok=True)
        conf = "\n# iosops\n" + "\n".join(self.conf_lines(archive_command)) + "\n"
        if not runner.dry_run:
            with open(self.data_dir / "postgresql.conf", "a") as fh:
                fh.write(conf)
        self.start(runner)
        runner.run(pg.as_user(self.os_user, pg.createdb(self.bin_dir, str(self.socket_dir), self.port, self.user,
                                                        self.dbname)))

    def log_tail(self, n: int = 3) -> str:
        p = Path(self.log)
        return " | ".join(p.read_text(errors="replace").strip().splitlines()[-n:]) if p.exists() else ""

    def clear_stale_socket_lock(self) -> None:
        """A socket lock left by a killed postmaster whose PID is gone or a zombie (PID 1 here does not
        reap) would make PostgreSQL refuse to start; PostgreSQL itself cannot tell a zombie from alive."""
        from ..ops import _pid_alive

        lock = self.socket_dir / f".s.PGSQL.{self.port}.lock"
        try:
            pid = int(lock.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        if not _pid_alive(pid):
            lock.unlink(missing_ok=True)
            (self.socket_dir / f".s.PGSQL.{self.port}").unlink(missing_ok=True)

    def start(self, runner: Runner) -> None:
        if not runner.dry_run:
            self.clear_stale_socket_lock()
        try:
            runner.run(pg.as_user(self.os_user, pg.pg_ctl(self.bin_dir, "start", str(self.data_dir), self.log)))
        except OperationFailed as exc:
            raise OperationFailed(f"PostgreSQL in {self.data_dir} did not start ({exc}); log: {self.log_tail()}") from None

    def stop(self, runner: Runner, check: bool = True) -> None:
        runner.run(pg.as_user(self.os_user, pg.pg_ctl(self.bin_dir, "stop", str(self.data_dir))), check=check)

    def control(self, runner: Runner, data_dir: Optional[Path] = None) -> dict[str, str]:
        """pg_controldata's identity of the on-disk state (system id, state, latest checkpoint)."""
        argv = pg.as_user(self.os_user, pg.controldata(self.bin_dir, str(data_dir or self.data_dir)))
        return pg.parse_controldata(runner.run(argv, mutating=False).stdout)

    def running(self, runner: Runner) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        r = runner.run(pg.as_user(self.os_user, pg.pg_ctl(self.bin_dir, "status", str(self.data_dir))),
                       mutating=False, check=False)
        return r.rc == 0

    def sql(self, runner: Runner, sql: str, mutating: bool = True) -> str:
        argv = pg.psql(self.bin_dir, str(self.socket_dir), self.port, self.user, self.dbname, sql)
        return runner.run(pg.as_user(self.os_user, argv), mutating=mutating).stdout.strip()

    def wait_promoted(self, runner: Runner, timeout: float = 300) -> None:
        what = f"the restored cluster in {self.data_dir} to finish recovery and promote"

        def check() -> tuple[bool, str]:
            try:
                return self.sql(runner, "SELECT pg_is_in_recovery()", mutating=False) == "f", "still in recovery"
            except OperationFailed as exc:
                if not self.running(runner):  # it stopped: waiting longer will not help
                    raise OperationFailed(f"gave up waiting for {what}: the server stopped ({exc})") from None
                return False, str(exc)

        def poll() -> None:
            try:
                wait.until(what, check, timeout=timeout)
            except OperationFailed as exc:
                tail = Path(self.log).read_text().strip().splitlines()[-3:] if Path(self.log).exists() else []
                raise OperationFailed(f"{exc}; log: {' | '.join(tail)}") from None

        runner.call(f"wait until the cluster in {self.data_dir} has recovered and promoted", poll)
