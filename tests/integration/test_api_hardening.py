"""One client cannot knock the API over (issue 13, section 4). Against the built image with real PostgreSQL
and Redis containers (the `stack` fixture): bad input is 413/422 with a body naming the field, never 500;
an unhandled error answers 500 on a keep-alive connection that stays open while other clients are served;
the metrics' method label is bounded; HEAD probes answer; schemathesis fuzzes the app's own OpenAPI schema
and finds no server error.

The bounds are the ones documented in docs/api.md ("The API's input bounds", app/iosapi/guards.py): the
app's code is not importable here (its dependencies live in the image only), so they are restated.
Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.
"""
import http.client
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import requests

from iosops.runner import Runner
from iosops.stack.local import API_INTERNAL_PORT, container, labels, wait_ready
from tests.conftest import free_port
from tests.integration.conftest import docker, fault_image

MAX_BODY_BYTES = 64 * 1024
MAX_DATA_BYTES = 32 * 1024
MAX_DATA_DEPTH = 32
MAX_LIMIT = 500
MAX_OFFSET = 1_000_000
BIGINT_MAX = 2**63 - 1
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def nested(depth: int) -> dict:
    """A JSON object `depth` levels deep (the object itself is level 1)."""
    doc: dict = {}
    for _ in range(depth - 1):
        doc = {"a": doc}
    return doc


def send_json(method: str, url: str, raw: str | bytes) -> requests.Response:
    """The JSON text exactly as a client wrote it (escapes such as \\u0000 or \\ud800 included)."""
    body = raw.encode() if isinstance(raw, str) else raw
    return requests.request(method, url, data=body, headers={"content-type": "application/json"}, timeout=10)


