"""The tools-tier half of tests/unit/test_pipeline.py: these tests run real programs (see tests/tools/__init__.py)."""
import re
import shlex
import subprocess

from tests.conftest import ROOT, run_inv
from tests.unit.test_pipeline import STAGES


def _make_dry_run(target: str, *variables: str, check: bool = True) -> subprocess.CompletedProcess:
    """What make itself would run for TARGET (make -n), with the inv path set to plain `inv`."""
    return subprocess.run(["make", "--no-print-directory", "-n", "-C", str(ROOT), target, "INV=inv", *variables],
                          capture_output=True, text=True, check=check)


def test_without_a_tag_the_prod_deploy_is_refused_as_bad_input():
    """What CI hit before: prod is a Kubernetes target, so a deploy needs the release's tag."""
    proc = run_inv("deploy", "--env", "prod", "--dry-run")
    assert proc.returncode == 2 and "image tag missing: pass --tag" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_deploy_tag_help_says_what_happens_per_target():
    proc = run_inv("--help", "deploy")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())  # invoke wraps help text
    assert "default: build the current tree)" not in text  # the old, false-for-Kubernetes claim
    assert "local and compose (SSH hosts): optional, default builds the current tree" in text
    assert "kubernetes (prod): required, the tag `inv build --push` made (exit 2 without it)" in text


def test_makefile_targets_map_one_to_one_onto_the_stages():
    assert _make_targets() == ["bootstrap", *STAGES]
    assert _make_dry_run("bootstrap").stdout.splitlines() == ["./scripts/bootstrap.sh"]
    for target, expected in STAGES.items():
        out = _make_dry_run(target, "TAG=t-123").stdout.splitlines()
        assert len(out) == 1 and shlex.split(out[0]) == _argv(expected, "t-123"), target
    # by default a target uses the checkout's .venv, like the workflow's steps
    assert subprocess.run(["make", "--no-print-directory", "-n", "-C", str(ROOT), "scan"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[-1] == ".venv/bin/inv ci.scan"


def test_make_refuses_prod_targets_without_a_tag_and_staging_builds_the_tree():
    for target in ("promote-prod", "deploy-prod"):
        proc = _make_dry_run(target, check=False)
        assert proc.returncode == 2 and proc.stdout == "", target  # nothing would run
        assert f"make {target}: TAG is required" in proc.stderr, proc.stderr
    # a laptop's `make deploy-staging` (compose hosts) may still build and deploy the current tree
    assert _make_dry_run("deploy-staging").stdout.splitlines() == ["inv deploy --env staging"]


def _make_targets() -> list[str]:
    return re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M)


def _argv(command: str, tag: str) -> list[str]:
    """A stage's command as the argv the shell would pass, with $TAG expanded to TAG."""
    return [tag if a == "$TAG" else a for a in shlex.split(command)]
