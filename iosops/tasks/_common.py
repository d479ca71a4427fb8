"""What every task shares: env loading, one-line errors with the right exit code, lock + audit for
mutating runs, and rendering (rich-free plain lines for people, --json for CI)."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Optional

from invoke.exceptions import Exit

ENV_HELP = "Environment: local, staging or prod (files in envs/); default $IOSOPS_ENV or local"
DRY_HELP = "Print the exact ordered commands/actions and change nothing"
JSON_HELP = "Print the result as JSON on stdout (for CI)"


def new_runner(*, dry_run: bool = False, verbose: bool = False, as_json: bool = False,
               say: Optional[Callable[[str], None]] = None) -> Any:
    """The one place a Runner is made: a task makes one and hands it down, so every action of the task
    (and of whatever it calls) goes through it and into its dry-run plan. Plan lines go to stdout unless
    stdout carries --json."""
    from iosops.runner import Runner

    return Runner(dry_run=dry_run, verbose=verbose, plan_to_stdout=not as_json, **({"say": say} if say else {}))


def confirm_typed(env_name: str, what: str, command: str, *, yes: bool, dry_run: bool = False,
                  stdin: Any = None, ask: Callable[[str], str] = input) -> None:
    """A destructive or overriding step asks for the env's name, typed, in every env; `--yes` (scripts, CI)
    and a dry-run skip it. Without a terminal to ask at, and without --yes: bad input, nothing changed."""
    from iosops.errors import BadInput

    if yes or dry_run:
        return
    stdin = stdin if stdin is not None else sys.stdin
    if not stdin.isatty():
        raise BadInput(f"`{command}` {what}: it needs a typed confirmation; run it in a terminal, or pass --yes; "
                       "nothing was changed")
    typed = ask(f"{command}: {what}. Type the env name ({env_name}) to continue: ")
    if typed.strip() != env_name:
        raise BadInput(f"confirmation not given (typed {typed.strip()[:40]!r}, not {env_name!r}); nothing was changed")


def fail(exc: BaseException) -> Exit:
    from iosops.secretref import redact

    return Exit(f"error: {redact(str(exc))}", code=getattr(exc, "exit_code", 1))


@contextmanager
def task_env(env_name: Optional[str], overrides: Optional[Mapping] = None) -> Iterator[Any]:
    """Load the env; any foreseeable error becomes one line on stderr and the right exit code."""
    from iosops.config import load_env
    from iosops.errors import IosopsError

    try:
        yield load_env(env_name, overrides=overrides)
    except IosopsError as exc:
        raise fail(exc) from None


@contextmanager
def mutating(task: str, env_name: Optional[str], args: Mapping[str, Any], *, dry_run: bool = False,
             verbose: bool = False, as_json: bool = False, overrides: Optional[Mapping] = None,
             here: bool = False) -> Iterator[tuple[Any, Any]]:
    """Env + runner + (unless dry-run) the env lock and one audit line. Yields (env, runner).

    The lock and the log are the env's (on its data host for a compose env on SSH hosts); here=True for
    tasks that act on this machine or a cluster only (up, down, images, k8s.*): this machine's state dir."""
    from iosops.config import load_env
    from iosops.errors import IosopsError
    from iosops.ops import operation, trail_for

    try:
        env = load_env(env_name, overrides=overrides)
        runner = new_runner(dry_run=dry_run, verbose=verbose, as_json=as_json)
        where = env.state_dir if dry_run else trail_for(env, here=here, runner=runner)
        with operation(where, env.name, task, args, dry_run=dry_run, say=runner.info):
            yield env, runner
    except IosopsError as exc:
        raise fail(exc) from None


def emit(data: Any, as_json: bool, lines: Optional[list[str]] = None) -> None:
    from iosops.secretref import redact

    if as_json:
        print(redact(json.dumps(data, indent=2, sort_keys=True, default=str)))
    else:
        for line in lines or []:
            print(redact(line))
    sys.stdout.flush()


def emit_plan(runner: Any, as_json: bool) -> None:
    """Dry-run result: the ordered plan (already streamed to stderr as it was made)."""
    plan = runner.plan()
    emit({"dry_run": True, "plan": plan}, as_json,
         [f"dry-run: {len(plan)} action(s) would run, nothing was changed"])
