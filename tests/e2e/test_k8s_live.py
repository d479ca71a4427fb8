"""The Kubernetes deploy and rollback against a REAL cluster: runs only when KUBECONFIG points at a
reachable API server (none exists on the machines CI uses, so there it is skipped and the live path
is unproven; the plan tests in tests/unit/test_k8s_plan.py cover the decisions and argv).

Needs, besides KUBECONFIG: IOSOPS_LIVE_K8S_TAGS="T1,T2" (two API image tags the cluster can pull from
build.registry, override with IOSOPS_BUILD__REGISTRY) and the staging overlay's datastore images.
It deploys the staging overlay into namespace ios-staging with the current context, refuses to run
if that namespace already exists (it never touches a namespace it did not create) and deletes it at
the end."""
import json
import os
import secrets
import subprocess

import pytest

from tests.conftest import run_inv

pytestmark = pytest.mark.live_k8s
NS = "ios-staging"


def kubectl(*args, check=True, timeout=60):
    return subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=timeout, check=check)


def _reachable() -> str:
    if not os.environ.get("KUBECONFIG"):
        return "KUBECONFIG is not set"
    try:
        p = kubectl("version", "--request-timeout=5s", "--output", "json", check=False, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"kubectl failed: {exc}"
    if p.returncode != 0 or "serverVersion" not in p.stdout:
        return f"no reachable API server at KUBECONFIG={os.environ['KUBECONFIG']}"
    if len(os.environ.get("IOSOPS_LIVE_K8S_TAGS", "").split(",")) != 2:
        return "IOSOPS_LIVE_K8S_TAGS must name two pullable API image tags (T1,T2)"
    return ""


REASON = _reachable()


@pytest.fixture(scope="module")
def live_env():
    if REASON:
        pytest.skip(f"live Kubernetes test skipped: {REASON}")
    if kubectl("get", "namespace", NS, "--ignore-not-found", "--output", "name").stdout.strip():
        pytest.skip(f"namespace {NS} already exists on this cluster; the live test only uses a namespace it creates")
    context = kubectl("config", "current-context").stdout.strip()
    env = {"IOSOPS_K8S__CONTEXT": context, "IOS_STAGING_POSTGRES_PASSWORD": secrets.token_urlsafe(16)}
    yield env
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=false", check=False)


def live_colour() -> str:
    svc = json.loads(kubectl("--namespace", NS, "get", "service", "ios-api", "--output", "json").stdout)
    return svc["spec"]["selector"]["app.kubernetes.io/color"]


def test_deploy_twice_rollback_and_scale_down(live_env):
    t1, t2 = os.environ["IOSOPS_LIVE_K8S_TAGS"].split(",")
    first = run_inv("k8s.deploy", "--env", "staging", "--tag", t1, env=live_env, timeout=1500)
    assert first.returncode == 0, first.stderr
    assert live_colour() == "blue"
    second = run_inv("k8s.deploy", "--env", "staging", "--tag", t2, env=live_env, timeout=1500)
    assert second.returncode == 0, second.stderr
    assert live_colour() == "green"
    back = run_inv("k8s.rollback", "--env", "staging", env=live_env, timeout=1500)
    assert back.returncode == 0, back.stderr
    assert live_colour() == "blue"
    refused = run_inv("k8s.scale-down", "--env", "staging", env=live_env)
    assert refused.returncode == 2 and "rollback window open" in refused.stderr
    down = run_inv("k8s.scale-down", "--env", "staging", "--force", env=live_env)
    assert down.returncode == 0, down.stderr
    dep = json.loads(kubectl("--namespace", NS, "get", "deployment", "ios-api-green", "--output", "json").stdout)
    assert dep["spec"]["replicas"] == 0


def test_failed_smoke_rolls_back(live_env):
    """A tag whose pods never become ready: the deploy exits 1 and traffic stays where it was."""
    before = live_colour()
    bad = run_inv("k8s.deploy", "--env", "staging", "--tag", "does-not-exist-0000",
                  env={**live_env, "IOSOPS_K8S__ROLLOUT_TIMEOUT_S": "90"}, timeout=600)
    assert bad.returncode == 1 and "rolled back" in bad.stderr
    assert live_colour() == before
