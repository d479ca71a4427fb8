"""hadolint on every Dockerfile in the repository (offline binary from PyPI)."""
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


def test_every_script_is_strict_and_says_why():
    for script in [*ROOT.glob("scripts/*.sh"), ROOT / ".ci/run", *ROOT.glob("docker/offline/*/*.sh")]:
        lines = script.read_text().splitlines()
        assert lines[0].startswith("#!"), script
        assert lines[1].startswith("# "), f"{script}: line 2 must be a one-line purpose comment"
        assert any(l.strip() == "set -euo pipefail" for l in lines[:4]), script
