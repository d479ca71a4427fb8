"""Waiting for a condition: the one poll loop of the package, on tenacity.

    wait.until("redis on 127.0.0.1:6380 to answer PING", lambda: (ping() == "PONG", ping_reply), timeout=30)

`check()` returns `(done, observation)`. When `done`, `until` returns the observation; otherwise it sleeps
`interval` and checks again. After `timeout` seconds it raises `WaitTimeout` (an `OperationFailed`) naming
what was awaited and the last observation:

    timed out after 30s waiting for redis on 127.0.0.1:6380 to answer PING: LOADING Redis is loading ...

Exceptions of the `retry_on` types count as "not yet" (their text becomes the observation); any other
exception ends the wait at once, so a check can stop early on something that will never get better.
`sleep` and `clock` are injectable so tests run in milliseconds."""
from __future__ import annotations

import time
from typing import Any, Callable, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_fixed

from .errors import OperationFailed

T = TypeVar("T")


class WaitTimeout(OperationFailed):
    """The awaited condition did not hold within the timeout. `last` is the last observation."""

    def __init__(self, what: str, timeout: float, last: Any):
        self.what, self.timeout, self.last = what, timeout, last
        super().__init__(f"timed out after {timeout:.0f}s waiting for {what}: {_text(last)}")


class _NotYet(Exception):
    def __init__(self, observation: Any):
        super().__init__()
        self.observation = observation


def _text(observation: Any) -> str:
    if observation is None or observation == "":
        return "no answer yet"
    return str(observation)


def until(what: str, check: Callable[[], tuple[bool, T]], *, timeout: float, interval: float = 0.1,
          retry_on: tuple[type[BaseException], ...] = (), sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic) -> T:
    """Call check() until it answers (True, value) and return value; WaitTimeout after `timeout` s.
    The check runs at least once (a zero timeout means exactly one check)."""
    start = clock()

    def attempt() -> T:
        try:
            done, observation = check()
        except retry_on as exc:
            raise _NotYet(str(exc) or type(exc).__name__) from exc
        if not done:
            raise _NotYet(observation)
        return observation

    def past_deadline(_: RetryCallState) -> bool:
        return clock() - start >= timeout

    try:
        for tried in Retrying(stop=past_deadline, wait=wait_fixed(interval), retry=retry_if_exception_type(_NotYet),
                              sleep=sleep, reraise=True):
            with tried:
                return attempt()
    except _NotYet as exc:
        raise WaitTimeout(what, timeout, exc.observation) from None
    raise AssertionError("unreachable: tenacity either returned, raised or retried")  # pragma: no cover


def ready(what: str, check: Callable[[], bool], *, timeout: float, interval: float = 0.1,
          retry_on: tuple[type[BaseException], ...] = (), sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic, observe: Callable[[], Any] = lambda: "not yet") -> None:
    """`until` for a plain boolean check: the last observation is `observe()` (default "not yet")."""
    until(what, lambda: (True, None) if check() else (False, observe()), timeout=timeout, interval=interval,
          retry_on=retry_on, sleep=sleep, clock=clock)
