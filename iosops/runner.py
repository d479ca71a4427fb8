"""THE one place side effects happen: local commands, pipelines, remote commands (fabric), docker SDK
calls, state-changing HTTP and file operations are all `Action`s, and every one goes through
`Runner.execute`.

A command is an argv list built by a pure function in iosops.commands. Elements may be `Secret`s: they
print as *** and are revealed only at execution. In dry-run, mutating actions are recorded and printed
in order and never executed; read-only probes (`Runner.probe`, `probe_call`, GET/HEAD) still run (marked
"read"), as pyinfra gathers facts: their results are always real, so nothing branches on a probe's
`dry_run`.

Where an action runs is the runner's `remote`: None for this machine, an `SSHRemote` (fabric) for an
SSH host. `runner.on(host)` is the same runner (same plan, same executor) holding that host's transport;
commands, file writes and pipelines then happen on the host.

Tests script the world with `executor`: one function for every kind of action, `executor(action)` ->
Result, or None to let the runner perform that action for real (`by_argv` adapts a function of argv).

Local pipelines (`pipe`, `stream`) have one engine here, on subprocess, not plumbum: plumbum snapshots the
environment when it is imported (a test's or a task's later change is not seen), cannot take a Python stream
(boto3's download body) as a stage's stdin, and reports only the last stage's failure; this engine feeds a
stream, keeps every stage's exit code and names the first that failed.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess  # nosec B404 # the runner is the one place commands run: argv lists, never a shell
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Callable, Mapping, NewType, Optional, Sequence, Union

from .commands import host as hc
from .errors import IosopsError, OperationFailed
from .secretref import Secret, redact

Arg = Union[str, Secret]
Env = Optional[Mapping[str, Union[str, Secret]]]


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


def _env_prefix(env: Env) -> str:
    """Which variables are passed, values masked when secret."""
    return " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items()) + " " if env else ""


def _full_env(env: Env) -> Optional[dict[str, str]]:
    if not env:
        return None
    return {**os.environ, **{k: v.get() if isinstance(v, Secret) else str(v) for k, v in env.items()}}


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


KINDS = ("run", "pipe", "stream", "call", "http", "write", "mkdir", "rename", "remove")


@dataclass(frozen=True)
class Step:
    """What the plan keeps of an action: its kind, its text (secrets masked), whether it changes
    anything, and where. Never the payload (file contents, stdin, functions, streams)."""
    kind: str
    text: str
    mutating: bool
    host: str = "local"

    def __str__(self) -> str:
        where = "" if self.host == "local" else f"[{self.host}] "
        return f"{where}{self.text}" if self.mutating else f"{where}{self.text}  # read"


@dataclass(eq=False, repr=False)
class Action:
    """One side effect (or read-only probe), as data: what it is (`kind`), what it shows (`text`, secrets
    masked), whether it changes anything (`mutating`), where (`host`), and what it needs to be done."""
    kind: str  # one of KINDS
    text: str
    mutating: bool = True
    host: str = "local"
    check: bool = False  # a non-zero rc raises CommandFailed naming `failure`
    failure: str = ""
    # run (and, on an SSH host, the command a file operation sends)
    argv: Sequence[Arg] = ()
    env: Env = None
    input: Optional[str] = None
    cwd: Optional[Path] = None
    timeout: Optional[float] = None
    live: bool = False  # run: print the output's lines as they come
    # pipe, stream
    argvs: tuple[Sequence[Arg], ...] = ()
    source: Any = None
    sink: Optional[Callable[[Any], Any]] = None
    stdout_path: Optional[Path] = None
    # call
    fn: Optional[Callable[..., Any]] = None
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    # http
    method: str = ""
    url: str = ""
    json: Any = None
    headers: Optional[Mapping[str, str]] = None
    # write, mkdir, rename, remove
    path: Optional[PurePath] = None
    content: str = ""
    mode: int = 0o644
    dest: Optional[PurePath] = None

    def step(self) -> Step:
        return Step(self.kind, self.text, self.mutating, self.host)

    def __str__(self) -> str:
        return str(self.step())

    def __repr__(self) -> str:  # the payload may hold revealed secrets (file contents, stdin): never shown
        return f"Action({self.kind!r}, {str(self)!r})"


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


# The command a file operation sends to an SSH host: write atomically (temp file + rename), like locally.
def put_argv(path: PurePath, mode: int) -> list[str]:
    """How a write reaches an SSH host: the one atomic-put builder (commands/host.py)."""
    return hc.put(str(path), mode)


Executor = Callable[[Action], Optional[Result]]


def by_argv(fn: Callable[..., Result]) -> Executor:
    """An executor from a function of (argv, **kw) that scripts commands: it gets every action that is a
    command (a run; on an SSH host also what a write, mkdir, rename or remove sends), with env/input/cwd/
    timeout locally and host/input/timeout on an SSH host; every other action is performed for real."""
    def executor(action: Action) -> Optional[Result]:
        if not action.argv:
            return None
        if action.host == "local":
            return fn(action.argv, env=_full_env(action.env), input=action.input, cwd=action.cwd,
                      timeout=action.timeout)
        return fn(action.argv, host=action.host, input=action.input, timeout=action.timeout)
    executor.scripts = fn  # type: ignore[attr-defined]
    return executor


@dataclass
class Runner:
    dry_run: bool = False
    verbose: bool = False
    say: Callable[[str], None] = _say_stderr
    actions: list[Step] = field(default_factory=list)  # every action so far, in order (the plan: mutating ones)
    # Tests replace this to prove what ran: executor(action) -> Result, or None to perform it for real.
    executor: Optional[Executor] = None
    # Dry-run plan lines are the output of a dry-run: stdout, unless stdout carries --json.
    plan_to_stdout: bool = True
    # Where actions run: None for this machine, else the SSH host's transport (see `on`).
    remote: Optional["SSHRemote"] = None

    # -- where -------------------------------------------------------------------------------------------
    def on(self, host: "SSHHost", connect_timeout: float = 10.0) -> "Runner":
        """This runner (same plan, flags and executor) acting on an SSH host."""
        return dataclasses.replace(self, remote=SSHRemote(host, connect_timeout))

    def quiet(self) -> "Runner":
        """This runner (same plan, flags, executor and host) without progress lines."""
        return dataclasses.replace(self, say=lambda line: None, verbose=False)

    @property
    def host(self) -> Optional["SSHHost"]:
        return self.remote.host if self.remote else None

    @property
    def where(self) -> str:
        return str(self.remote.host) if self.remote else "local"

    def connection(self):
        """The open fabric connection of the SSH host (host key checked first)."""
        if self.remote is None:
            raise OperationFailed("this runner acts on this machine: it has no SSH connection")
        return self.remote.connection()

    def close(self) -> None:
        if self.remote is not None:
            self.remote.close()

    # -- the one execution path --------------------------------------------------------------------------
    def execute(self, action: Action) -> Result:
        """Record the action; in dry-run skip it if it changes anything; else perform it (through the
        executor when tests set one, else on this machine or the SSH host)."""
        if action.kind not in KINDS:
            raise ValueError(f"unknown action kind {action.kind!r}")
        action.host = self.where
        action.text = redact(action.text)
        self._record(action)
        if self.dry_run and action.mutating:
            return Result(dry_run=True)
        result = self.executor(action) if self.executor is not None else None
        if result is None:
            result = (self.remote or LOCAL).perform(action, self)
        if action.check and result.rc != 0:
            raise CommandFailed(action.failure or action.text, result)
        return result

    def _record(self, action: Action) -> None:
        step = action.step()
        self.actions.append(step)
        if self.dry_run:
            line = f"[dry-run] {step}"
            print(line, flush=True) if self.plan_to_stdout else self.say(line)
        elif self.verbose:
            self.say(f"$ {step}")

    def skip(self, mutating: bool) -> bool:
        return self.dry_run and mutating

    def info(self, message: str) -> None:
        self.say(redact(message))

    def plan(self) -> list[str]:
        return [str(a) for a in self.actions if a.mutating]

    # -- commands ----------------------------------------------------------------------------------------
    def _failure(self, text: str) -> str:
        return redact(text) if self.remote is None else f"[{self.where}] {redact(text)}"

    def run(self, argv: Sequence[Arg], *, mutating: bool = True, check: bool = True, env: Env = None,
            input: Optional[str] = None, cwd: Optional[Path] = None, timeout: Optional[float] = None,
            stream: bool = False) -> Result:
        prefix = _env_prefix(env)
        return self.execute(Action("run", prefix + display(argv), mutating, check=check,
                                   failure=self._failure((prefix if self.remote is None else "") + brief(argv)),
                                   argv=argv, env=env, input=input, cwd=cwd, timeout=timeout, live=stream))

    def probe(self, argv: Sequence[Arg], *, check: bool = True, env: Env = None, input: Optional[str] = None,
              cwd: Optional[Path] = None, timeout: Optional[float] = None) -> Result:
        """A read-only command: runs in dry-run too (marked "read"), so its result is always real."""
        return self.run(argv, mutating=False, check=check, env=env, input=input, cwd=cwd, timeout=timeout)

    def pipe(self, *argvs: Sequence[Arg], mutating: bool = True, check: bool = True) -> Result:
        """A pipeline `a | b | c` whose output is captured; fails if any stage fails."""
        return self.execute(Action("pipe", " | ".join(display(a) for a in argvs), mutating, check=check,
                                   failure=self._failure(" | ".join(brief(a) for a in argvs)), argvs=argvs))

    def stream(self, *argvs: Sequence[Arg], source: Any = None, sink: Optional[Callable[[Any], Any]] = None,
               stdout_path: Optional[Path] = None, target: str = "", mutating: bool = True,
               env: Env = None) -> Result:
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
        return self.execute(Action("stream", text, mutating, argvs=argvs, source=source, sink=sink,
                                   stdout_path=stdout_path, env=env))

    # -- everything that is not a command ----------------------------------------------------------------
    def call(self, text: str, fn: Callable[..., Any], *args: Any, mutating: bool = True, **kwargs: Any) -> Result:
        """A docker SDK (or other library) call; `text` says exactly what it does."""
        return self.execute(Action("call", text, mutating, fn=fn, args=args, kwargs=kwargs))

    def probe_call(self, text: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Result:
        """A read-only library call: runs in dry-run too."""
        return self.call(text, fn, *args, mutating=False, **kwargs)

    def http(self, method: str, url: str, *, json: Any = None, headers: Optional[Mapping[str, str]] = None,
             timeout: float = 10.0, mutating: Optional[bool] = None) -> Result:
        mutating = method.upper() not in ("GET", "HEAD") if mutating is None else mutating
        return self.execute(Action("http", f"{method.upper()} {url}", mutating, method=method, url=url, json=json,
                                   headers=headers, timeout=timeout))

    def _file_op(self, kind: str, text: str, path: PurePath, argv: Sequence[Arg], check: bool = True,
                 **kw: Any) -> Result:
        # On an SSH host the operation is a command (shown as the file operation, sent as `argv`). A local
        # one that fails is rc 1 with the OSError as stderr: CommandFailed when checked.
        return self.execute(Action(kind, text, True, check=check, path=path,
                                   argv=argv if self.remote else (),
                                   failure=self._failure(text), **kw))

    def write_file(self, path: PurePath, content: str, mode: int = 0o644) -> Result:
        """Atomic write (temp file + rename): readers never see half a file."""
        return self._file_op("write", f"write {path} ({len(content.encode())} bytes, mode {mode:o})", path,
                             put_argv(path, mode), content=content, mode=mode, input=content)

    def mkdir(self, path: PurePath, mode: int = 0o755) -> Result:
        """A directory and its parents (no change if it exists)."""
        return self._file_op("mkdir", f"mkdir -p -m {mode:o} {path}", path,
                             hc.mkdir_mode(str(path), mode), mode=mode)

    def rename(self, path: PurePath, dest: PurePath) -> Result:
        """Move a file or directory (same file system: instant)."""
        return self._file_op("rename", f"mv {path} {dest}", path, hc.move(str(path), str(dest)), dest=dest)

    def remove(self, path: PurePath, best_effort: bool = False) -> Result:
        """Delete a file or a whole directory tree (no change if it is not there). best_effort: a failure
        is only the result's rc (clean-up that must not hide the error being reported)."""
        return self._file_op("remove", f"rm -rf {path}", path, hc.remove_tree(str(path)), check=not best_effort)


