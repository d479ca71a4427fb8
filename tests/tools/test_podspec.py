"""(tools tier: renders with kubectl kustomize) The pod-spec run's translation (iosops/k8s/podspec.py), on the rendered staging overlay: only podman's gaps
change; security contexts, env, mounts, probes and commands stay as rendered."""
import os
import stat

import pytest

from iosops.config import load_env
from iosops.k8s import podspec
from iosops.k8s.render import render
from iosops.runner import Runner

KEEP = ("securityContext", "env", "envFrom", "volumeMounts", "startupProbe", "readinessProbe", "livenessProbe")


@pytest.fixture(scope="module")
def rendered():
    return render(load_env("staging", environ={}), Runner(), "t1").objects


@pytest.fixture(scope="module")
def tr(rendered):
    return podspec.translate(rendered, "/w", skip=lambda o: "no image" if o["metadata"]["name"] == "ios-elasticsearch" else "")


def pods(rendered):
    for o in rendered:
        spec = o.get("spec", {})
        pod = spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec") or spec.get("template", {}).get("spec")
        if pod:
            yield o, pod


def test_local_image_and_expand():
    assert podspec.local_image("registry.staging.ios.internal:5000/iosops/api:t1") == "localhost/iosops/api:t1"
    assert podspec.local_image("iosops/redis:7") == "localhost/iosops/redis:7"
    assert podspec.expand("a=$(X) b=$(Y) c=$$(X)", {"X": "1"}) == "a=1 b=$(Y) c=$(X)"


def test_statefulsets_become_pods_named_after_their_service_datastores_first(tr):
    kinds = [(o["kind"], o["metadata"]["name"]) for o in tr.play if o["kind"] != "ConfigMap"]
    assert kinds[:2] == [("Pod", "ios-postgres"), ("Pod", "ios-redis")]
    assert {n for _, n in kinds[2:]} == {"ios-api-blue", "ios-api-green", "ios-walstream"}
    assert tr.skipped == ["StatefulSet/ios-elasticsearch: no image"]
    assert [j["metadata"]["name"] for j in tr.jobs] == ["ios-backup-run"]
    assert all(o["spec"]["replicas"] == 1 for o in tr.play if o["kind"] == "Deployment")


def test_pod_specs_stay_as_rendered_except_podmans_gaps(rendered, tr):
    out = {o["metadata"]["name"]: (o["spec"]["template"]["spec"] if o["kind"] == "Deployment" else o["spec"])
           for o in tr.play + tr.jobs if o["kind"] in ("Pod", "Deployment")}
    names = {"ios-postgres": "ios-postgres", "ios-redis": "ios-redis", "ios-backup": "ios-backup-run"}
    compared = 0
    for o, pod in pods(rendered):
        name = names.get(o["metadata"]["name"], o["metadata"]["name"])
        if name not in out:
            continue
        got = out[name]
        assert got["securityContext"] == pod["securityContext"]
        for before, after in zip(pod.get("initContainers", []) + pod["containers"],
                                 got.get("initContainers", []) + got["containers"], strict=True):
            for key in KEEP:
                assert after.get(key) == before.get(key), f"{name}/{before['name']}: {key} changed"
            assert after.get("resources") == before.get("resources")
            assert after["image"] == podspec.local_image(before["image"]) and "ports" not in after
            compared += 1
    assert compared >= 8


def test_postgres_args_expanded_volumes_converted(tr):
    pg = next(o for o in tr.play if o["metadata"]["name"] == "ios-postgres")["spec"]
    assert "max_slot_wal_keep_size=2GB" in pg["containers"][0]["args"]
    vols = {v["name"]: v for v in pg["volumes"]}
    assert vols["data"] == {"name": "data", "hostPath": {"path": "/w/pvc/data-ios-postgres-0", "type": "Directory"}}
    assert vols["init"]["configMap"]["name"].startswith("ios-postgres-init")
    assert "hostPath" in vols["secrets"] and "hostPath" in vols["run"]
    d = {x.path: x for x in tr.dirs}
    assert d["/w/pvc/data-ios-postgres-0"].gid == 999 and d["/w/pvc/data-ios-postgres-0"].mode == 0o2775
    sec = d["/w/secrets/ios-postgres/secrets"]
    assert sec.files == (("postgres-password", "ios-postgres", "postgres-password", 0o440),)
    assert ("ios-backup", "backup-password") in tr.secrets and ("ios-postgres", "postgres-password") in tr.secrets


def test_materialize_writes_secret_files_with_kubelet_ownership(tmp_path):
    tr = podspec.Translation(dirs=[podspec.HostDir(str(tmp_path / "s"), os.getuid(), os.getgid(), 0o2750,
                                                   (("pw", "sec", "key", 0o440),))])
    podspec.materialize(tr, lambda s, k: f"{s}/{k}-value")
    f = tmp_path / "s" / "pw"
    assert f.read_text() == "sec/key-value"
    assert stat.S_IMODE(f.stat().st_mode) == 0o440
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o2750


def test_podman_secret_json():
    assert podspec.podman_secret_json({"k": "v"}) == b'{"k": "dg=="}'
