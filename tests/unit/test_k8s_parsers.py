"""The deploy's probes are a command plus a pure parser: these parse captured kubectl/smoke output."""
import json

from iosops.k8s.deploy import parse_smoke, parse_state


def dep(name, replicas, image, rev="3"):
    return {"metadata": {"name": name, "annotations": {"deployment.kubernetes.io/revision": rev}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "sidecar", "image": "x:1"}, {"name": "api", "image": image}]}}}}


def test_state_reads_live_colour_tags_and_revisions():
    svc = {"kind": "Service", "metadata": {"name": "ios-api", "annotations": {
        "iosops.io/switched-at": "2026-11-27T21:50:00Z", "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"selector": {"app.kubernetes.io/name": "ios-api", "app.kubernetes.io/color": "green"}}}
    deps = {"kind": "List", "items": [dep("ios-api-blue", 0, "reg.example:5000/iosops/api:old1", "7"),
                                      dep("ios-api-green", 4, "reg.example:5000/iosops/api:new2", "9")]}
    s = parse_state(json.dumps(svc), json.dumps(deps))
    assert (s.live, s.replicas, s.tags, s.revisions) == (
        "green", {"blue": 0, "green": 4}, {"blue": "old1", "green": "new2"}, {"blue": 7, "green": 9})
    assert s.annotations == {"iosops.io/switched-at": "2026-11-27T21:50:00Z"}  # only ours


def test_selector_on_a_missing_deployment_means_nothing_is_live():
    svc = {"kind": "Service", "metadata": {"name": "ios-api"}, "spec": {"selector": {"app.kubernetes.io/color": "green"}}}
    assert parse_state(json.dumps(svc), "").live is None
    assert parse_state("", json.dumps({"kind": "List", "items": []})).live is None
    untagged = parse_state("", json.dumps(dep("ios-api-blue", 3, "reg.example:5000/iosops/api")))
    assert untagged.tags == {"blue": ""}


def test_smoke_verdicts():
    ok = {"/ready": {"status": 200, "body": {}}, "/version": {"status": 200, "body": {"git_sha": "t1"}}}
    assert parse_smoke("noise\n" + json.dumps(ok), "t1") is None
    assert "expected 't2'" in parse_smoke(json.dumps(ok), "t2")
    down = {**ok, "/ready": {"status": 503, "error": "HTTP Error 503"}}
    assert parse_smoke(json.dumps(down), "t1") == "/ready answered 503 (HTTP Error 503)"
    assert parse_smoke("", "t1").startswith("no result from the smoke test")
