"""`inv build` and `inv images.offline` through the CLI against the real engine and a real registry."""
import json
import subprocess
import time
import uuid

import pytest
import requests

from tests.conftest import free_port, run_inv
from tests.integration.conftest import docker


@pytest.fixture
def registry(tmp_path):
    """A real Distribution registry (Debian docker-registry) on 127.0.0.1, stopped by PID."""
    port = free_port()
    cfg = tmp_path / "registry.yml"
    cfg.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/data\n"
                   f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def test_push_to_local_registry_and_pull_back(api_image, registry, tmp_path):
    tag = f"push-{uuid.uuid4().hex[:6]}"
    github_output = tmp_path / "github_output"  # as GitHub Actions sets it: the build job exports the tag
    proc = run_inv("build", "--tag", tag, "--push", "--json",
                   env={"IOSOPS_BUILD__REGISTRY": registry, "GITHUB_OUTPUT": str(github_output)})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    ref = f"{registry}/iosops/api:{tag}"
    assert result["image"] == ref and result["pushed"] is True
    assert github_output.read_text() == f"tag={tag}\nimage={ref}\nops_image={registry}/iosops/ops:{tag}\n"
    assert requests.get(f"http://{registry}/v2/iosops/api/tags/list", timeout=5).json()["tags"] == [tag]
    # the ops image of the same release goes with it
    assert requests.get(f"http://{registry}/v2/iosops/ops/tags/list", timeout=5).json()["tags"] == [tag]
    docker("rmi", f"{registry}/iosops/ops:{tag}")
    image_id = docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
    assert docker("rmi", ref).returncode == 0
    assert docker("pull", ref).returncode == 0
    assert docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip() == image_id
    docker("rmi", ref)


def test_push_without_registry_is_bad_input(api_image):
    proc = run_inv("build", "--tag", "nopush", "--push", env={"IOSOPS_BUILD__REGISTRY": ""})
    assert proc.returncode == 2 and "build.registry is empty" in proc.stderr
    assert docker("image", "inspect", "iosops/api:nopush").returncode != 0  # nothing was built


def test_over_budget_fails_exit_1_and_removes_the_tag(api_image):
    tag = f"fat-{uuid.uuid4().hex[:6]}"
    proc = run_inv("build", "--tag", tag, env={"IOSOPS_BUILD__MAX_IMAGE_MB": "1"})
    assert proc.returncode == 1
    assert f"iosops/api:{tag} is" in proc.stderr and "over the 1 MB budget" in proc.stderr
    assert "removed the tag" in proc.stderr
    assert docker("image", "inspect", f"iosops/api:{tag}").returncode != 0
    assert docker("image", "inspect", f"iosops/ops:{tag}").returncode != 0  # the release as a whole


def test_offline_rerun_changes_nothing_and_says_so(offline_images):
    proc = run_inv("images.offline", "--only", "python,postgres,redis,sshd")
    assert proc.returncode == 0, proc.stderr
    assert "0 built, 5 unchanged: nothing to do" in proc.stdout
    assert proc.stderr.count("no change: ") == 5
