import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INV = [sys.executable, "-c", "import sys; from invoke.main import program; sys.exit(program.run())"]


def run_inv(*args: str, env: dict | None = None, cwd: Path = ROOT, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `inv ARGS` as a user would (a subprocess), returning exit code, stdout and stderr."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*INV, *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=timeout)


@pytest.fixture
def inv():
    return run_inv
