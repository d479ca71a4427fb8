"""The Kubernetes edge and disruption budgets as rendered (real kustomize via `inv k8s.render`, no cluster):
the Ingress refuses the API's internal paths (/metrics, the OpenAPI schema and its UIs) to every client and
sends the security headers nginx/nginx.conf.tmpl sends on the compose edge, using only annotations a
default ingress-nginx accepts (no snippets); and no single-replica datastore blocks node drains unless that
is a documented decision. What the controller then does is not proven here (no cluster): see k8s/README.md."""
import ipaddress
import re

import pytest
import yaml

from tests.conftest import ROOT, run_inv

ENVS = ["staging", "prod"]
TAG = "edge-test-1"
ANN = "nginx.ingress.kubernetes.io/"
# The API's paths that must never be reachable from outside: (path, pathType). FastAPI serves the last three
# by default (docs_url, redoc_url, openapi_url); /metrics is the Prometheus endpoint (app/iosapi/main.py).
INTERNAL = {("/metrics", "Prefix"), ("/docs", "Prefix"), ("/redoc", "Prefix"), ("/openapi.json", "Exact")}
# ingress-nginx's own checks on custom-headers ConfigMaps (internal/ingress/annotations/customheaders):
# a name or value outside these makes the controller deny the location.
HEADER_NAME = re.compile(r"^[a-zA-Z\d\-_]+$")
HEADER_VALUE = re.compile(r"^[a-zA-Z\d_ :;.,\\/\"'?!(){}\[\]@<>=\-+*#$&`|~^%]+$")
# A PDB that leaves no eviction for a healthy workload blocks every drain; only these do it on purpose.
DRAIN_BLOCKERS = {"ios-postgres": "the primary database: a drain waits for an operator (k8s/README.md)"}


@pytest.fixture(scope="module", params=ENVS)
def rendered(request):
    proc = run_inv("k8s.render", "--env", request.param, "--tag", TAG)
    assert proc.returncode == 0, proc.stderr
    return request.param, [o for o in yaml.safe_load_all(proc.stdout) if o]


def by(objects, kind, name=None):
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def nginx_security_headers() -> dict[str, str]:
    """`add_header NAME "VALUE" always;` of the TLS server in nginx/nginx.conf.tmpl (the compose edge)."""
    text = (ROOT / "nginx/nginx.conf.tmpl").read_text()
    tls_server = text[text.index("listen 443 ssl"):]
    headers = dict(re.findall(r'^\s*add_header\s+([\w-]+)\s+"([^"]*)"\s+always;', tls_server, flags=re.M))
    assert {"Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"} <= set(headers)
    return headers


def paths(ingress):
    return {(p["path"], p["pathType"]) for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}


def test_internal_paths_are_denied_to_every_client_on_the_api_host(rendered):
    env, objs = rendered
    api = by(objs, "Ingress", "ios-api")[0]
    internal = by(objs, "Ingress", "ios-api-internal-paths")[0]
    assert paths(internal) == INTERNAL
    # the same host and TLS as the API's Ingress, so ingress-nginx merges them into one server, where the
    # longer paths win over ios-api's `/`
    assert [r["host"] for r in internal["spec"]["rules"]] == [r["host"] for r in api["spec"]["rules"]]
    assert internal["spec"]["tls"] == api["spec"]["tls"]
    assert internal["spec"]["ingressClassName"] == api["spec"]["ingressClassName"] == "nginx"
    assert paths(api) == {("/", "Prefix")}
    # denied to all of IPv4 and IPv6
    nets = [ipaddress.ip_network(n.strip()) for n in internal["metadata"]["annotations"][ANN + "denylist-source-range"].split(",")]
    assert {(n.version, n.prefixlen) for n in nets} == {(4, 0), (6, 0)}
    assert internal["metadata"]["annotations"][ANN + "force-ssl-redirect"] == "true"


def test_every_ingress_sends_nginx_s_security_headers_from_its_own_namespace(rendered):
    env, objs = rendered
    ns = f"ios-{env}"
    expected = nginx_security_headers()
    for ing in by(objs, "Ingress"):
        ref = ing["metadata"]["annotations"][ANN + "custom-headers"]
        cm_ns, _, cm_name = ref.partition("/")
        assert cm_ns == ing["metadata"]["namespace"] == ns, ref  # the controller reads the Ingress's namespace only
        cm = by(objs, "ConfigMap", cm_name)
        assert cm and cm[0]["metadata"]["namespace"] == ns, f"{ref}: no such ConfigMap in the render"
        assert cm[0]["data"] == expected
    for name, value in expected.items():
        assert HEADER_NAME.match(name) and HEADER_VALUE.match(value), (name, value)


def test_no_ingress_uses_a_snippet_annotation(rendered):
    """Snippets are off by default (controller >= 1.9) and rated Critical: an Ingress with one is refused."""
    _, objs = rendered
    for ing in by(objs, "Ingress"):
        assert not [a for a in ing["metadata"].get("annotations", {}) if a.endswith("-snippet")], ing["metadata"]["name"]


def test_the_controller_prerequisite_names_exactly_these_headers():
    """k8s/README.md tells the platform team which header names the controller must allow."""
    readme = (ROOT / "k8s/README.md").read_text()
    m = re.search(r"global-allowed-response-headers: \"([^\"]+)\"", readme)
    assert m, "k8s/README.md must give the controller's global-allowed-response-headers line"
    assert set(m.group(1).split(",")) == set(nginx_security_headers())


def _allowed_disruptions(pdb, replicas):
    spec = pdb["spec"]
    if "maxUnavailable" in spec:
        return min(int(spec["maxUnavailable"]), replicas)
    return replicas - int(spec["minAvailable"])


def test_no_disruption_budget_blocks_node_drains_by_accident(rendered):
    _, objs = rendered
    workloads = by(objs, "StatefulSet") + by(objs, "Deployment")
    for pdb in by(objs, "PodDisruptionBudget"):
        name, want = pdb["metadata"]["name"], pdb["spec"]["selector"]["matchLabels"]
        matched = [w for w in workloads
                   if want.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert matched, f"PDB {name} selects no workload"
        replicas = sum(w["spec"].get("replicas", 1) for w in matched)
        if replicas == 0:  # an idle blue-green colour
            continue
        if name in DRAIN_BLOCKERS:
            assert _allowed_disruptions(pdb, replicas) == 0, f"{name} no longer blocks drains: update DRAIN_BLOCKERS"
            continue
        assert _allowed_disruptions(pdb, replicas) >= 1, f"PDB {name} lets no pod of {replicas} be evicted"


def test_single_replica_redis_cache_can_be_evicted(rendered):
    _, objs = rendered
    redis = by(objs, "StatefulSet", "ios-redis")[0]
    pdb = by(objs, "PodDisruptionBudget", "ios-redis")[0]
    assert redis["spec"]["replicas"] == 1 and pdb["spec"] == {
        "maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "ios-redis"}}}
