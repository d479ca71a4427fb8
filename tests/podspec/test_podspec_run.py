"""Pod-spec run (NOT Kubernetes): the rendered staging overlay's pods run under podman 4.3 `kube play`.

What it proves: the rendered pod specs start and work under their own security contexts (uid, read-only
root, all capabilities dropped — podman enforces them), the datastore images tolerate a read-only root,
the env/envFrom/secret/ConfigMap wiring is right (the API reaches PostgreSQL and Redis with the mounted
password, the backup role and the ops config work), the probes pass, and the backup CronJob's pod completes
against S3 (moto). What it does not prove: scheduling, Services (pods are reached by name on one podman
network), NetworkPolicies, PDBs, the HPA, admission (Pod Security), real PVCs, Elasticsearch (a FAKE stands
in for the API's /ready). Conversions: iosops/k8s/podspec.py.
"""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import boto3
import pytest
import requests

from iosops.k8s import podspec
from tests.podspec.conftest import PLAY_TIMEOUT_S, retry

pytestmark = pytest.mark.podspec


def workloads(run) -> list[tuple[str, dict]]:
    """(podman pod name, pod spec) of every overlay workload played (the FAKE Elasticsearch left out)."""
    out = []
    for obj, pod in zip([o for o in run.tr.play if o["kind"] in ("Pod", "Deployment")], run.pods, strict=True):
        if (obj["metadata"].get("labels") or {}).get("iosops.io/podspec") == "fake-elasticsearch":
            continue
        out.append((pod, obj["spec"]["template"]["spec"] if obj["kind"] == "Deployment" else obj["spec"]))
    return out


def port_of(run, pod: str, container: dict, port) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in run.tr.ports.get((pod, container["name"]), []) if p.get("name") == port)


def check_probe(run, pod: str, ctr_name: str, container: dict, probe: dict) -> None:
    if "exec" in probe:
        res = run.exec(ctr_name, *probe["exec"]["command"])
        assert res.returncode == 0, f"{ctr_name}: exec probe {probe['exec']['command']} exited {res.returncode}"
    elif "httpGet" in probe:
        url = f"http://{run.pod_ip(pod)}:{port_of(run, pod, container, probe['httpGet']['port'])}{probe['httpGet'].get('path', '/')}"
        try:
            code = requests.get(url, timeout=probe.get("timeoutSeconds", 1)).status_code
        except requests.RequestException as exc:
            raise AssertionError(f"{ctr_name}: GET {url}: {exc}") from None
        assert 200 <= code < 400, f"{ctr_name}: GET {url} answered {code}"
    elif "tcpSocket" in probe:
        addr = (run.pod_ip(pod), port_of(run, pod, container, probe["tcpSocket"]["port"]))
        try:
            socket.create_connection(addr, timeout=probe.get("timeoutSeconds", 1)).close()
        except OSError as exc:
            raise AssertionError(f"{ctr_name}: TCP {addr}: {exc}") from None
    else:
        raise AssertionError(f"{ctr_name}: a probe kind this run does not know: {sorted(probe)}")


def api_pods(run) -> list[str]:
    return [p for p, spec in workloads(run) if spec["containers"][0]["name"] == "api"]


def test_every_container_runs_and_passes_its_probes(podspec_run):
    """Every container of every played workload is running, and each of its probes (startup, readiness,
    liveness, exactly as rendered) passes, run by this test as the kubelet would (podman 4.3 runs no probes
    without systemd)."""
    run = podspec_run
    played = workloads(run)
    assert {p for p, _ in played} >= {"ios-postgres", "ios-redis", "ios-api-blue-pod-0", "ios-api-green-pod-0",
                                      "ios-walstream-pod-0"}
    assert [s.split(":")[0] for s in run.tr.skipped] == ["StatefulSet/ios-elasticsearch"]
    for pod, spec in played:
        for c in spec["containers"]:
            probes = [c[k] for k in ("startupProbe", "readinessProbe", "livenessProbe") if k in c]
            for attempt in retry(PLAY_TIMEOUT_S, 2):
                with attempt:
                    info = run.container(pod, c["name"])
                    assert info["State"] == "running", (f"{pod}/{c['name']} is {info['State']} (exit "
                                                        f"{info.get('ExitCode')}): {run.log_tail(info['Names'][0])}")
                    for probe in probes:
                        check_probe(run, pod, info["Names"][0], c, probe)


def effective(spec: dict, c: dict, key: str):
    return (c.get("securityContext") or {}).get(key, (spec.get("securityContext") or {}).get(key))


def test_pods_run_under_their_own_security_context(podspec_run):
    """Not only declared: inside each container the process runs as the rendered uid, the root filesystem
    refuses writes and no capability is left."""
    run = podspec_run
    checked = 0
    for pod, spec in workloads(run):
        for c in spec["containers"]:
            name = run.container(pod, c["name"])["Names"][0]
            uid = effective(spec, c, "runAsUser")
            assert uid and uid != 0, f"{pod}/{c['name']}: no non-root runAsUser rendered"
            assert run.exec(name, "id", "-u").stdout.strip() == str(uid)
            assert int(run.exec(name, "sh", "-c", "ps -o uid= -p 1 2>/dev/null || stat -c %u /proc/1")
                       .stdout.split()[0]) == uid, f"{name}: PID 1 is not uid {uid}"
            if effective(spec, c, "readOnlyRootFilesystem"):
                res = run.exec(name, "sh", "-c", "touch /podspec-write-test")
                assert res.returncode != 0 and "Read-only file system" in res.stderr, f"{name}: root is writable"
            if "ALL" in ((c.get("securityContext") or {}).get("capabilities") or {}).get("drop", []):
                status = run.exec(name, "cat", "/proc/1/status").stdout
                caps = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith("Cap")}
                assert caps["CapEff"] == caps["CapBnd"] == caps["CapPrm"] == "0000000000000000", f"{name}: {caps}"
            checked += 1
    assert checked >= 6


