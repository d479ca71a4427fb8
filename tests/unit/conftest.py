"""The unit tier runs in-process: no program, no network, no Docker engine (tests/tools and the tiers
after it do that). While a unit test sets up, runs or tears down, starting a process or opening a
connection fails the test with a line saying where such a test belongs. test_tier_guard.py checks the
same statically, so a test that only spawns on some path is caught too."""
import os
import socket
import subprocess

from contextlib import contextmanager

import pytest

WHERE = "unit tests run in-process; a test that {what} belongs in tests/tools (or integration, if it needs a service)"


def _refuse(what):
    def refuse(*args, **kwargs):
        detail = args[1] if len(args) > 1 else args[:1]  # Popen._execute_child(self, argv, ...), connect(self, address)
        raise AssertionError(f"{WHERE.format(what=what)}: {detail!r}"[:400])
    return refuse


BARRIERS = [(subprocess.Popen, "_execute_child", "starts a process"), (os, "system", "starts a process"),
            (os, "posix_spawn", "starts a process"), (os, "posix_spawnp", "starts a process"),
            (os, "fork", "starts a process"), (socket.socket, "connect", "opens a connection"),
            (socket.socket, "connect_ex", "opens a connection")]


@contextmanager
def _barred():
    """Every process and connection refused for the duration (one test phase)."""
    mp = pytest.MonkeyPatch()
    for owner, name, what in BARRIERS:
        if hasattr(owner, name):
            mp.setattr(owner, name, _refuse(what))
    try:
        yield
    finally:
        mp.undo()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with _barred():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with _barred():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    with _barred():
        return (yield)
