"""Backup and restore of a Kubernetes env against a REAL cluster: runs only when KUBECONFIG points at a
reachable API server (none exists on the machines CI uses: there it is skipped, and the live path is
unproven; tests/unit/test_k8s_plan.py covers the decisions and the kubectl argv of iosops/k8s/backup.py).

Needs, besides KUBECONFIG: IOSOPS_LIVE_K8S_TAGS="T,..." (the first tag: API and ops images the cluster
can pull from build.registry, override with IOSOPS_BUILD__REGISTRY), an S3 store the cluster reaches
(IOSOPS_BACKUP__STORE__KIND=s3, __BUCKET, __PREFIX, __ENDPOINT_URL and the credentials as
IOSOPS_BACKUP__STORE__ACCESS_KEY_ID={env: VAR} references). It deploys the staging overlay into namespace
ios-staging (target forced to kubernetes), refuses to run if that namespace exists, deletes it at the end."""
import json
import os
import secrets

import pytest

from tests.conftest import run_inv
from tests.e2e.test_k8s_live import NS, REASON, kubectl

pytestmark = pytest.mark.live_k8s


@pytest.fixture(scope="module")
def live():
    if REASON:
        pytest.skip(f"live Kubernetes test skipped: {REASON}")
    if os.environ.get("IOSOPS_BACKUP__STORE__KIND") != "s3":
        pytest.skip("live Kubernetes backup test skipped: IOSOPS_BACKUP__STORE__KIND=s3 (and the bucket) not set")
    if kubectl("get", "namespace", NS, "--ignore-not-found", "--output", "name").stdout.strip():
        pytest.skip(f"namespace {NS} already exists on this cluster; the live test only uses a namespace it creates")
    env = {"IOSOPS_K8S__CONTEXT": kubectl("config", "current-context").stdout.strip(), "IOSOPS_TARGET": "kubernetes",
           "IOS_STAGING_POSTGRES_PASSWORD": secrets.token_urlsafe(16),
           "IOS_STAGING_BACKUP_PASSWORD": secrets.token_urlsafe(16)}
    tag = os.environ["IOSOPS_LIVE_K8S_TAGS"].split(",")[0]
    deployed = run_inv("k8s.deploy", "--env", "staging", "--tag", tag, env=env, timeout=1500)
    assert deployed.returncode == 0, deployed.stderr
    yield env
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=false", check=False)


def psql(sql: str) -> str:
    return kubectl("--namespace", NS, "exec", "statefulset/ios-postgres", "--container", "postgres", "--",
                   "psql", "-X", "-At", "-h", "/run/postgresql", "-U", "ios", "-d", "ios", "-c", sql, timeout=120).stdout


def test_backup_then_restore_brings_the_data_back(live):
    psql("CREATE TABLE IF NOT EXISTS live_backup (v text); TRUNCATE live_backup; INSERT INTO live_backup VALUES ('before')")
    walstream = json.loads(kubectl("--namespace", NS, "get", "deployment", "ios-walstream", "--output", "json").stdout)
    assert walstream["status"].get("readyReplicas") == 1, "the WAL streamer is not ready (stackops walstream)"

    taken = run_inv("backup", "--env", "staging", "--json", env=live, timeout=3600)
    assert taken.returncode == 0, taken.stderr[-3000:]
    backup_id = json.loads(taken.stdout)["id"]
    listed = run_inv("backups.list", "--env", "staging", "--json", env=live, timeout=900)
    assert listed.returncode == 0 and backup_id in listed.stdout, listed.stderr[-2000:]

    psql("INSERT INTO live_backup VALUES ('after')")
    restored = run_inv("restore", "--env", "staging", "--backup", backup_id, "--yes", "--json", env=live, timeout=3600)
    assert restored.returncode == 0, restored.stderr[-3000:]
    out = json.loads(restored.stdout)
    assert out["safety_backup"] and "/ready answered 200" in out["steps"][-1]
    assert psql("SELECT string_agg(v, ',' ORDER BY v) FROM live_backup").strip() == "before"
    sizes = json.loads(kubectl("--namespace", NS, "get", "deployment", "ios-walstream", "ios-api-blue",
                               "--output", "json").stdout)
    assert [d["spec"]["replicas"] for d in sizes["items"]] == [1, 3]  # everything back at its size


def test_failed_restore_scales_everything_back(live):
    """A recovery point that does not exist: the restore Job fails, the stack comes back as it was."""
    before = psql("SELECT count(*) FROM live_backup").strip()
    bad = run_inv("restore", "--env", "staging", "--backup", "19700101T000000Z", "--yes", env=live, timeout=3600)
    assert bad.returncode == 1 and "rolled back" in bad.stderr, bad.stderr[-2000:]
    assert psql("SELECT count(*) FROM live_backup").strip() == before