def test_api_is_ready_and_writes_postgres_and_redis(podspec_run):
    """/ready answers 200 from both API colours (PostgreSQL, Redis and the FAKE Elasticsearch answer); an
    item POSTed through the API is read back from PostgreSQL, then from Redis (X-Cache: hit), and the cache
    entry is in Redis (read with redis-cli in the Redis pod)."""
    run = podspec_run
    pods = api_pods(run)
    assert len(pods) == 2
    for pod in pods:
        for attempt in retry(60, 1):
            with attempt:
                resp = requests.get(f"http://{run.pod_ip(pod)}:8000/ready", timeout=5)
                assert resp.status_code == 200, f"{pod} /ready: {resp.status_code} {resp.text[:300]}"
        assert resp.json()["checks"] == {"postgres": "ok", "redis": "ok", "elasticsearch": "ok"}
    base = f"http://{run.pod_ip(pods[0])}:8000"
    created = requests.post(f"{base}/items", json={"name": run.prefix, "data": {"tier": "podspec"}}, timeout=10)
    assert created.status_code == 201, (created.text[:300], run.log_tail(run.container(pods[0], "api")["Names"][0]))
    item = created.json()
    other = f"http://{run.pod_ip(pods[1])}:8000"  # the other colour: same database, same cache
    first = requests.get(f"{other}/items/{item['id']}", timeout=10)
    assert first.status_code == 200 and first.json()["name"] == run.prefix
    assert first.headers["X-Cache"] == "miss"
    second = requests.get(f"{other}/items/{item['id']}", timeout=10)
    assert second.headers["X-Cache"] == "hit"
    cached = run.exec(run.container("ios-redis", "redis")["Names"][0], "redis-cli", "GET", f"ios:item:{item['id']}")
    assert run.prefix in cached.stdout


def test_backup_cronjob_pod_runs_to_completion(podspec_run):
    """The CronJob's pod template, run once as a Pod: `stackops backup --env staging` with the rendered
    ConfigMap and Secret files backs up PostgreSQL (as iosops_backup, the role the backup-role container
    made) and Redis to S3 (moto) and exits 0. Redis's volume is its own pod's: the RDB comes over the network
    (`redis-cli --rdb`) into the pod's /tmp emptyDir (before: `redis-check-rdb /data/dump.rdb` exited 1, the
    path CONFIG GET names being a directory of the Redis pod, absent from the backup pod)."""
    run = podspec_run
    assert len(run.tr.jobs) == 1
    job = run.tr.jobs[0]
    assert job["spec"]["restartPolicy"] == "Never"
    path = run.base / f"job-{job['metadata']['name']}.yaml"
    path.write_text(podspec.dump([*(o for o in run.tr.play if o["kind"] == "ConfigMap"), job]))  # podman reads them per file
    marker = f"podspec:backup:{run.prefix}"  # a key the backup's RDB must hold (its manifest's keyset counts it)
    assert run.exec(run.container("ios-redis", "redis")["Names"][0], "redis-cli", "SET", marker, "1").returncode == 0
    started = time.monotonic()
    run.podman.run("kube", "play", "--network", run.network, str(path), timeout=PLAY_TIMEOUT_S)
    name = f"{job['metadata']['name']}-{job['spec']['containers'][0]['name']}"
    for attempt in retry(240, 2):
        with attempt:
            state = run.podman.json("inspect", name)[0]["State"]
            assert state["Status"] == "exited", f"{name} still {state['Status']}"
    log = run.podman.run("logs", name, check=False)
    tail = (log.stdout + log.stderr)[-3000:]
    for value in run.values.values():  # the log is shown on failure: it must not hold a secret
        assert value not in tail, "a secret value appears in the backup pod's log"
    assert state["ExitCode"] == 0, f"backup pod exited {state['ExitCode']}: {tail}"
    s3 = boto3.client("s3", endpoint_url=run.moto_url, region_name="eu-central-1", aws_access_key_id=run.s3_keys[0],
                      aws_secret_access_key=run.s3_keys[1])
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=run.bucket, Prefix="staging/").get("Contents", [])]
    assert any(k.endswith("manifest.json") for k in keys), keys[:20]
    assert any("postgres" in k for k in keys) and any("redis" in k for k in keys), keys[:20]
    man = json.loads(s3.get_object(Bucket=run.bucket, Key=next(k for k in keys if k.endswith("manifest.json")))["Body"].read())
    rdb = next(a for a in man["artifacts"] if a["component"] == "redis")
    assert rdb["kind"] == "rdb" and rdb["size"] > 0 and man["fingerprints"]["redis"]["keys"] >= 1, (rdb, man["fingerprints"])
    # fetched into the pod's /tmp emptyDir (a host directory here), and not left there after its upload
    tmp = Path(next(v["hostPath"]["path"] for v in job["spec"]["volumes"] if v["name"] == "tmp"))
    assert (tmp / "iosops" / "redis").is_dir() and not list(tmp.rglob("*.rdb")), sorted(map(str, tmp.rglob("*")))
    assert time.monotonic() - started < 240
