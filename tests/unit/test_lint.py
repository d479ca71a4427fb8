"""hadolint on every Dockerfile in the repository (offline binary from PyPI).
The checks that run the real programs are in the tools tier: tests/tools/test_lint.py."""

from tests.conftest import ROOT



def test_every_script_is_strict_and_says_why():
    for script in [*ROOT.glob("scripts/*.sh"), ROOT / ".ci/run", *ROOT.glob("docker/offline/*/*.sh")]:
        lines = script.read_text().splitlines()
        assert lines[0].startswith("#!"), script
        assert lines[1].startswith("# "), f"{script}: line 2 must be a one-line purpose comment"
        assert any(l.strip() == "set -euo pipefail" for l in lines[:4]), script
