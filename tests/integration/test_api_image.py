"""The API image on a real Docker engine with real PostgreSQL and Redis containers."""
import json
import time

import requests

from iosops.runner import Runner
from iosops.stack.local import container
from tests.conftest import ROOT
from tests.integration.conftest import docker, image_layer_hits


def test_stack_is_ready_with_every_check(stack):
    assert stack.ready == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}}
    assert "0001_create_items" in stack.migrations


def test_container_is_healthy_and_runs_as_non_root(stack, stack_env, api_image):
    name = container(stack_env, Runner(), "api")
    assert docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip() == "healthy"
    assert docker("exec", name, "id", "-u").stdout.strip() == "10001"
    config = json.loads(docker("image", "inspect", api_image.image).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert config["Healthcheck"]["Test"][0] == "CMD"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.revision"] == api_image.tag
    assert labels["org.opencontainers.image.created"].endswith("Z")


def test_version_reports_the_build(stack, api_image):
    assert requests.get(f"{stack.url}/version", timeout=5).json()["git_sha"] == api_image.tag


def test_metrics_count_requests_by_route_and_status(stack):
    assert requests.get(f"{stack.url}/items/999999999", timeout=5).status_code == 404  # a templated route
    want = 'http_requests_total{method="GET",route="/items/{item_id}",status="404"}'
    # Each gunicorn worker writes its own multiprocess file; /metrics may be answered by the other worker
    # before the first one's sample is visible: poll briefly (seen once under load average ~9).
    deadline = time.monotonic() + 5
    body = requests.get(f"{stack.url}/metrics", timeout=5).text
    while want not in body and time.monotonic() < deadline:
        time.sleep(0.2)
        body = requests.get(f"{stack.url}/metrics", timeout=5).text
    assert want in body
    assert 'http_request_duration_seconds_bucket{le="0.005",method="GET",route="/ready",status="200"}' in body


def test_crud_with_redis_cache(stack):
    url = f"{stack.url}/items"
    item = requests.post(url, json={"name": "probe", "data": {"k": 1}}, timeout=5).json()
    first = requests.get(f"{url}/{item['id']}", timeout=5)
    second = requests.get(f"{url}/{item['id']}", timeout=5)
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")
    updated = requests.put(f"{url}/{item['id']}", json={"name": "probe2"}, timeout=5).json()
    assert updated["name"] == "probe2"
    assert requests.get(f"{url}/{item['id']}", timeout=5).json()["name"] == "probe2"  # cache invalidated
    assert requests.delete(f"{url}/{item['id']}", timeout=5).status_code == 204
    assert requests.get(f"{url}/{item['id']}", timeout=5).status_code == 404
    assert requests.post(url, json={"name": ""}, timeout=5).status_code == 422


def test_ready_fails_when_redis_stops_and_recovers(stack, stack_env):
    redis = container(stack_env, Runner(), "redis")
    docker("stop", redis)
    try:
        resp = requests.get(f"{stack.url}/ready", timeout=10)
        assert resp.status_code == 503 and resp.json()["checks"]["redis"].startswith("fail")
        assert requests.head(f"{stack.url}/ready", timeout=10).status_code == 503  # load balancers probe with HEAD
        assert requests.get(f"{stack.url}/health", timeout=5).status_code == 200  # liveness unaffected
    finally:
        docker("start", redis)
    # Recovered means every worker answers: 5 consecutive 200s (requests spread over the workers).
    deadline, streak, last = time.monotonic() + 30, 0, None
    while time.monotonic() < deadline and streak < 5:
        last = requests.get(f"{stack.url}/ready", timeout=10)
        streak = streak + 1 if last.status_code == 200 else 0
        time.sleep(0.2)
    assert streak == 5, (last.text, docker("logs", "--tail", "5", redis).stdout)


def test_runtime_image_carries_no_toolchain_pip_or_build_cas(api_image, docker_api):
    probe = docker("run", "--rm", "--entrypoint", "sh", api_image.image, "-c",
                   "for c in gcc cc make pip pip3; do command -v $c || echo no-$c; done; "
                   "ls /var/lib/apt/lists | wc -l; "
                   "ls /tmp/build-ca /tmp/ca-bundle.pem 2>&1; ls /root/.cache 2>&1")
    out = probe.stdout.splitlines()
    assert out[:5] == ["no-gcc", "no-cc", "no-make", "no-pip", "no-pip3"], out
    assert out[5] == "0"
    assert all("No such file" in l or "Permission denied" in l for l in out[6:]), out


def test_extra_ca_certificates_never_reach_the_image(api_image, docker_api, build_cas):
    """The build trusts extra CAs (build.extra_ca_dir) in the builder stage only. The fixture stages this
    machine's CAs, if any, plus a throwaway test CA, so this never passes vacuously: the builder stage saw
    every staged certificate, docker/.build-ca/ is empty again, and no layer, config or history of the
    image holds any of them."""
    certs = build_cas["certs"]
    assert build_cas["test_ca"] in certs
    needles = [c.read_bytes().strip().splitlines()[1] for c in certs]  # first base64 line of each cert
    log = api_image.build_log
    assert any(f"stage {len(certs)} extra CA certificate(s)" in a for a in api_image.build_actions), api_image.build_actions
    assert not list((ROOT / "docker/.build-ca").glob("*.crt")), "staged certificates were left behind"
    # The builder stage's COPY of docker/.build-ca/ (an intermediate image of the classic builder) holds
    # each certificate byte for byte: what the stage's pip run trusts (PIP_CERT, docker/Dockerfile).
    copied = builder_ca_step(log)
    listing = docker("run", "--rm", "--entrypoint", "sh", copied, "-c",
                     "cd /tmp/build-ca && for f in *.crt; do echo \"$f $(sha256sum < \"$f\" | cut -c1-64)\"; done")
    import hashlib
    assert sorted(listing.stdout.splitlines()) == sorted(
        f"extra-{c.name} {hashlib.sha256(c.read_bytes()).hexdigest()}" for c in certs), listing
    hits = image_layer_hits(docker_api, api_image.image, needles)
    assert hits == []
    print(f"checked {len(needles)} extra CA certificate(s) ({len(needles) - 1} of this machine) against every layer")


def builder_ca_step(log: list[str]) -> str:
    """The image id the builder stage's `COPY docker/.build-ca/` step made, from the verbose build log."""
    import re

    for i, line in enumerate(log):
        if "COPY docker/.build-ca/" in line:
            for after in log[i + 1:i + 4]:
                m = re.match(r"^\s+---> ([0-9a-f]{12,})$", after)
                if m:
                    return m.group(1)
    raise AssertionError("the build log names no image for the COPY of docker/.build-ca/ (classic builder expected)")
