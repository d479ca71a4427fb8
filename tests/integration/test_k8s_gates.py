"""The kustomize overlays as CI checks them: `inv k8s.render` twice gives the same bytes,
`inv k8s.validate` passes kubernetes-validate --strict for 1.29/1.31/1.33, `inv k8s.policy` passes
checkov with every skip explained, and the rendered objects have what the Kubernetes issue asks for.
Runs the real kubectl (kustomize), kubernetes-validate and checkov; no cluster is needed or faked."""
import json
import shutil

import pytest
import yaml

from iosops.config import load_env
from iosops.errors import BadInput
from iosops.k8s import render as kr
from iosops.runner import Runner
from tests.conftest import ROOT, run_inv

ENVS = ["staging", "prod"]
TAG = "abc123def456"  # pragma: allowlist secret - a fake image tag


@pytest.fixture(scope="module", params=ENVS)
def rendered(request):
    proc = run_inv("k8s.render", "--env", request.param, "--tag", TAG)
    assert proc.returncode == 0, proc.stderr
    return request.param, proc.stdout, [o for o in yaml.safe_load_all(proc.stdout) if o]


def pod_specs(objects):
    for o in objects:
        spec = o.get("spec", {})
        pod = spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec") or \
            spec.get("template", {}).get("spec")
        if pod:
            yield o, pod


def by(objects, kind, name=None):
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


@pytest.mark.parametrize("env", ENVS)
def test_render_is_deterministic(env):
    a = run_inv("k8s.render", "--env", env, "--tag", TAG)
    b = run_inv("k8s.render", "--env", env, "--tag", TAG)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert a.stdout.encode() == b.stdout.encode() and len(a.stdout) > 10_000


@pytest.mark.parametrize("env", ENVS)
def test_validate_three_kubernetes_versions(env):
    proc = run_inv("k8s.validate", "--env", env, "--tag", TAG, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["versions"] == ["1.29", "1.31", "1.33"] and out["objects"] >= 37


@pytest.mark.parametrize("env", ENVS)
def test_policy_checkov_passes_and_every_skip_has_a_reason(env):
    proc = run_inv("k8s.policy", "--env", env, "--tag", TAG, "--json")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    out = json.loads(proc.stdout)
    assert out["failed"] == [] and out["summary"]["passed"] > 400
    skips = {(s["check"], s["resource"].rsplit(".", 1)[-1]) for s in out["skipped"]}
    assert skips == {("CKV_K8S_43", n) for n in ("ios-api-blue", "ios-api-green", "ios-postgres", "ios-redis",
                                                 "ios-elasticsearch", "ios-backup", "ios-walstream")} | \
        {("CKV_K8S_40", "ios-postgres"), ("CKV_K8S_40", "ios-elasticsearch")}
    assert all(len(s["reason"]) > 40 for s in out["skipped"])


def test_objects(rendered):
    env, text, objs = rendered
    ns = f"ios-{env}"
    assert by(objs, "Namespace")[0]["metadata"]["name"] == ns
    assert all(o["metadata"].get("namespace", ns) == ns for o in objs)
    assert {o["metadata"]["name"] for o in by(objs, "StatefulSet")} == {"ios-postgres", "ios-redis", "ios-elasticsearch"}
    assert all(s["spec"]["volumeClaimTemplates"] for s in by(objs, "StatefulSet"))
    assert {o["metadata"]["name"] for o in by(objs, "Deployment")} == {"ios-api-blue", "ios-api-green", "ios-walstream"}
    assert {o["metadata"]["name"] for o in by(objs, "Service")} >= {"ios-api", "ios-api-preview"}
    assert by(objs, "Service", "ios-api")[0]["spec"]["selector"]["app.kubernetes.io/color"] == "blue"
    assert by(objs, "Service", "ios-api-preview")[0]["spec"]["selector"]["app.kubernetes.io/color"] == "green"
    assert len(by(objs, "PodDisruptionBudget")) == 5 and len(by(objs, "ConfigMap")) == 5
    # No Secret values in the render: Secrets come from ExternalSecret (prod) or the deploy (staging).
    assert by(objs, "Secret") == []
    if env == "prod":
        es = by(objs, "ExternalSecret", "ios-postgres")[0]
        assert es["spec"]["target"]["name"] == "ios-postgres" and es["spec"]["data"][0]["remoteRef"]["key"]
        es = by(objs, "ExternalSecret", "ios-backup")[0]
        assert {d["secretKey"] for d in es["spec"]["data"]} == {"backup-password", "s3-access-key-id",
                                                                 "s3-secret-access-key", "age-identity"}


def test_images_carry_the_tag(rendered):
    env, _, objs = rendered
    images = {c["image"] for _, pod in pod_specs(objs) for c in pod["containers"]}
    registry = "registry.ios.internal" if env == "prod" else "registry.staging.ios.internal:5000"
    assert f"{registry}/iosops/api:{TAG}" in images and f"{registry}/iosops/ops:{TAG}" in images
    assert all(":" in i.rsplit("/", 1)[-1] and not i.endswith(":latest") for i in images)


def test_hpa_seed_figures(rendered):
    _, _, objs = rendered
    hpa = by(objs, "HorizontalPodAutoscaler", "ios-api")[0]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 10)
    assert hpa["scaleTargetRef"]["name"] == "ios-api-blue"
    targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["metrics"]}
    assert targets == {"cpu": 70, "memory": 80}


