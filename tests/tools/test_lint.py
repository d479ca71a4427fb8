"""The tools-tier half of tests/unit/test_lint.py: these tests run real programs (see tests/tools/__init__.py)."""
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

DOCKERFILES = sorted(p for p in ROOT.glob("docker/**/Dockerfile*") if ".build-ca" not in p.parts)


def test_every_dockerfile_is_hadolint_clean():
    hadolint = Path(sys.executable).parent / "hadolint"
    assert len(DOCKERFILES) >= 12
    proc = subprocess.run([str(hadolint), "--no-color", *map(str, DOCKERFILES)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
