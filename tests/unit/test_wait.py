"""iosops.wait: the one poll loop (on tenacity). A fake clock advanced by the fake sleep keeps these instant."""
import ast
from pathlib import Path

import pytest

from iosops import wait
from iosops.errors import OperationFailed


class Clock:
    def __init__(self):
        self.t = 0.0
        self.sleeps = []

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.sleeps.append(s)
        self.t += s


def test_returns_the_observation_once_done():
    c, answers = Clock(), iter([(False, "LOADING"), (False, "LOADING"), (True, "PONG")])
    assert wait.until("redis", lambda: next(answers), timeout=5, interval=0.5, sleep=c.sleep, clock=c) == "PONG"
    assert c.sleeps == [0.5, 0.5]


def test_timeout_names_what_and_the_last_observation():
    c, n = Clock(), iter(range(1000))
    with pytest.raises(wait.WaitTimeout) as got:
        wait.until("redis on 127.0.0.1:6380 to answer PING", lambda: (False, f"reply {next(n)}"), timeout=60,
                   interval=1, sleep=c.sleep, clock=c)
    assert str(got.value) == "timed out after 60s waiting for redis on 127.0.0.1:6380 to answer PING: reply 60"
    assert isinstance(got.value, OperationFailed) and got.value.last == "reply 60"
    assert c.t == 60


def test_zero_timeout_checks_once():
    c, calls = Clock(), []
    with pytest.raises(wait.WaitTimeout, match="waiting for x: no answer yet"):
        wait.until("x", lambda: calls.append(1) or (False, None), timeout=0, sleep=c.sleep, clock=c)
    assert calls == [1] and c.sleeps == []


def test_retry_on_listed_exceptions_only():
    c, answers = Clock(), iter([ConnectionError("refused"), OSError("reset"), (True, 7)])

    def check():
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a
    assert wait.until("api", check, timeout=5, retry_on=(OSError,), sleep=c.sleep, clock=c) == 7

    with pytest.raises(wait.WaitTimeout, match="waiting for api: ConnectionError$"):
        wait.until("api", lambda: (_ for _ in ()).throw(ConnectionError()), timeout=1, retry_on=(OSError,),
                   sleep=c.sleep, clock=c)

    def fatal():
        raise ValueError("will never get better")
    with pytest.raises(ValueError):
        wait.until("api", fatal, timeout=5, retry_on=(OSError,), sleep=c.sleep, clock=c)


def test_ready_boolean_form():
    c, answers = Clock(), iter([False, True])
    wait.ready("flag", lambda: next(answers), timeout=5, sleep=c.sleep, clock=c)
    with pytest.raises(wait.WaitTimeout, match="waiting for flag: 3 keys"):
        wait.ready("flag", lambda: False, timeout=1, observe=lambda: "3 keys", sleep=c.sleep, clock=c)


def test_real_sleep_and_clock_by_default():
    with pytest.raises(wait.WaitTimeout, match=r"timed out after 0s waiting for nothing"):
        wait.until("nothing", lambda: (False, "no"), timeout=0.05, interval=0.01)


# -- no hand-written poll loop left ------------------------------------------------------------------
# A `while` loop whose body sleeps is a hand-written wait; these are the ones that are not waits for a
# condition, or that other work owns.
EXEMPT = {
    "iosops/deploy/loadgen.py": "pacing: each worker sleeps until its request's scheduled time",
}


def _sleeping_while_loops(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.While):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Call):
                    f = sub.func
                    name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                    if name == "sleep":
                        lines.append(node.lineno)
                        break
    return lines


def test_no_hand_written_poll_loops():
    root = Path(__file__).resolve().parents[2]
    found = {}
    for path in sorted((root / "iosops").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel not in EXEMPT and (lines := _sleeping_while_loops(path)):
            found[rel] = lines
    assert not found, f"while-loops that sleep (use iosops.wait.until): {found}"


def test_exemptions_are_still_needed():
    root = Path(__file__).resolve().parents[2]
    stale = [rel for rel in EXEMPT if (root / rel).exists() and not _sleeping_while_loops(root / rel)]
    assert not stale, f"no sleeping while-loop left in {stale}: drop them from EXEMPT"