def test_every_pod_is_locked_down(rendered):
    _, _, objs = rendered
    pods = list(pod_specs(objs))
    assert len(pods) == 7  # 2 colours, 3 StatefulSets, the backup CronJob, the WAL streamer
    for o, pod in pods:
        who = f"{o['kind']}/{o['metadata']['name']}"
        assert pod["automountServiceAccountToken"] is False, who
        assert pod["securityContext"]["runAsNonRoot"] is True, who
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", who
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] and sc["allowPrivilegeEscalation"] is False, who
            assert sc["capabilities"]["drop"] == ["ALL"] and sc["seccompProfile"]["type"] == "RuntimeDefault", who
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and \
                {"cpu", "memory"} <= set(c["resources"]["limits"]), who
        if o["kind"] != "CronJob":
            assert pod["topologySpreadConstraints"], who
    assert all(sa["automountServiceAccountToken"] is False for sa in by(objs, "ServiceAccount"))


def test_network_policies(rendered):
    _, _, objs = rendered
    pols = {o["metadata"]["name"]: o["spec"] for o in by(objs, "NetworkPolicy")}
    deny = pols["default-deny-all"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny
    api_in = pols["ios-api-from-ingress"]["ingress"][0]["from"][0]
    assert api_in["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}
    egress_to = {r["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                 for r in pols["ios-api-to-datastores"]["egress"]}
    assert egress_to == {"ios-postgres", "ios-redis", "ios-elasticsearch"}


def test_ingress_tls_rate_limit_scrape_and_backup(rendered):
    env, _, objs = rendered
    ing = by(objs, "Ingress", "ios-api")[0]
    assert ing["spec"]["tls"][0]["secretName"] == "ios-api-tls"  # pragma: allowlist secret - a Secret's name, not its value
    assert ing["spec"]["tls"][0]["hosts"] == [ing["spec"]["rules"][0]["host"]]
    ann = ing["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/limit-rps"] == "20" and "nginx.ingress.kubernetes.io/limit-connections" in ann
    for d in by(objs, "Deployment"):
        a = d["spec"]["template"]["metadata"]["annotations"]
        port = "9898" if d["metadata"]["name"] == "ios-walstream" else "8000"
        assert (a["prometheus.io/scrape"], a["prometheus.io/port"], a["prometheus.io/path"]) == ("true", port, "/metrics")
    cron = by(objs, "CronJob", "ios-backup")[0]["spec"]
    c = cron["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] + c["args"] == ["python", "-m", "iosops.backup.stackops", "backup", "--env", env]
    assert cron["concurrencyPolicy"] == "Forbid"


def test_wrapper_rewrites_live_state_not_the_overlay():
    env = load_env("prod")
    w = kr.wrapper(env, env.cfg.k8s, "t1", live="green", idle_replicas=5)
    assert w["resources"] == ["../k8s/overlays/prod"]
    assert w["images"][0] == {"name": "ios-api", "newName": "registry.ios.internal/iosops/api", "newTag": "t1"}
    r = kr.render(env, Runner(), "t1", live="green", idle_replicas=5)
    assert r.find("Service", "ios-api")["spec"]["selector"]["app.kubernetes.io/color"] == "green"
    assert r.find("Service", "ios-api-preview")["spec"]["selector"]["app.kubernetes.io/color"] == "blue"
    assert r.find("HorizontalPodAutoscaler", "ios-api")["spec"]["scaleTargetRef"]["name"] == "ios-api-green"
    assert r.find("Deployment", "ios-api-blue")["spec"]["replicas"] == 5


# -- bad input: one line, exit 2 ----------------------------------------------------------------------

def one_line(proc, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stdout[-500:], proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_unknown_env_and_env_without_overlay():
    assert "unknown env 'qa'" in one_line(run_inv("k8s.render", "--env", "qa", "--tag", TAG))
    assert "has no Kubernetes overlay" in one_line(run_inv("k8s.validate", "--env", "local", "--tag", TAG))
    line = one_line(run_inv("k8s.render", "--env", "prod", "--tag", TAG, env={"IOSOPS_K8S__OVERLAY": "qa"}))
    assert "unknown overlay 'qa'" in line and "known overlays: prod, staging" in line


def test_deploy_without_tag_or_right_context_applies_nothing(tmp_path):
    state = tmp_path / "state"
    assert "image tag missing" in one_line(run_inv("k8s.deploy", "--env", "prod", env={"IOSOPS_STATE_DIR": str(state)}))
    kubeconfig = tmp_path / "kubeconfig"  # a kubeconfig naming another context; no cluster is contacted
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "laptop",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "laptop", "context": {"cluster": "c", "user": "u"}}]}))
    line = one_line(run_inv("k8s.deploy", "--env", "prod", "--tag", TAG,
                            env={"KUBECONFIG": str(kubeconfig), "IOSOPS_STATE_DIR": str(state)}))
    assert "kubectl context is 'laptop', but env prod deploys only to 'ios-prod'" in line
    assert not (state / "k8s").exists()


def test_missing_secret_reference_is_bad_input(tmp_path):
    envs = tmp_path / "envs"  # staging without its k8s.secrets entry: nothing provides ios-postgres
    shutil.copytree(ROOT / "envs", envs)
    staging = envs / "staging.yaml"
    cfg = yaml.safe_load(staging.read_text())
    assert cfg["k8s"].pop("secrets") == {"ios-postgres/postgres-password": "postgres_password"}  # pragma: allowlist secret - key-to-name map
    staging.write_text(yaml.safe_dump(cfg))
    line = one_line(run_inv("k8s.validate", "--env", "staging", "--tag", TAG, env={"IOSOPS_ENVS_DIR": str(envs)}))
    assert "missing secret reference" in line and "Secret ios-postgres key postgres-password" in line


@pytest.fixture
def repo_copy(tmp_path):
    for d in ("k8s", "envs"):
        shutil.copytree(ROOT / d, tmp_path / d)
    return tmp_path


def test_invalid_manifest_names_file_object_and_field(repo_copy):
    p = repo_copy / "k8s/base/redis.yaml"
    p.write_text(p.read_text().replace("  serviceName: ios-redis\n", "  serviceName: ios-redis\n  replica: 2\n"))
    env = load_env("prod", root=repo_copy, environ={})
    runner = Runner()
    with pytest.raises(BadInput) as exc:
        kr.validate(env, runner, kr.render(env, runner, TAG))
    msg = str(exc.value)
    assert msg.startswith("k8s/base/redis.yaml: StatefulSet/ios-redis: spec: Additional properties are not allowed")
    assert "'replica' was unexpected" in msg and "(Kubernetes 1.29, --strict)" in msg and "\n" not in msg


def test_external_secret_missing_key_is_bad_input(repo_copy):
    p = repo_copy / "k8s/overlays/prod/externalsecret.yaml"
    p.write_text(p.read_text().replace("        key: ios/prod/postgres\n", ""))
    env = load_env("prod", root=repo_copy, environ={})
    runner = Runner()
    with pytest.raises(BadInput, match=r"k8s/overlays/prod/externalsecret.yaml: ExternalSecret/ios-postgres: "
                                       r"spec.data.0.remoteRef.key is required"):
        kr.validate(env, runner, kr.render(env, runner, TAG))


def test_parsers_on_captured_output():
    line = ("ERROR /tmp/x/prod.yaml did not validate for resource statefulset/ios-elasticsearch against version "
            "1.31: spec.template.spec.containers.0.env.3: Additional properties are not allowed ('a' was unexpected)")
    assert kr.parse_validation(line) == [{"kind": "statefulset", "name": "ios-elasticsearch", "version": "1.31",
                                          "field": "spec.template.spec.containers.0.env.3",
                                          "msg": "Additional properties are not allowed ('a' was unexpected)"}]
    assert kr.parse_validation("WARN /tmp/x.yaml Couldn't find schema for kind ExternalSecret") == []


def test_unreachable_cluster_is_bad_input_and_applies_nothing(tmp_path):
    """The right context, but its API server refuses connections (127.0.0.1:1): exit 2, no apply."""
    state = tmp_path / "state"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ios-prod",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "ios-prod", "context": {"cluster": "c", "user": "u"}}]}))
    proc = run_inv("k8s.deploy", "--env", "prod", "--tag", TAG, "--dry-run",
                   env={"KUBECONFIG": str(kubeconfig), "IOSOPS_STATE_DIR": str(state)})
    line = one_line(proc)
    assert "cannot read the cluster of context 'ios-prod'" in line
    assert not (state / "k8s").exists()


# -- backups on Kubernetes (issue #11) ------------------------------------------------------------------

def ops_pods(objs):
    for o, pod in pod_specs(objs):
        if o["metadata"]["name"] in ("ios-backup", "ios-walstream"):
            yield o, pod


def test_ops_config_map_is_the_env_seen_from_inside(rendered):
    env, text, objs = rendered
    cms = [o for o in by(objs, "ConfigMap") if o["metadata"]["name"].startswith("ios-ops-config-")]
    assert len(cms) == 1 and list(cms[0]["data"]) == [f"{env}.yaml"]
    cfg = yaml.safe_load(cms[0]["data"][f"{env}.yaml"])
    pg = cfg["backup"]["postgres"]
    assert (pg["host"], pg["port"], pg["user"]) == ("ios-postgres", 5432, "iosops_backup")
    assert pg["password"] == {"file": "/run/secrets/iosops/backup-password"}
    assert (cfg["backup"]["redis"]["host"], cfg["name"], cfg["secrets"]) == ("ios-redis", env, {})
    # every reference left is a file under the Secret's mount; no {env: ...} reference of the host survives
    refs = []

    def walk(node):
        if isinstance(node, dict):
            if set(node) <= {"env", "file", "generate"} and node:
                refs.append(node)
            else:
                for v in node.values():
                    walk(v)
    walk(cfg)
    assert refs and all(set(r) == {"file"} and r["file"].startswith("/run/secrets/iosops/") for r in refs)
    for _o, pod in ops_pods(objs):
        c = pod["containers"][0]
        assert c["command"] == ["python", "-m", "iosops.backup.stackops"] and c["args"][1:] == ["--env", env]
        assert {"name": "IOSOPS_ENVS_DIR", "value": "/etc/iosops/envs"} in c["env"]
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        vols = {v["name"]: v for v in pod["volumes"]}
        assert mounts["config"] == "/etc/iosops/envs" and vols["config"]["configMap"]["name"] == cms[0]["metadata"]["name"]
        assert mounts["ops-secrets"] == "/run/secrets/iosops"
        assert vols["ops-secrets"]["secret"]["secretName"] == "ios-backup"  # pragma: allowlist secret - a name
        keys = {i["key"] for i in vols["ops-secrets"]["secret"]["items"]}
        assert "backup-password" in keys and "age-identity" not in keys  # backups never hold the identity


def test_walstream_is_one_recreated_streamer(rendered):
    _, _, objs = rendered
    d = by(objs, "Deployment", "ios-walstream")[0]
    assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"] == {"type": "Recreate"}
    pod = d["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["args"][0] == "walstream" and c["ports"] == [{"name": "metrics", "containerPort": 9898}]
    assert c["readinessProbe"]["httpGet"] == c["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    spool = next(v for v in pod["volumes"] if v["name"] == "spool")["persistentVolumeClaim"]["claimName"]
    assert by(objs, "PersistentVolumeClaim", spool)
    assert {"name": "spool", "mountPath": "/var/lib/iosops/walspool"} in c["volumeMounts"]
    assert pod["securityContext"]["runAsUser"] == 10001 and c["securityContext"]["readOnlyRootFilesystem"]
    pols = {o["metadata"]["name"]: o["spec"] for o in by(objs, "NetworkPolicy")}
    egress = pols["ios-walstream-egress"]["egress"]
    assert egress[0]["to"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "ios-postgres"}
    assert egress[0]["ports"] == [{"protocol": "TCP", "port": 5432}] and egress[1] == {"ports": [{"protocol": "TCP", "port": 443}]}
    assert pols["ios-walstream-from-monitoring"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9898}]
    pg_from = [f["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
               for f in pols["ios-postgres-from-clients"]["ingress"][0]["from"]]
    assert "ios-walstream" in pg_from


def test_postgres_streams_wal_and_keeps_the_backup_role(rendered):
    _, _, objs = rendered
    sts = by(objs, "StatefulSet", "ios-postgres")[0]
    pod = sts["spec"]["template"]["spec"]
    pg, role = pod["containers"]
    assert pg["args"][0::2] == ["-c"] * 5
    assert {"wal_level=replica", "max_wal_senders=10", "max_replication_slots=10",
            "max_slot_wal_keep_size=$(MAX_SLOT_WAL_KEEP_SIZE)", "hba_file=/etc/iosops/postgres/pg_hba.conf"} == set(pg["args"][1::2])
    cm = next(o for o in by(objs, "ConfigMap") if o["metadata"]["name"].startswith("ios-postgres-config-"))
    assert cm["data"]["MAX_SLOT_WAL_KEEP_SIZE"] == "2GB" and cm["data"]["PGDATA"] == "/var/lib/postgresql/data/pgdata"
    assert role["name"] == "backup-role" and role["command"] == ["bash", "/etc/iosops/postgres/backup-role.sh"]
    init = next(o for o in by(objs, "ConfigMap") if o["metadata"]["name"].startswith("ios-postgres-init-"))
    assert "host    replication  iosops_backup  all      scram-sha-256" in init["data"]["pg_hba.conf"]
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    # what iosops/k8s/backup.py's restore Job mounts: the claim of pod 0 and the StatefulSet's PGDATA
    from iosops.k8s import backup as kb
    assert f"{sts['spec']['volumeClaimTemplates'][0]['metadata']['name']}-{sts['metadata']['name']}-0" == kb.PG_CLAIM
    mount = next(m["mountPath"] for m in pg["volumeMounts"] if m["name"] == "data")
    assert mount == kb.PG_MOUNT and cm["data"]["PGDATA"] == kb.PGDATA


def test_elasticsearch_snapshots_leave_the_pod(rendered):
    _, _, objs = rendered
    es = by(objs, "StatefulSet", "ios-elasticsearch")[0]["spec"]["template"]["spec"]
    env_names = {e["name"] for e in es["containers"][0]["env"]}
    assert "path.repo" not in env_names and "snapshots" not in {v["name"] for v in es["volumes"]}
    pols = {o["metadata"]["name"]: o["spec"] for o in by(objs, "NetworkPolicy")}
    assert pols["ios-elasticsearch-snapshots-egress"]["egress"] == [{"ports": [{"protocol": "TCP", "port": 443}]}]


def test_ops_config_with_an_s3_store(tmp_path):
    """An env with an S3 store and encryption: credentials and the age identity become file references
    to keys of Secret ios-backup, the ES repository goes to the bucket; values never appear."""
    from iosops.k8s import opsconfig
    env = load_env("prod", environ={}, overrides={"backup": {
        "components": ["postgres", "elasticsearch"], "encryption_recipient": "age1example",
        "encryption_key": {"env": "IOS_PROD_AGE_IDENTITY"},
        "store": {"kind": "s3", "bucket": "ios-backups", "prefix": "prod", "access_key_id": {"env": "K"},
                  "secret_access_key": {"env": "S"}}}})
    cfg = opsconfig.ops_config(env)
    assert cfg["backup"]["store"]["access_key_id"] == {"file": "/run/secrets/iosops/s3-access-key-id"}
    assert cfg["backup"]["store"]["secret_access_key"] == {"file": "/run/secrets/iosops/s3-secret-access-key"}
    assert cfg["backup"]["encryption_key"] == {"file": "/run/secrets/iosops/age-identity"}
    assert cfg["backup"]["elasticsearch_repository_settings"] == {
        "type": "s3", "settings": {"bucket": "ios-backups", "base_path": "prod/elasticsearch", "client": "default"}}
    assert "registry_password" not in cfg["build"] and "webhook_url" not in cfg["notify"]
    assert [i["key"] for i in opsconfig.secret_items(env)] == ["backup-password", "s3-access-key-id",
                                                               "s3-secret-access-key"]
    assert opsconfig.secret_items(env, restore=True)[-1] == {"key": "age-identity", "path": "age-identity"}
