"""The tools-tier half of tests/unit/test_step_outputs.py: these tests run real programs (see tests/tools/__init__.py)."""
import json

from tests.conftest import run_inv


def test_build_dry_run_plans_the_output_and_writes_nothing(tmp_path):
    f = tmp_path / "github_output"
    proc = run_inv("build", "--tag", "dry-out-1", "--push", "--dry-run", "--json",
                   env={"GITHUB_OUTPUT": str(f), "IOSOPS_BUILD__REGISTRY": "127.0.0.1:5999",
                        "IOSOPS_DOCKER__HOST": "unix:///nonexistent/docker.sock"})
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)["plan"]
    assert plan[-1] == f"append step outputs tag, image, ops_image to $GITHUB_OUTPUT ({f})"
    assert not f.exists()  # a dry-run changes nothing