# `RemoteRunner` is a Runner holding an SSHRemote (`runner.on(host)`), named for annotations.
RemoteRunner = NewType("RemoteRunner", Runner)


# -- this machine -------------------------------------------------------------------------------------------
class LocalSide:
    """Performs actions on this machine. Commands: subprocess with argv lists (never a shell); every
    pipeline (`pipe`, `stream`) goes through one engine, `_pipeline`."""

    def perform(self, a: Action, runner: Runner) -> Result:
        if a.kind in ("write", "mkdir", "rename", "remove"):
            try:
                return getattr(self, a.kind)(a, runner)
            except OSError as exc:
                return Result(1, "", f"error: {exc}")
        return getattr(self, a.kind)(a, runner)

    def run(self, a: Action, runner: Runner) -> Result:
        env = _full_env(a.env)
        if a.live:
            return self._live(reveal(a.argv), env, a.cwd, a.timeout, runner)
        try:
            proc = subprocess.run(reveal(a.argv), capture_output=True, text=True, env=env, input=a.input,  # nosec B603 # argv list from iosops.commands, shell=False; that is the runner's job
                                  cwd=a.cwd, timeout=a.timeout)
        except FileNotFoundError:
            raise not_installed(a.argv[0]) from None
        except subprocess.TimeoutExpired:
            raise OperationFailed(f"timed out after {a.timeout}s: {a.failure}") from None
        return Result(proc.returncode, proc.stdout, proc.stderr)

    @staticmethod
    def _live(argv: list[str], env, cwd, timeout, runner: Runner) -> Result:
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
                runner.say("  " + redact(line.rstrip()))
        rc = proc.wait(timeout=timeout)
        return Result(rc, "".join(lines), "")

    def pipe(self, a: Action, runner: Runner) -> Result:
        rcs, out, errs = _pipeline(a.argvs, sink=lambda f: f.read())
        failed = [i for i, rc in enumerate(rcs) if rc != 0]
        i = failed[0] if failed else len(rcs) - 1
        return Result(rcs[i], out.decode(errors="replace"), errs[i])

    def stream(self, a: Action, runner: Runner) -> Result:
        rcs, value, errs = _pipeline(a.argvs, source=a.source, sink=a.sink, stdout_path=a.stdout_path,
                                     env=_full_env(a.env))
        for argv, rc, err in zip(a.argvs, rcs, errs, strict=True):
            if rc != 0:
                raise CommandFailed(redact(brief(argv)), Result(rc, "", err))
        return Result(0, "", "\n".join(errs), value=value)

    def call(self, a: Action, runner: Runner) -> Result:
        assert a.fn is not None  # nosec B101 # type narrowing: a call action carries its function
        return Result(value=a.fn(*a.args, **a.kwargs))

    def http(self, a: Action, runner: Runner) -> Result:
        import requests

        resp = requests.request(a.method, a.url, json=a.json, headers=dict(a.headers or {}), timeout=a.timeout)
        return Result(0 if resp.ok else resp.status_code, resp.text, "", value=resp)

    def write(self, a: Action, runner: Runner) -> Result:
        path = Path(a.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(a.content)
            os.chmod(tmp, a.mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Result()

    def mkdir(self, a: Action, runner: Runner) -> Result:
        Path(a.path).mkdir(mode=a.mode, parents=True, exist_ok=True)
        return Result()

    def rename(self, a: Action, runner: Runner) -> Result:
        Path(a.path).rename(Path(a.dest))
        return Result()

    def remove(self, a: Action, runner: Runner) -> Result:
        p = Path(a.path)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
        return Result()


LOCAL = LocalSide()


def _pipeline(argvs: Sequence[Sequence[Arg]], *, source: Any = None, sink: Optional[Callable[[Any], Any]] = None,
              stdout_path: Optional[Path] = None, env: Optional[dict[str, str]] = None
              ) -> tuple[list[int], Any, list[str]]:
    """Run `a | b | c` on this machine: stage i's stdout is stage i+1's stdin (kernel pipes, no copies);
    `source` is pumped into the first stage from a thread; the last stage's stdout goes to `sink` or to
    `stdout_path`. Returns every stage's exit code, sink's value and every stage's stderr. On any error
    here (a failed sink, an interrupt) every stage is killed."""
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
                p = subprocess.Popen(reveal(argv), stdin=prev, stdout=stdout, stderr=errs[i], env=env)  # nosec B603 # argv list from iosops.commands, shell=False; that is the runner's job
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
    texts = []
    for err in errs:
        err.seek(0)
        texts.append(err.read().decode(errors="replace"))
        err.close()
    return rcs, value, texts


# -- an SSH host ----------------------------------------------------------------------------------------------
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


def remote_command(argv: Sequence[Arg], env: Env = None, cwd: Optional[PurePath] = None) -> str:
    """The shell line sent over SSH. Variables are exported by the remote shell, which then `exec`s the
    command, so values never sit in a long-lived process's argv (secrets prefer files on hosts anyway)."""
    parts = []
    if cwd:
        parts.append(f"cd {shlex.quote(str(cwd))}")
    for k, v in (env or {}).items():
        parts.append(f"export {k}={shlex.quote(v.get() if isinstance(v, Secret) else str(v))}")
    parts.append("exec " + shlex.join(reveal(argv)) if parts else shlex.join(reveal(argv)))
    return " && ".join(parts)


def remote_pipeline(argvs: Sequence[Sequence[Arg]], stdout_path: Optional[PurePath] = None) -> list[str]:
    """`a | b | c` as one command for an SSH host: bash with pipefail, so any stage's failure is the rc."""
    line = " | ".join(shlex.join(reveal(a)) for a in argvs)
    if stdout_path:
        line += f" > {shlex.quote(str(stdout_path))}"
    return ["bash", "-o", "pipefail", "-c", line]


class SSHRemote:
    """The transport of an SSH host (fabric/paramiko; host key checked against the env's known_hosts
    before anything runs). Commands, pipelines and file operations happen on the host; a library call or
    an HTTP request is made from this machine, as it would be locally."""

    def __init__(self, host: SSHHost, connect_timeout: float = 10.0):
        self.host = host
        self.connect_timeout = connect_timeout
        self._conn = None

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

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def perform(self, a: Action, runner: Runner) -> Result:
        if a.kind in ("call", "http"):
            return LOCAL.perform(a, runner)
        try:
            if a.kind == "stream":
                return self._stream(a)
            if a.kind == "pipe":
                return self.command(remote_pipeline(a.argvs), None, None, None, a.timeout)
            return self.command(a.argv, a.env, a.cwd, a.input, a.timeout)
        except IosopsError:  # an unknown or changed host key, a failed stage: already one clear line
            raise
        except Exception as exc:  # paramiko/socket errors: name the host, not a traceback
            raise OperationFailed(f"ssh {self.host}: {type(exc).__name__}: {redact(str(exc))}") from None

    def command(self, argv: Sequence[Arg], env: Env, cwd: Optional[PurePath], input: Optional[str],
                timeout: Optional[float]) -> Result:
        cmd = remote_command(argv, env, cwd)
        if input is not None:
            return self._exec_with_input(cmd, input, timeout)
        res = self.connection().run(cmd, hide=True, warn=True, timeout=timeout, in_stream=False)
        return Result(res.return_code, res.stdout, res.stderr)

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

    def _stream(self, a: Action) -> Result:
        """The pipeline runs on the host; `source` is pumped into its stdin over the channel and its stdout
        read by `sink` here (or written to `stdout_path` on the host)."""
        argv = remote_pipeline(a.argvs, a.stdout_path)
        client = self.connection().client
        stdin, stdout, stderr = client.exec_command(remote_command(argv, a.env))
        pump_error: list[BaseException] = []

        def pump() -> None:
            try:
                if a.source is not None:
                    while chunk := a.source.read(1 << 20):
                        stdin.write(chunk)
            except OSError:
                pass  # the pipeline exited early; its exit code tells why
            except BaseException as exc:  # a failed download must fail the pipeline, not hang it
                pump_error.append(exc)
            finally:
                stdin.channel.shutdown_write()

        pumper = threading.Thread(target=pump, daemon=True)
        pumper.start()
        try:
            value = a.sink(stdout) if a.sink else stdout.read()
            pumper.join()
            err = stderr.read().decode(errors="replace")
            rc = stdout.channel.recv_exit_status()
        except BaseException:
            stdout.channel.close()
            raise
        if pump_error:
            exc = pump_error[0]
            raise exc if isinstance(exc, OperationFailed) else OperationFailed(
                f"input stream failed: {type(exc).__name__}: {redact(str(exc))}")
        if rc != 0:
            raise CommandFailed(f"[{self.host}] {redact(' | '.join(brief(x) for x in a.argvs))}", Result(rc, "", err))
        return Result(0, "", err, value=value if a.sink else None)