# (what a client sends, where the 422 points, a word its message must contain: None = pydantic's own words)
BAD_BODIES = {
    "nul in name": (r'{"name": "a\u0000b"}', ["body", "name"], "NUL"),
    "nul in a data string": (r'{"name": "a", "data": {"k": "x\u0000"}}', ["body", "data"], "NUL"),
    "nul in a data key": (r'{"name": "a", "data": {"k\u0000": 1}}', ["body", "data"], "NUL"),
    "unpaired surrogate in name": (r'{"name": "a\ud800"}', ["body", "name"], None),
    "unpaired surrogate in data": (r'{"name": "a", "data": {"k": ["\udc00"]}}', ["body", "data"], "surrogate"),
    "NaN in data": ('{"name": "a", "data": {"x": NaN}}', ["body", "data"], "finite"),
    "overflowing number in data": ('{"name": "a", "data": {"x": 1e999}}', ["body", "data"], "finite"),
    "data too deep": (json.dumps({"name": "a", "data": nested(MAX_DATA_DEPTH + 1)}), ["body", "data"], "deeper"),
    "data too large": (json.dumps({"name": "a", "data": {"s": "x" * MAX_DATA_BYTES}}), ["body", "data"], "bytes"),
    "name too long": (json.dumps({"name": "n" * 201}), ["body", "name"], None),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_item_bodies_are_422_naming_the_field(stack, case):
    raw, loc, word = BAD_BODIES[case]
    item = requests.post(f"{stack.url}/items", json={"name": "target"}, timeout=5).json()
    for method, url in (("POST", f"{stack.url}/items"), ("PUT", f"{stack.url}/items/{item['id']}")):
        resp = send_json(method, url, raw)
        assert resp.status_code == 422, (method, resp.status_code, resp.text[:300])
        errors = resp.json()["detail"]
        assert [e["loc"] for e in errors] == [loc], errors
        assert word is None or word in errors[0]["msg"], errors
        assert "input" not in errors[0]  # the rejected input is not echoed back
    assert requests.get(f"{stack.url}/items/{item['id']}", timeout=5).json()["name"] == "target"  # unchanged


@pytest.mark.parametrize("query, loc", [
    ("limit=1&offset=99999999999999999999999", "offset"),  # beyond bigint: was a 500 from PostgreSQL
    (f"offset={MAX_OFFSET + 1}", "offset"),
    ("offset=-1", "offset"),
    ("limit=0", "limit"),
    (f"limit={MAX_LIMIT + 1}", "limit"),
])
def test_list_bounds_are_422(stack, query, loc):
    resp = requests.get(f"{stack.url}/items?{query}", timeout=5)
    assert resp.status_code == 422, resp.text[:300]
    assert [e["loc"] for e in resp.json()["detail"]] == [["query", loc]]


@pytest.mark.parametrize("item_id", ["0", str(BIGINT_MAX + 1), "99999999999999999999999"])
def test_item_ids_outside_bigint_are_422_for_every_method(stack, item_id):
    url = f"{stack.url}/items/{item_id}"
    for resp in (requests.get(url, timeout=5), requests.delete(url, timeout=5),
                 requests.put(url, json={"name": "x"}, timeout=5)):
        assert resp.status_code == 422, (resp.request.method, resp.text[:300])
        assert [e["loc"] for e in resp.json()["detail"]] == [["path", "item_id"]]


def test_values_at_the_bounds_are_accepted(stack):
    assert requests.get(f"{stack.url}/items?limit={MAX_LIMIT}&offset={MAX_OFFSET}", timeout=5).json() == {"items": []}
    deep = requests.post(f"{stack.url}/items", json={"name": "n" * 200, "data": nested(MAX_DATA_DEPTH)}, timeout=5)
    assert deep.status_code == 201, deep.text[:300]
    big = {"s": "x" * (MAX_DATA_BYTES - len('{"s":""}'))}  # exactly MAX_DATA_BYTES as compact JSON
    assert requests.post(f"{stack.url}/items", json={"name": "big", "data": big}, timeout=5).status_code == 201
    assert requests.get(f"{stack.url}/items/{BIGINT_MAX}", timeout=5).status_code == 404


def test_request_bodies_beyond_the_limit_are_413(stack):
    raw = json.dumps({"name": "a", "data": {"s": "x" * MAX_BODY_BYTES}}).encode()
    declared = send_json("POST", f"{stack.url}/items", raw)  # Content-Length says it: refused unread
    assert declared.status_code == 413 and "65536 bytes" in declared.json()["detail"], declared.text[:300]

    def chunks():  # no Content-Length: counted as it arrives
        for i in range(0, len(raw), 8192):
            yield raw[i:i + 8192]

    chunked = requests.post(f"{stack.url}/items", data=chunks(), headers={"content-type": "application/json"},
                            timeout=10)
    assert chunked.request.headers.get("transfer-encoding") == "chunked"
    assert chunked.status_code == 413 and "65536 bytes" in chunked.json()["detail"], chunked.text[:300]


@pytest.fixture(scope="module")
def fault_api(stack, stack_env, api_image):
    """A second API container of the stack from the test-only fault image (the shipped app plus GET
    /_test/fail, which raises): the networks, settings and secret files of the compose `api` container,
    copied from it, so it uses the same database and Redis as the same least-privilege users."""
    image = fault_image(api_image.image)
    port = free_port()
    info = json.loads(docker("inspect", container(stack_env, Runner(), "api")).stdout)[0]
    nets = sorted(info["NetworkSettings"]["Networks"])
    edge = next(n for n in nets if n.endswith("_edge"))  # the one that can publish a port
    name = f"{stack_env.cfg.stack.name}-api-faults"
    argv = ["create", "--name", name, "--network", edge, "--publish", f"127.0.0.1:{port}:{API_INTERNAL_PORT}",
            "--read-only", "--tmpfs", "/tmp:rw,noexec,nosuid,size=64m", "--memory", "512m"]
    argv += [a for k, v in sorted(labels(stack_env).items()) for a in ("--label", f"{k}={v}")]
    argv += [a for e in info["Config"]["Env"] for a in ("--env", e)]
    argv += [a for m in info["Mounts"] if m["Type"] == "bind" for a in ("--volume", f"{m['Source']}:{m['Destination']}:ro")]
    try:
        made = docker(*argv, image)
        assert made.returncode == 0, made.stderr
        for net in nets:
            if net != edge:
                docker("network", "connect", net, name)
        assert docker("start", name).returncode == 0
        url = f"http://127.0.0.1:{port}"
        wait_ready(Runner(), f"{url}/ready", 60)
        yield {"url": url, "port": port, "name": name}
    finally:
        docker("rm", "--force", name)
        docker("rmi", image)


def test_a_stream_of_500s_keeps_its_connection_and_other_clients_are_served(fault_api):
    """The old finding (docs/development.md, "Fixed finding: 500s and keep-alive"): uvicorn closed the keep-alive connection after each unhandled error, and
    nginx counted that against the replica until every replica was down (502 for everyone)."""
    port, stop = fault_api["port"], threading.Event()
    other = {"statuses": Counter(), "errors": Counter(), "new_sockets": 0}

    def other_client() -> None:  # its own keep-alive connection, bounded in count and time
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.connect()
        sock, paths, deadline = conn.sock, ["/health", "/ready", "/items?limit=1", "/version"], time.monotonic() + 90
        for i in range(3000):
            if stop.is_set() or time.monotonic() > deadline:
                break
            try:
                conn.request("GET", paths[i % len(paths)])
                resp = conn.getresponse()
                resp.read()
                other["statuses"][resp.status] += 1
            except (OSError, http.client.HTTPException) as exc:
                other["errors"][type(exc).__name__] += 1
                conn.close()
            if conn.sock is not sock:
                other["new_sockets"] += 1
                sock = conn.sock
        conn.close()

    thread = threading.Thread(target=other_client, daemon=True)
    thread.start()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.connect()
    first, answers, dropped = conn.sock, [], None
    try:
        for _ in range(200):
            conn.request("GET", "/_test/fail")
            resp = conn.getresponse()
            answers.append((resp.status, resp.getheader("connection"), resp.read(), conn.sock is first))
    except (OSError, http.client.HTTPException) as exc:
        dropped = f"connection dropped after {len(answers)} answers: {type(exc).__name__}"
    finally:
        stop.set()
        thread.join(timeout=30)
        conn.close()
    print(f"200 x GET /_test/fail: {Counter(st for st, _, _, _ in answers)} on one socket; other client "
          f"meanwhile: {dict(other['statuses'])}, errors {dict(other['errors'])}, new sockets {other['new_sockets']}")
    assert dropped is None, dropped
    assert len(answers) == 200
    assert {(s, c) for s, c, _, _ in answers} == {(500, None)}  # 500s, none saying "Connection: close"
    assert all(json.loads(b) == {"detail": "internal server error"} for _, _, b, _ in answers)
    assert all(same for _, _, _, same in answers), "the 500s did not all come over the first socket"
    assert sum(other["statuses"].values()) > 0 and set(other["statuses"]) == {200}, other
    assert not other["errors"] and other["new_sockets"] == 0, other
    assert requests.get(f"{fault_api['url']}/ready", timeout=5).status_code == 200
    logs = docker("logs", fault_api["name"])
    assert "unhandled error in GET /_test/fail" in logs.stderr + logs.stdout  # logged, not swallowed
    assert "RuntimeError: injected failure" in logs.stderr + logs.stdout


def _metric_lines(url: str, want: str, timeout: float = 5) -> str:
    """/metrics once `want` shows (each gunicorn worker writes its own multiprocess file: poll briefly)."""
    deadline = time.monotonic() + timeout
    body = requests.get(f"{url}/metrics", timeout=5).text
    while want not in body and time.monotonic() < deadline:
        time.sleep(0.2)
        body = requests.get(f"{url}/metrics", timeout=5).text
    return body


def test_metrics_method_label_is_bounded(stack):
    invented = ["FOO", "BREW", "PROPFIND", "get", f"X{uuid.uuid4().hex[:10].upper()}"]
    host, port = stack.url.removeprefix("http://").split(":")
    for method in invented:  # http.client sends the method as given (requests would upper-case "get")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            conn.request(method, "/health")
            assert conn.getresponse().status == 405, method
        finally:
            conn.close()
    body = _metric_lines(stack.url, 'http_requests_total{method="other",route="/health",status="405"}')
    counts = dict(re.findall(r'^http_requests_total\{method="([^"]*)",route="/health",status="405"\} (\S+)$',
                             body, re.MULTILINE))
    assert float(counts.get("other", 0)) >= len(invented), counts
    methods = set(re.findall(r'^http_request\w*\{(?:le="[^"]*",)?method="([^"]*)"', body, re.MULTILINE))
    assert methods <= KNOWN_METHODS | {"other"}, methods - KNOWN_METHODS


def test_head_probes_answer_like_get_without_a_body(stack):
    for path in ("/health", "/ready"):
        head = requests.head(f"{stack.url}{path}", timeout=5)
        assert head.status_code == requests.get(f"{stack.url}{path}", timeout=5).status_code == 200, path
        assert head.content == b"" and head.headers["content-type"] == "application/json"


def test_schemathesis_finds_no_server_error(stack, tmp_path):
    """Every operation of the app's own /openapi.json, generated positive and negative inputs, then stateful
    sequences, bounded: at most 25 examples per operation and phase, 45 s in all, one worker, 5 s per request."""
    report = tmp_path / "schemathesis.json"
    st = Path(sys.executable).with_name("st")
    proc = subprocess.run(
        [str(st), "run", f"{stack.url}/openapi.json", "--checks", "not_a_server_error", "--max-examples", "25",
         "--max-time", "45", "--workers", "1", "--request-timeout", "5", "--generation-database", "none",
         "--no-color", "--report", "json", "--report-json-path", str(report)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-2000:]
    run = json.loads(report.read_text())
    summary = (f"schemathesis {run['schemathesis_version']}: {run['test_cases']['generated']} cases, "
               f"{run['operations']['tested']}/{run['operations']['total']} operations, {run['running_time']:.0f}s, seed {run['seed']}")
    print(summary)
    assert run["failures"] == [] and run["errors"] == [], f"{summary}\n{proc.stdout[-6000:]}"
    assert proc.returncode == 0, f"{summary}\n{proc.stdout[-3000:]}"
    assert run["test_cases"]["generated"] >= 100, summary
    assert run["operations"]["tested"] == run["operations"]["total"] >= 9, summary
