"""THE one place side effects happen: local commands, pipelines, remote commands (fabric), docker SDK
calls, state-changing HTTP and file writes all pass through a Runner.

A command is an argv list built by a pure function in iosops.commands. Elements may be `Secret`s: they
print as *** and are revealed only at execution. In dry-run, mutating actions are recorded and printed
in order and never executed; read-only probes still run (marked "read"), as pyinfra gathers facts.
"""
from __future__ import annotations

import os
import shlex
import subprocess  # nosec B404 # the runner is the one place commands run: argv lists, never a shell
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from .errors import IosopsError, OperationFailed
from .secrets import Secret, redact

Arg = Union[str, Secret]


def display(argv: Sequence[Arg]) -> str:
    """The argv exactly as a shell would take it, secrets masked."""
    return shlex.join(str(a) for a in argv)


def brief(argv: Sequence[Arg]) -> str:
    """display() for an error line: an inline program (`python3 -c`, `sh -c` with several lines) is shown
    as `<N-line script>`, so a failure names the command without printing its source."""
    def short(a: Arg) -> str:
        text = str(a).strip()
        return f"<{text.count(chr(10)) + 1}-line script>" if "\n" in text else str(a)
    return shlex.join(short(a) for a in argv)


def reveal(argv: Sequence[Arg]) -> list[str]:
    return [a.get() if isinstance(a, Secret) else str(a) for a in argv]


@dataclass
class Result:
    rc: int = 0
    stdout: str = ""
    stderr: str = ""
    dry_run: bool = False
    value: Any = None

    @property
    def ok(self) -> bool:
        return self.rc == 0


@dataclass
class Action:
    kind: str  # run | pipe | call | http | write
    text: str
    mutating: bool
    host: str = "local"

    def __str__(self) -> str:
        where = "" if self.host == "local" else f"[{self.host}] "
        return f"{where}{self.text}" if self.mutating else f"{where}{self.text}  # read"


def error_line(text: str) -> str:
    """The most telling line of a tool's stderr: the last "error:"/"fatal:" line, else the last line."""
    lines = [l for l in text.strip().splitlines() if l.strip()]
    marked = [l for l in lines if "error:" in l.lower() or "fatal:" in l.lower()]
    return (marked or lines or [""])[-1]


class CommandFailed(OperationFailed):
    def __init__(self, text: str, result: Result):
        line = error_line(result.stderr or result.stdout)
        detail = f": {redact(line)}" if line else ""
        super().__init__(f"command failed (exit {result.rc}): {text}{detail}")
        self.result = result


def not_installed(program: Arg) -> OperationFailed:
    return OperationFailed(f"{program} is not installed or not on PATH; run scripts/bootstrap.sh")


