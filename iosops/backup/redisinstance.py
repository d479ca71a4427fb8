"""A Redis server this tool manages on the host (drills, local restores)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .. import wait
from ..commands import redis as rc
from ..runner import Runner


@dataclass
class RedisInstance:
    dir: Path
    port: int

    @property
    def rdb(self) -> Path:
        return self.dir / "dump.rdb"

    def start(self, runner: Runner, extra: Sequence[str] = (), timeout: float = 30) -> None:
        """Start on 127.0.0.1 with the RDB in `dir` (loaded if present), no persistence of its own; wait
        until it answers PING (a server still loading its RDB answers LOADING, not PONG)."""
        if not runner.dry_run:
            self.dir.mkdir(parents=True, exist_ok=True)
        runner.run(rc.server_loader(self.port, str(self.dir), extra))
        self.wait(runner, timeout)

    def wait(self, runner: Runner, timeout: float = 30) -> None:
        def check() -> tuple[bool, str]:
            r = runner.run(rc.local_cli(self.port, "PING"), mutating=False, check=False)
            return r.stdout.strip() == "PONG", (r.stdout or r.stderr).strip()

        def poll() -> None:
            wait.until(f"redis on port {self.port} to answer PING", check, timeout=timeout)

        runner.call(f"wait until redis on 127.0.0.1:{self.port} answers PING", poll)

    def stop(self, runner: Runner) -> None:
        """SHUTDOWN NOSAVE: the RDB on disk is what a restore just put there, keep it."""
        runner.run(rc.local_cli(self.port, "SHUTDOWN", "NOSAVE"), check=False)

        def gone() -> None:
            try:
                wait.ready(f"redis on port {self.port} to stop",
                           lambda: runner.run(rc.local_cli(self.port, "PING"), mutating=False,
                                              check=False).rc != 0, timeout=15)
            except wait.WaitTimeout:
                pass  # as before: a server slow to exit is not worth failing the restore over

        runner.call(f"wait until redis on port {self.port} is down", gone)
