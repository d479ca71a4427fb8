"""Destructive or overriding tasks (restore, down --volumes, lock.release) ask for the env's name, typed, in
every env; --yes and a dry-run skip it; with no terminal to ask at it is bad input and nothing changes."""
import pytest

from iosops.errors import BadInput
from iosops.tasks._common import confirm_typed


class Tty:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def never(_prompt):
    raise AssertionError("asked although it must not")


@pytest.mark.parametrize("env", ["local", "staging", "prod", "eu-prod"])
def test_every_env_asks_and_only_its_name_passes(env):
    prompts = []
    confirm_typed(env, "replaces the data", f"inv restore --env {env}", yes=False, stdin=Tty(True),
                  ask=lambda p: prompts.append(p) or f" {env}\n")
    assert prompts == [f"inv restore --env {env}: replaces the data. Type the env name ({env}) to continue: "]
    with pytest.raises(BadInput, match=rf"confirmation not given \(typed 'yes', not '{env}'\); nothing was changed"):
        confirm_typed(env, "replaces the data", "inv restore", yes=False, stdin=Tty(True), ask=lambda p: "yes")


def test_yes_and_dry_run_do_not_ask():
    confirm_typed("prod", "x", "inv restore", yes=True, stdin=Tty(True), ask=never)
    confirm_typed("prod", "x", "inv restore", yes=False, dry_run=True, stdin=Tty(False), ask=never)


def test_no_terminal_and_no_yes_is_one_line_of_bad_input():
    with pytest.raises(BadInput) as info:
        confirm_typed("staging", "deletes the data volumes", "inv down --env staging --volumes", yes=False,
                      stdin=Tty(False), ask=never)
    assert str(info.value) == ("`inv down --env staging --volumes` deletes the data volumes: it needs a typed "
                               "confirmation; run it in a terminal, or pass --yes; nothing was changed")