def _say_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Runner:
    dry_run: bool = False
    verbose: bool = False
    say: Callable[[str], None] = _say_stderr
    actions: list[Action] = field(default_factory=list)
    # Tests replace this to prove what ran; signature (argv, **kwargs) -> Result.
    executor: Optional[Callable[..., Result]] = None
    # Dry-run plan lines are the output of a dry-run: stdout, unless stdout carries --json.
    plan_to_stdout: bool = True

    # -- bookkeeping -------------------------------------------------------------------------------
    def _record(self, kind: str, text: str, mutating: bool, host: str = "local") -> Action:
        action = Action(kind, redact(text), mutating, host)
        self.actions.append(action)
        if self.dry_run:
            line = f"[dry-run] {action}"
            print(line, flush=True) if self.plan_to_stdout else self.say(line)
        elif self.verbose:
            self.say(f"$ {action}")
        return action

    def skip(self, mutating: bool) -> bool:
        return self.dry_run and mutating

    def info(self, message: str) -> None:
        self.say(redact(message))

    # -- local commands ----------------------------------------------------------------------------
    def run(self, argv: Sequence[Arg], *, mutating: bool = True, check: bool = True,
            env: Optional[Mapping[str, Union[str, Secret]]] = None, input: Optional[str] = None,
            cwd: Optional[Path] = None, timeout: Optional[float] = None, stream: bool = False) -> Result:
        prefix = ""
        if env:  # show which variables are passed, values masked when secret
            prefix = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items()) + " "
        text = prefix + display(argv)
        self._record("run", text, mutating)
        if self.skip(mutating):
            return Result(dry_run=True)
        full_env = None
        if env:
            full_env = {**os.environ, **{k: v.get() if isinstance(v, Secret) else str(v) for k, v in env.items()}}
        if self.executor is not None:
            result = self.executor(argv, env=full_env, input=input, cwd=cwd, timeout=timeout)
        elif stream:
            result = self._stream(reveal(argv), full_env, cwd, timeout)
        else:
            try:
                proc = subprocess.run(reveal(argv), capture_output=True, text=True, env=full_env, input=input,  # nosec B603 # argv list from iosops.commands, shell=False; that is the runner's job
                                      cwd=cwd, timeout=timeout)
            except FileNotFoundError:
                raise not_installed(argv[0]) from None
            except subprocess.TimeoutExpired:
                raise OperationFailed(f"timed out after {timeout}s: {redact(prefix + brief(argv))}") from None
            result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and result.rc != 0:
            raise CommandFailed(redact(prefix + brief(argv)), result)
        return result

    def _stream(self, argv: list[str], env, cwd, timeout) -> Result:
        lines: list[str] = []
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)  # nosec B603 # argv list from iosops.commands, shell=False; that is the runner's job
        except FileNotFoundError:
            raise not_installed(argv[0]) from None
        assert proc.stdout is not None  # nosec B101 # type narrowing: stdout=PIPE guarantees proc.stdout
        for line in proc.stdout:
            lines.append(line)
            # Blank lines and one-line JSON answers (parsed by the caller, e.g. the ops container's) are
            # not progress: keep them out of what people read.
            if line.strip() and not line.lstrip().startswith('{"'):
                self.say("  " + redact(line.rstrip()))
        rc = proc.wait(timeout=timeout)
        return Result(rc, "".join(lines), "")

    def pipe(self, *argvs: Sequence[Arg], mutating: bool = True, check: bool = True) -> Result:
        """A local pipeline `a | b | c` (plumbum); fails if any stage fails."""
        text = " | ".join(display(a) for a in argvs)
        self._record("pipe", text, mutating)
        if self.skip(mutating):
            return Result(dry_run=True)
        from plumbum import local
        from plumbum.commands.processes import ProcessExecutionError

        chain = None
        for argv in argvs:
            real = reveal(argv)
            cmd = local[real[0]][real[1:]]
            chain = cmd if chain is None else chain | cmd
        try:
            rc, out, err = chain.run(retcode=None)
        except ProcessExecutionError as exc:  # plumbum raises for an inner stage's failure
            rc, out, err = exc.retcode, exc.stdout, exc.stderr
        result = Result(rc if isinstance(rc, int) else max(rc), out, err)
        if check and result.rc != 0:
            raise CommandFailed(redact(" | ".join(brief(a) for a in argvs)), result)
        return result

    def stream(self, *argvs: Sequence[Arg], source: Any = None, sink: Optional[Callable[[Any], Any]] = None,
               stdout_path: Optional[Path] = None, target: str = "", mutating: bool = True,
               env: Optional[Mapping[str, Union[str, Secret]]] = None) -> Result:
        """A streaming pipeline `a | b | c`, without temporary copies: `source` (a file object) is pumped
        into the first stage, and the last stage's stdout goes to `sink(fileobj)` (its return value is
        Result.value) or to `stdout_path`. Every stage's exit code is checked; on any failure all stages
        are killed. `target` names where the bytes go, for the plan (e.g. "store://backups/x").
        """
        text = " | ".join(display(a) for a in argvs)
        if source is not None:
            text = f"<{getattr(source, 'name', 'stream')}> | {text}"
        if target or stdout_path:
            text += f" > {target or stdout_path}"
        self._record("stream", text, mutating)
        if self.skip(mutating):
            return Result(dry_run=True)
        import threading

        full_env = None
        if env:
            full_env = {**os.environ, **{k: v.get() if isinstance(v, Secret) else str(v) for k, v in env.items()}}
        procs: list[subprocess.Popen] = []
        errs = [tempfile.TemporaryFile() for _ in argvs]
        out_fh = open(stdout_path, "wb") if stdout_path else None
        pump_error: list[BaseException] = []
        try:
            prev = subprocess.PIPE if source is not None else subprocess.DEVNULL
            for i, argv in enumerate(argvs):
                last = i == len(argvs) - 1
                stdout = (out_fh if out_fh else (subprocess.PIPE if sink else subprocess.DEVNULL)) if last else subprocess.PIPE
                try:
                    p = subprocess.Popen(reveal(argv), stdin=prev, stdout=stdout, stderr=errs[i], env=full_env)  # nosec B603 # argv list from iosops.commands, shell=False; that is the runner's job
                except FileNotFoundError:
                    raise not_installed(argv[0]) from None
                if procs and procs[-1].stdout:
                    procs[-1].stdout.close()  # the next stage owns it now (SIGPIPE propagates)
                procs.append(p)
                prev = p.stdout if not last else None

            def pump() -> None:
                try:
                    while chunk := source.read(1 << 20):
                        procs[0].stdin.write(chunk)
                except BrokenPipeError:
                    pass  # the stage exited early; its exit code tells why
                except BaseException as exc:  # a failed download must fail the pipeline, not hang it
                    pump_error.append(exc)
                finally:
                    try:
                        procs[0].stdin.close()
                    except BrokenPipeError:
                        pass

            pumper = threading.Thread(target=pump, daemon=True) if source is not None else None
            if pumper:
                pumper.start()
            value = sink(procs[-1].stdout) if sink else None
            if pumper:
                pumper.join()
            rcs = [p.wait() for p in procs]
        except BaseException:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            for p in procs:
                p.wait()
            raise
        finally:
            if out_fh:
                out_fh.close()
        if pump_error:
            exc = pump_error[0]
            raise exc if isinstance(exc, OperationFailed) else OperationFailed(
                f"input stream failed: {type(exc).__name__}: {redact(str(exc))}")
        for argv, rc, err in zip(argvs, rcs, errs, strict=True):
            if rc != 0:
                err.seek(0)
                raise CommandFailed(redact(brief(argv)), Result(rc, "", err.read().decode(errors="replace")))
        stderr_texts = []
        for err in errs:
            err.seek(0)
            stderr_texts.append(err.read().decode(errors="replace"))
            err.close()
        return Result(0, "", "\n".join(stderr_texts), value=value)

    # -- everything that is not a command ------------------------------------------------------------
    def call(self, text: str, fn: Callable[..., Any], *args: Any, mutating: bool = True, **kwargs: Any) -> Result:
        """A docker SDK (or other library) call; `text` says exactly what it does."""
        self._record("call", text, mutating)
        if self.skip(mutating):
            return Result(dry_run=True)
        return Result(value=fn(*args, **kwargs))

    def http(self, method: str, url: str, *, json: Any = None, headers: Optional[Mapping[str, str]] = None,
             timeout: float = 10.0, mutating: Optional[bool] = None) -> Result:
        mutating = method.upper() not in ("GET", "HEAD") if mutating is None else mutating
        self._record("http", f"{method.upper()} {url}", mutating)
        if self.skip(mutating):
            return Result(dry_run=True)
        import requests

        resp = requests.request(method, url, json=json, headers=dict(headers or {}), timeout=timeout)
        return Result(0 if resp.ok else resp.status_code, resp.text, "", value=resp)

    def write_file(self, path: Path, content: str, mode: int = 0o644) -> Result:
        """Atomic write (temp file + rename): readers never see half a file."""
        self._record("write", f"write {path} ({len(content.encode())} bytes, mode {mode:o})", True)
        if self.dry_run:
            return Result(dry_run=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(content)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Result()

    def plan(self) -> list[str]:
        return [str(a) for a in self.actions if a.mutating]


@dataclass
class SSHHost:
    host: str
    port: int = 22
    user: str = "deploy"
    key_filename: Optional[str] = None
    # The env's trusted host keys (iosops.hosts.known_hosts.KnownHosts). Without it every key is
    # unknown: a connection is never made to an unchecked host.
    known_hosts: Any = None

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def remote_command(argv: Sequence[Arg], env: Optional[Mapping[str, Union[str, Secret]]] = None,
                   cwd: Optional[Path] = None) -> str:
    """The shell line sent over SSH. Variables are exported by the remote shell, which then `exec`s the
    command, so values never sit in a long-lived process's argv (secrets prefer files on hosts anyway)."""
    parts = []
    if cwd:
        parts.append(f"cd {shlex.quote(str(cwd))}")
    for k, v in (env or {}).items():
        parts.append(f"export {k}={shlex.quote(v.get() if isinstance(v, Secret) else str(v))}")
    parts.append("exec " + shlex.join(reveal(argv)) if parts else shlex.join(reveal(argv)))
    return " && ".join(parts)


class RemoteRunner(Runner):
    """Runs argv on an SSH host through fabric; shares the recorded plan with its parent runner."""

    def __init__(self, parent: Runner, host: SSHHost, connect_timeout: float = 10.0):
        super().__init__(dry_run=parent.dry_run, verbose=parent.verbose, say=parent.say,
                         actions=parent.actions, executor=parent.executor, plan_to_stdout=parent.plan_to_stdout)
        self.host = host
        self.connect_timeout = connect_timeout
        self._conn = None

    def _record(self, kind: str, text: str, mutating: bool, host: str = "local") -> Action:
        return super()._record(kind, text, mutating, host=str(self.host))

    def connection(self):
        """The open fabric connection; the host key is checked against the env's known_hosts file first
        (HostKeyRefused, a BadInput, for an unknown or changed key: nothing runs)."""
        if self._conn is None:
            from fabric import Connection

            from .hosts.known_hosts import HostKeyRefused, host_id

            kwargs: dict[str, Any] = {"look_for_keys": False, "allow_agent": False}
            if self.host.key_filename:
                kwargs["key_filename"] = self.host.key_filename
            conn = Connection(self.host.host, port=self.host.port, user=self.host.user,
                              connect_timeout=self.connect_timeout, connect_kwargs=kwargs)
            if self.host.known_hosts is None:
                raise HostKeyRefused(f"ssh {self.host}: no known_hosts file to check its host key against; "
                                     "refusing to connect unchecked")
            self.host.known_hosts.open_checked(conn.client, host_id(self.host.host, self.host.port), conn.open)
            self._conn = conn
        return self._conn

    def run(self, argv: Sequence[Arg], *, mutating: bool = True, check: bool = True,
            env: Optional[Mapping[str, Union[str, Secret]]] = None, input: Optional[str] = None,
            cwd: Optional[Path] = None, timeout: Optional[float] = None, stream: bool = False) -> Result:
        text = display(argv)
        self._record("run", text, mutating)
        if self.skip(mutating):
            return Result(dry_run=True)
        if self.executor is not None:
            result = self.executor(argv, host=str(self.host), input=input, timeout=timeout)
        else:
            cmd = remote_command(argv, env, cwd)
            try:
                if input is not None:
                    result = self._exec_with_input(cmd, input, timeout)
                else:
                    res = self.connection().run(cmd, hide=True, warn=True, timeout=timeout, in_stream=False)
                    result = Result(res.return_code, res.stdout, res.stderr)
            except IosopsError:  # an unknown or changed host key: already one clear line
                raise
            except Exception as exc:  # paramiko/socket errors: name the host, not a traceback
                raise OperationFailed(f"ssh {self.host}: {type(exc).__name__}: {redact(str(exc))}") from None
        if check and result.rc != 0:
            raise CommandFailed(f"[{self.host}] {redact(brief(argv))}", result)
        return result

    def _exec_with_input(self, cmd: str, data: str, timeout: Optional[float]) -> Result:
        """stdin through paramiko's channel, then EOF. (invoke's in_stream feeds a file object one byte
        per 10 ms: a 15 KB compose file took 150 s to reach a host.)"""
        client = self.connection().client
        stdin, stdout, stderr = client.exec_command(cmd, timeout=timeout)
        stdin.write(data.encode())
        stdin.flush()
        stdin.channel.shutdown_write()
        out = stdout.read().decode(errors="replace")
        err = stderr.read().decode(errors="replace")
        return Result(stdout.channel.recv_exit_status(), out, err)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
