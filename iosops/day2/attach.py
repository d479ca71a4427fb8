"""Commands whose output is not captured but passed on while they run: followed logs (lines as they
come, from every host at once, until Ctrl-C) and interactive sessions (a person at a terminal: exec,
psql). Each is recorded through its host's runner (`runner.call`, read in a dry-run plan like any other
action); the local process or the SSH channel is opened here because the runner only captures output.
Under a test's scripted executor the command goes to the executor instead (its output replayed)."""
from __future__ import annotations

import os
import signal
import subprocess  # nosec B404 # argv lists from iosops.commands, shell=False; see the module docstring
import sys
import threading
from typing import Callable, Optional, Sequence

from ..errors import IosopsError, OperationFailed
from ..runner import Arg, Runner, display, remote_command, reveal
from ..secretref import redact


class _Lines:
    """A file-like sink for fabric's out_stream: complete lines go to `sink`."""

    def __init__(self, sink: Callable[[str], None]):
        self.sink, self.buf = sink, ""

    def write(self, data: str) -> None:
        self.buf += data
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            self.sink(line.rstrip("\r"))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self.buf:
            self.sink(self.buf.rstrip("\r"))
            self.buf = ""


class Stream:
    """One command's output, line by line, to `sink` (in a thread of its own); stop() ends it."""

    def __init__(self, runner: Runner, argv: Sequence[Arg], sink: Callable[[str], None]):
        self.runner, self.argv, self.sink = runner, list(argv), sink
        self.proc: Optional[subprocess.Popen] = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: Optional[str] = None
        self._stopped = threading.Event()

    def start(self) -> "Stream":
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self.runner.call(f"stream: {display(self.argv)}", self._pump, mutating=False)
        except Exception as exc:  # an SSH error or a missing tool ends this host's stream, not the others
            if not self._stopped.is_set():
                self.error = f"{type(exc).__name__}: {exc}"

    def _pump(self) -> None:
        r = self.runner
        if r.executor is not None:
            res = r.run(self.argv, mutating=False, check=False)
            for line in res.stdout.splitlines():
                self.sink(line)
            return
        if r.remote is not None:
            out = _Lines(self.sink)
            # pty: closing the channel (stop) hangs the remote command up, so nothing stays behind.
            r.connection().run(remote_command(self.argv), hide=True, warn=True, pty=True, out_stream=out,
                               in_stream=False)
            out.close()
            return
        self.proc = subprocess.Popen(reveal(self.argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # nosec B603 # argv list from iosops.commands, shell=False
                                     stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        assert self.proc.stdout is not None  # nosec B101 # type narrowing: stdout=PIPE guarantees it
        for line in self.proc.stdout:
            self.sink(line.rstrip("\n"))
        self.proc.wait()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self._stopped.set()
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the whole group: the script and its `docker logs`
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.runner.remote is not None and self.runner.executor is None:
            self.runner.close()
        self.thread.join(timeout=5)


def interactive(runner: Runner, argv: Sequence[Arg]) -> int:
    """Run with this process's terminal attached (stdin, stdout, stderr); the command's exit code."""
    if runner.executor is not None:
        res = runner.run(argv, check=False)
        sys.stdout.write(res.stdout)
        return res.rc

    def attached() -> int:
        if runner.remote is not None:
            try:
                res = runner.connection().run(remote_command(argv), pty=True, warn=True)
            except IosopsError:  # an unknown or changed host key: already one clear line
                raise
            except Exception as exc:  # paramiko/socket errors: name the host, not a traceback
                raise OperationFailed(f"ssh {runner.host}: {type(exc).__name__}: {redact(str(exc))}") from None
            return res.return_code
        return subprocess.run(reveal(argv), check=False).returncode  # nosec B603 # argv list from iosops.commands, shell=False

    return runner.call(f"attached: {display(argv)}", attached).value or 0
