"""Secrets hygiene: every secret the envs reference gets a unique sentinel value (IOSOPS-SENTINEL-<hex>-
<name>; the age identity is a real generated key), the main tasks run as a user runs them (`inv`
subprocesses), and no sentinel may appear in any stdout/stderr, audit line, state or log file, dry-run
plan, rendered or applied manifest, webhook message, backup manifest, kubectl argv, or in any layer,
config or history entry of the built API image.

Real: PostgreSQL 15 and Redis 7 on the host (backup_lab), their passwords set to the sentinels, S3 over
HTTP (moto_server) with sentinel credentials, age encryption, a Distribution registry for the push,
the Docker engine for the build, a local webhook receiver (stands in for Slack, not reachable here).
FAKE: kubectl answering for a cluster (tests/kubectl_replay.py), since no Kubernetes API server exists
here; `kubectl kustomize` is the real one.

Not run here, and why: `inv deploy --env local` for real (a full blue-green deploy takes minutes; its
dry-run is covered here and the real path's messages in test_deploy_stack.py), the staging compose
deploy (needs SSH hosts), `inv restore` (the lead's area; its secrets are the same references as the
backup's). The TLS private key is not a secret reference (a path on the host, or made by openssl
there): iosops never reads it, so there is no value to trace.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from iosops.config import deep_merge
from tests.conftest import free_port, ROOT, run_inv
from tests.integration.backup_lab import QUIET, destroy_lab, make_lab
from tests.integration.conftest import docker, image_layer_hits
from tests.integration.test_backup_reliability import moto  # noqa: F401 (fixture: moto_server + bucket)
from tests.integration.test_build_cli import registry  # noqa: F401 (fixture: a real local registry)
from tests.webhook_receiver import Receiver

CASES = ROOT / "tests/unit/k8s_plans"


@dataclasses.dataclass
class World:
    token: str
    ws: Path
    values: dict[str, str]
    needles: dict[str, str]  # label -> value searched for (labels only in failure messages)
    base: dict[str, str]  # env vars for every `inv` run (staging/prod references, state, actor)
    local: dict[str, str]  # env local: its references pointed at sentinel files, the lab, S3, age
    rx: Receiver
    lab: object
    redis_port: int
    moto_url: str

    def check(self, what: str, text: str) -> None:
        for label, n in self.needles.items():
            assert n not in text, f"a secret value ({label}) leaked into {what}"

    def check_proc(self, what: str, proc: subprocess.CompletedProcess) -> None:
        self.check(f"stdout of {what}", proc.stdout)
        self.check(f"stderr of {what}", proc.stderr)

    def check_files(self, root: Path, what: str) -> int:
        n = 0
        for p in sorted(root.rglob("*")):
            if p.is_file():
                self.check(f"{what} file {p.relative_to(root)}", p.read_bytes().decode(errors="replace"))
                n += 1
        return n

    def check_messages(self) -> None:
        self.check("webhook messages", json.dumps(self.rx.got))


def sentinel(token: str, name: str) -> str:
    return f"IOSOPS-SENTINEL-{token}-{name}"


@pytest.fixture(scope="module")
def world(tmp_path_factory, moto):  # noqa: F811  pytest injects the imported fixture by this parameter name
    token = uuid.uuid4().hex[:10]
    ws = tmp_path_factory.mktemp("hygiene")
    sec = ws / "secrets"
    sec.mkdir(mode=0o700)
    v = {name: sentinel(token, name) for name in (
        "postgres", "redis", "s3-key", "s3-secret", "registry", "staging-postgres", "prod-postgres", "staging-backup",
        "staging-registry", "prod-registry", "wrong-redis", "pasted", "staging-s3-key", "staging-s3-secret",
        "staging-age")}
    subprocess.run(["age-keygen", "-o", str(sec / "age.key")], check=True, capture_output=True)
    age_identity = next(l for l in (sec / "age.key").read_text().splitlines() if l.startswith("AGE-SECRET-KEY-"))
    age_recipient = subprocess.run(["age-keygen", "-y", str(sec / "age.key")], check=True, capture_output=True,
                                   text=True).stdout.strip()
    for name in ("postgres", "redis"):
        (sec / name).write_text(v[name])
    rx = Receiver(path=f"/services/T0/B0/{sentinel(token, 'webhook')}").__enter__()
    v["webhook"] = rx.url
    (sec / "webhook").write_text(rx.url)

    lab = make_lab("hygiene")
    # The real servers now require the sentinel passwords, so the backup can only work by using them.
    lab.sql(f"ALTER ROLE ios PASSWORD '{v['postgres']}'")
    redis_port = lab.overrides["backup"]["redis"]["port"]
    QUIET.run(["redis-cli", "-p", str(redis_port), "CONFIG", "SET", "requirepass", v["redis"]])

    backup = {
        "postgres": {"password": {"file": str(sec / "postgres")}},
        "redis": {"password": {"file": str(sec / "redis")}},
        "encryption_recipient": age_recipient, "encryption_key": {"file": str(sec / "age.key")},
        "store": {"kind": "s3", "bucket": "ios-backups", "prefix": f"hygiene-{token}", "endpoint_url": moto,
                  "access_key_id": {"env": "HYG_S3_KEY"}, "secret_access_key": {"env": "HYG_S3_SECRET"},
                  "max_attempts": 2, "connect_timeout_s": 2},
    }
    overrides = deep_merge(lab.overrides, {"backup": backup, "state_dir": str(ws / "state"),
                                           "secrets": {"postgres_password": {"file": str(sec / "postgres")},
                                                       "slack_webhook_url": {"file": str(sec / "webhook")}},
                                           "notify": {"webhook_url": {"file": str(sec / "webhook")}, "required": True}})
    local = dataclasses.replace(lab, overrides=overrides).cli_env()
    base = {
        "IOSOPS_STATE_DIR": str(ws / "state"), "IOSOPS_ACTOR": "hygiene@test",
        "HYG_S3_KEY": v["s3-key"], "HYG_S3_SECRET": v["s3-secret"],
        "IOS_STAGING_POSTGRES_PASSWORD": v["staging-postgres"], "IOS_PROD_POSTGRES_PASSWORD": v["prod-postgres"],
        "IOS_STAGING_BACKUP_PASSWORD": v["staging-backup"],
        # staging's S3 store and age identity go into its ios-backup Secret (kubectl stdin only)
        "IOS_STAGING_BACKUP_S3_ACCESS_KEY_ID": v["staging-s3-key"],
        "IOS_STAGING_BACKUP_S3_SECRET_ACCESS_KEY": v["staging-s3-secret"], "IOS_STAGING_BACKUP_AGE_IDENTITY": v["staging-age"],
        "IOS_STAGING_REGISTRY_PASSWORD": v["staging-registry"], "IOS_PROD_REGISTRY_PASSWORD": v["prod-registry"],
        "IOS_STAGING_SLACK_WEBHOOK_URL": rx.url, "IOS_PROD_SLACK_WEBHOOK_URL": rx.url,
    }
    needles = {"a sentinel": sentinel(token, ""), "the age identity": age_identity,
               "the webhook path": rx.secret_path}
    w = World(token, ws, v, needles, base, {**base, **local}, rx, lab, redis_port, moto)
    yield w
    rx.__exit__(None, None, None)
    subprocess.run(["redis-cli", "-p", str(redis_port), "CONFIG", "SET", "requirepass", ""],
                   env={**os.environ, "REDISCLI_AUTH": v["redis"]}, capture_output=True, timeout=30)
    destroy_lab(lab)


def test_config_show_prints_references_and_masks(world):
    for env in ("local", "staging", "prod"):
        vars_ = world.local if env == "local" else world.base
        for extra in ((), ("--json",)):
            proc = run_inv("config.show", "--env", env, *extra, env=vars_)
            assert proc.returncode == 0, proc.stderr
            world.check_proc(f"inv config.show --env {env} {' '.join(extra)}", proc)
        shown = json.loads(proc.stdout)
        # the sentinels were really in play: every reference resolves, shown as *** only
        assert shown["secrets"]["postgres_password"]["value"] == "***"
        assert shown["notify"]["webhook_url"]["value"] == "***"
        if env == "local":
            assert shown["backup"]["redis"]["password"]["value"] == "***"
            assert shown["backup"]["store"]["secret_access_key"]["value"] == "***"
        else:
            assert shown["build"]["registry_password"]["value"] == "***"


def test_backup_for_real_then_list_verify_and_dry_run(world):
    sent = len(world.rx.got)
    proc = run_inv("backup", "--env", "local", "--json", env=world.local)
    assert proc.returncode == 0, proc.stderr[-3000:]
    world.check_proc("inv backup", proc)
    man = json.loads(proc.stdout)
    assert set(man["components"]) == {"postgres", "redis"}
    assert all(a["encryption"] == "age" for a in man["artifacts"])
    for args in (("backups.list", "--env", "local"), ("backups.list", "--env", "local", "--json"),
                 ("backups.verify", "--env", "local", "--id", man["id"]),
                 ("backup", "--env", "local", "--dry-run"), ("backup", "--env", "local", "--dry-run", "--json"),
                 ("lock.audit", "--env", "local", "--json")):
        p = run_inv(*args, env=world.local)
        assert p.returncode == 0, (args, p.stderr[-2000:])
        world.check_proc("inv " + " ".join(args), p)
        if "--dry-run" in args:  # the message is planned (webhook masked), not sent (checked below)
            assert f"notify: POST http://127.0.0.1:{world.rx.port}/*** (backup success" in p.stdout, p.stdout
    verified = run_inv("backups.verify", "--env", "local", "--id", man["id"], "--json", env=world.local)
    assert json.loads(verified.stdout)[0]["ok"] is True  # decrypted with the sentinel-free age identity
    assert [m["attachments"][0]["title"] for m in world.rx.got[sent:]] == ["Backup OK: local"]  # dry-runs sent nothing
    world.check_messages()
    # every object in the bucket that is text (manifests, markers) and every state/metrics file
    import boto3

    s3 = boto3.client("s3", endpoint_url=world.moto_url, region_name="us-east-1", aws_access_key_id="x",
                      aws_secret_access_key="x")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="ios-backups", Prefix=f"hygiene-{world.token}/")["Contents"]]
    texts = [k for k in keys if k.endswith(".json")]
    assert any(k.endswith("manifest.json") for k in texts)
    for k in texts:
        world.check(f"s3 object {k}", s3.get_object(Bucket="ios-backups", Key=k)["Body"].read().decode())
    assert world.check_files(world.ws / "state", "state") >= 2  # audit.log, last run, ...
    world.check("backup metrics", Path(json.loads(world.local["IOSOPS_BACKUP__METRICS_FILE"])).read_text())


def test_failing_operations_leak_nothing(world, tmp_path):
    sent = len(world.rx.got)
    # a wrong Redis password (itself a sentinel): the backup fails on the real server
    wrong = {**world.local, "IOSOPS_BACKUP__REDIS__PASSWORD": json.dumps({"env": "HYG_WRONG_REDIS"}),
             "HYG_WRONG_REDIS": world.values["wrong-redis"]}
    proc = run_inv("backup", "--env", "local", "--only", "redis", env=wrong)
    assert proc.returncode == 1 and "check backup.redis.password" in proc.stderr, proc.stderr[-2000:]
    world.check_proc("a failing inv backup", proc)
    assert [m["attachments"][0]["title"] for m in world.rx.got[sent:]] == ["Backup FAILED: local"]
    # a secret pasted as a value instead of a reference: refused, and the value is not echoed
    proc = run_inv("config.show", "--env", "local", env={**world.local,
                                                          "IOSOPS_BACKUP__POSTGRES__PASSWORD": world.values["pasted"]})
    assert proc.returncode == 2 and "backup.postgres.password" in proc.stderr, proc.stderr
    world.check_proc("config.show with a pasted secret", proc)
    # a Kubernetes deploy whose rollout fails and is rolled back (fake kubectl)
    vars_ = fake_cluster(world, tmp_path, "deploy_rollout_fails")
    proc = run_inv("k8s.deploy", "--env", "prod", "--tag", "abc123", env=vars_)
    assert proc.returncode == 1 and "rolled back" in proc.stderr, proc.stderr[-2000:]
    world.check_proc("a failing inv k8s.deploy", proc)
    world.check_messages()
    world.check_files(world.ws / "state", "state")


def fake_cluster(world: World, tmp_path: Path, case: str) -> dict:
    spec = tmp_path / f"{case}.json"
    data = json.loads((CASES / f"{case}.json").read_text())
    data.pop("environ", None)
    spec.write_text(json.dumps(data))
    wrapper = tmp_path / "kubectl"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {ROOT / 'tests/kubectl_replay.py'} \"$@\"\n")
    wrapper.chmod(0o755)
    return {**world.base, "IOSOPS_K8S__KUBECTL": str(wrapper), "FAKE_KUBECTL_CASE": str(spec)}


def test_k8s_render_deploy_and_dry_run(world, tmp_path):
    for env in ("staging", "prod"):
        out = tmp_path / f"{env}.yaml"
        proc = run_inv("k8s.render", "--env", env, "--tag", "abc123", "--output", str(out), env=world.base)
        assert proc.returncode == 0, proc.stderr
        world.check_proc(f"inv k8s.render --env {env}", proc)
        assert out.stat().st_size > 10_000
        world.check(f"rendered manifests of {env}", out.read_text())
    # staging creates its ios-postgres Secret from the sentinel: it must travel on kubectl's stdin only
    (tmp_path / "staging-deploy").mkdir()
    vars_ = fake_cluster(world, tmp_path / "staging-deploy", "deploy_staging_creates_secret")
    proc = run_inv("k8s.deploy", "--env", "staging", "--tag", "abc123", env=vars_)
    assert proc.returncode == 0, proc.stderr[-2000:]
    world.check_proc("inv k8s.deploy --env staging", proc)
    argv_log = Path(vars_["FAKE_KUBECTL_CASE"] + ".log").read_text()
    assert '"apply", "--filename", "-"' in argv_log  # the Secret was applied (from stdin)
    world.check("kubectl argv", argv_log)
    applied = list((world.ws / "state" / "k8s" / "staging").glob("apply-*.yaml"))
    assert applied, "the applied manifest was not kept"
    # prod through the generic task, dry-run: the plan (with the masked webhook) and nothing applied
    (tmp_path / "prod-dry").mkdir()
    vars_ = fake_cluster(world, tmp_path / "prod-dry", "deploy_dry_run")
    proc = run_inv("deploy", "--env", "prod", "--tag", "abc123", "--dry-run", env=vars_)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "notify: POST http://127.0.0.1:" in proc.stdout and "/*** (deploy start" in proc.stdout
    world.check_proc("inv deploy --env prod --dry-run", proc)
    world.check_messages()
    world.check_files(world.ws / "state", "state")


def test_build_push_image_layers_and_local_deploy_dry_run(world, registry, docker_api, offline_images):  # noqa: F811  fixture parameter names shadow the imports by design
    tag = f"hygiene-{world.token}"
    # a sentinel file inside the checkout, where a careless build context would pick it up (git-ignored)
    planted = ROOT / ".iosops" / f"itest-hygiene-{world.token}"
    planted.mkdir(parents=True)
    (planted / "postgres_password").write_text(world.values["postgres"])
    vars_ = {**world.local, "IOSOPS_BUILD__REGISTRY": registry, "IOSOPS_BUILD__REGISTRY_USERNAME": "ci",
             "IOSOPS_BUILD__REGISTRY_PASSWORD": json.dumps({"env": "HYG_REGISTRY_PASSWORD"}),
             "HYG_REGISTRY_PASSWORD": world.values["registry"]}
    ref = f"{registry}/iosops/api:{tag}"
    try:
        proc = run_inv("build", "--tag", tag, "--push", "--json", env=vars_)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout)["pushed"] is True
        world.check_proc("inv build --push", proc)
        # Controls prove the scan reads what it claims: app code in a layer, the tag in the config.
        controls = [b"def _cache_key(item_id: int)", tag.encode()]
        hits = image_layer_hits(docker_api, ref, [n.encode() for n in world.needles.values()] + controls)
        assert {n for _, n in hits} == set(controls), f"secret values in the image at {[w for w, _ in hits]}"
        # the ops image of the release too (it runs with every backup secret mounted, never baked in)
        ops_ref, ops_controls = ref.replace("/iosops/api:", "/iosops/ops:"), [b"def backup_postgres(", tag.encode()]
        hits = image_layer_hits(docker_api, ops_ref, [n.encode() for n in world.needles.values()] + ops_controls)
        assert {n for _, n in hits} == set(ops_controls), f"secret values in the ops image at {[w for w, _ in hits]}"
        # the local blue-green deploy, planned with every local secret set (its real run: test_deploy_stack)
        # Its own ports: the user's own local stack may hold the default ones (the README's first command).
        stack = {**vars_, "IOSOPS_STACK__NAME": f"iosops-itest-hyg-{world.token[:6]}",
                 "IOSOPS_STACK__LABELS": '{"iosops.test": "1"}', "IOSOPS_DEPLOY__HTTP_PORT": str(free_port()),
                 "IOSOPS_DEPLOY__HTTPS_PORT": str(free_port())}
        proc = run_inv("deploy", "--env", "local", "--tag", tag, "--dry-run", env=stack)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "secrets/postgres_password" in proc.stdout and "notify: POST" in proc.stdout
        world.check_proc("inv deploy --env local --dry-run", proc)
    finally:
        shutil.rmtree(planted, ignore_errors=True)
        docker("rmi", ref)
        docker("rmi", ref.replace("/iosops/api:", "/iosops/ops:"))
    world.check_files(world.ws / "state", "state")
