import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INV = [sys.executable, "-c", "import sys; from invoke.main import program; sys.exit(program.run())"]


# Tests keep their locks and audit lines out of the checkout's .iosops/ (a developer's real state).
# One per checkout, so two worktrees testing at once do not share locks.
TEST_STATE = Path(os.environ.get("IOSOPS_TEST_STATE") or
                  f"/tmp/iosops-test-state-{__import__('hashlib').sha256(str(ROOT).encode()).hexdigest()[:8]}")


def run_inv(*args: str, env: dict | None = None, cwd: Path = ROOT, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `inv ARGS` as a user would (a subprocess), returning exit code, stdout and stderr."""
    full_env = {**os.environ, "IOSOPS_STATE_DIR": str(TEST_STATE), **(env or {})}
    return subprocess.run([*INV, *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=timeout)


@pytest.fixture
def inv():
    return run_inv


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
