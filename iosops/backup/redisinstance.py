"""A Redis server this tool manages on the host (drills, local restores)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import OperationFailed
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
        runner.run(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                    "--dbfilename", "dump.rdb", "--daemonize", "yes", "--pidfile", str(self.dir / "redis.pid"),
                    "--logfile", str(self.dir / "redis.log"), "--save", "", "--appendonly", "no", *extra])
        self.wait(runner, timeout)

    def wait(self, runner: Runner, timeout: float = 30) -> None:
        def poll() -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                r = runner.run(["redis-cli", "-p", str(self.port), "PING"], mutating=False, check=False)
                if r.stdout.strip() == "PONG":
                    return
                time.sleep(0.1)
            raise OperationFailed(f"redis on port {self.port} did not answer PING within {timeout:.0f}s")

        runner.call(f"wait until redis on 127.0.0.1:{self.port} answers PING", poll)

    def stop(self, runner: Runner) -> None:
        """SHUTDOWN NOSAVE: the RDB on disk is what a restore just put there, keep it."""
        runner.run(["redis-cli", "-p", str(self.port), "SHUTDOWN", "NOSAVE"], check=False)

        def gone() -> None:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if runner.run(["redis-cli", "-p", str(self.port), "PING"], mutating=False, check=False).rc != 0:
                    return
                time.sleep(0.1)

        runner.call(f"wait until redis on port {self.port} is down", gone)
