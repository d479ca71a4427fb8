"""The day-2 tasks' pure parts, on captured output: container health from `docker ps`, --since/--tail,
the merged log timeline, image pruning decisions, Kubernetes rollouts, maintenance mode's file."""
import json

import pytest

from iosops.day2 import edge
from iosops.day2.probes import (ImageRow, Since, created_key, merge_logs, normal_ref, parse_container_images,
                                parse_images, parse_k8s_status, parse_kube_log_line, parse_ps, parse_since, parse_tail,
                                plan_prune)
from iosops.deploy import maintenance as mt
from iosops.errors import BadInput

# Captured from `docker ps --all --format PS_FORMAT` on this machine (docker 20.10).
PS = """\
3f2a\tiosops-itest_api-blue_1\tapi-blue\tiosops/api:t1\trunning\tUp 4 minutes (healthy)
3f2b\tiosops-itest_api-blue_2\tapi-blue\tiosops/api:t1\trunning\tUp 9 seconds (health: starting)
3f2c\tiosops-itest_api-green_1\tapi-green\tiosops/api:t0\texited\tExited (137) 2 minutes ago
3f2d\tiosops-itest_postgres_1\tpostgres\tiosops/postgres:15-bookworm\trunning\tUp 5 minutes (unhealthy)
3f2e\tiosops-itest_debug\t\tiosops/debian:bookworm\trunning\tUp 1 second
garbage line
"""


def test_parse_ps_health():
    got = {c.name: (c.service, c.state, c.health) for c in parse_ps(PS)}
    assert got == {"iosops-itest_api-blue_1": ("api-blue", "running", "healthy"),
                   "iosops-itest_api-blue_2": ("api-blue", "running", "starting"),
                   "iosops-itest_api-green_1": ("api-green", "exited", "exited"),
                   "iosops-itest_postgres_1": ("postgres", "running", "unhealthy"),
                   "iosops-itest_debug": ("", "running", "running")}


@pytest.mark.parametrize("text,want", [
    ("10m", Since(duration="10m")), ("1h30m", Since(duration="1h30m")), ("1.5h", Since(duration="1.5h")),
    ("2d", Since(duration="48h")), ("", Since()), ("2026-12-02", Since(time="2026-12-02T00:00:00Z")),
    ("2026-12-02T10:00:00Z", Since(time="2026-12-02T10:00:00Z")),
    ("2026-12-02T12:00:00+02:00", Since(time="2026-12-02T10:00:00Z")),
])
def test_since(text, want):
    assert parse_since(text) == want


@pytest.mark.parametrize("text", ["yesterday", "10", "-5m", "10 m", "2026-13-45", "2026-12-02T25:00:00Z", "1w", "m10"])
def test_since_garbage_is_bad_input(text):
    with pytest.raises(BadInput, match=r"--since .*not a duration \(e.g. 10m, 1h30m, 2d\) or a time"):
        parse_since(text)


def test_tail():
    assert (parse_tail(""), parse_tail("all"), parse_tail("0"), parse_tail(50)) == ("all", "all", "0", "50")
    for bad in ("-1", "ten", "1.5"):
        with pytest.raises(BadInput, match="--tail"):
            parse_tail(bad)


def test_merge_logs_sorts_by_time_across_hosts_at_nanosecond_precision():
    # docker trims trailing zeros: .5Z is later than .123456789Z, although shorter as text.
    per_host = {"web1": "nginx 2026-12-02T10:00:00.5Z GET /\napi 2026-12-02T10:00:01Z started\n",
                "db": "postgres 2026-12-02T10:00:00.123456789Z checkpoint\nError: No such container: x\n"}
    got = merge_logs(per_host)
    assert [(ll.host, ll.container, ll.ts) for ll in got] == [
        ("db", "Error:", ""), ("db", "postgres", "2026-12-02T10:00:00.123456789Z"),
        ("web1", "nginx", "2026-12-02T10:00:00.5Z"), ("web1", "api", "2026-12-02T10:00:01Z")]
    assert got[2].render() == "[web1/nginx] 2026-12-02T10:00:00.5Z GET /"


def test_kube_log_line():
    ll = parse_kube_log_line("[pod/ios-api-blue-5d9/api] 2026-12-02T10:00:00.1Z {\"event\": \"ready\"}")
    assert (ll.container, ll.ts, ll.text) == ("pod/ios-api-blue-5d9/api", "2026-12-02T10:00:00.1Z", '{"event": "ready"}')


IMAGES = """\
iosops/api\tt3\tsha256:3\t2026-12-02 10:00:03 +0000 UTC
iosops/api\tt2\tsha256:2\t2026-12-02 12:00:02 +0200 CEST
iosops/api\t<none>\tsha256:n\t2026-12-02 09:00:00 +0000 UTC
iosops/api\tt1\tsha256:1\t2026-12-02 10:00:01 +0000 UTC
"""


def test_images_and_created_order():
    rows = parse_images(IMAGES)
    assert [r.ref for r in rows] == ["iosops/api:t3", "iosops/api:t2", "iosops/api:t1"]  # <none> is never a candidate
    assert created_key(rows[1].created) == "2026-12-02T10:00:02"  # the zone is honoured
    assert normal_ref("reg:5000/iosops/api") == "reg:5000/iosops/api:latest" and normal_ref("a/b:c") == "a/b:c"
    ids, refs = parse_container_images("c1\tsha256:1\tiosops/api\nc2\tsha256:9\treg:5000/iosops/ops:t9\n")
    assert ids == {"sha256:1", "sha256:9"} and refs == {"iosops/api:latest", "reg:5000/iosops/ops:t9"}


def rows(*spec):
    return [ImageRow(repo, tag, f"sha256:{tag}", f"2026-12-0{day} 10:00:00 +0000 UTC") for repo, tag, day in spec]


@pytest.mark.parametrize("keep,used,named,removed", [
    (1, set(), set(), ["r/a:t2", "r/a:t1"]),
    (2, set(), set(), ["r/a:t1"]),
    (5, set(), set(), []),
    (1, {"sha256:t1"}, set(), ["r/a:t2"]),  # a container (even stopped) uses t1
    (1, set(), {"r/a:t2"}, ["r/a:t1"]),  # state.json names t2 (rollback)
    (1, {"sha256:t1"}, {"r/a:t2"}, []),
])
def test_plan_prune(keep, used, named, removed):
    plan = plan_prune(rows(("r/a", "t3", 3), ("r/a", "t1", 1), ("r/a", "t2", 2), ("r/b", "x", 1)), keep, used, set(), named)
    assert plan.remove == removed
    assert {"ref": "r/b:x", "why": f"one of the {keep} newest"} in plan.keep


def test_plan_prune_refuses_keep_0():
    with pytest.raises(BadInput, match="--keep 0: keep at least 1"):
        plan_prune([], 0, set(), set(), set())


def test_k8s_rollouts():
    dep = {"kind": "Deployment", "metadata": {"name": "ios-api-blue", "generation": 3,
                                              "labels": {"app.kubernetes.io/color": "blue"}},
           "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "api", "image": "r/api:v1"}]}}},
           "status": {"observedGeneration": 3, "readyReplicas": 3, "updatedReplicas": 3, "availableReplicas": 3}}
    stuck = json.loads(json.dumps(dep))
    stuck["metadata"].update(name="ios-api-green", labels={"app.kubernetes.io/color": "green"})
    stuck["status"].update(readyReplicas=1, conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded",
                                                         "message": "ReplicaSet has timed out progressing."}])
    newer = json.loads(json.dumps(dep))
    newer["metadata"].update(name="ios-walstream", generation=4, labels={})
    svc = {"kind": "Service", "metadata": {"name": "ios-api", "annotations": {"iosops.io/previous-colour": "green",
                                                                               "other": "x"}},
           "spec": {"selector": {"app.kubernetes.io/color": "blue"}}}
    st = parse_k8s_status(json.dumps(svc), json.dumps({"kind": "List", "items": [stuck, dep, newer]}))
    assert st["live"] == "blue" and st["annotations"] == {"iosops.io/previous-colour": "green"}
    got = {w["name"]: (w["live"], w["ready"], w["rollout"]) for w in st["workloads"]}
    assert got == {"ios-api-blue": (True, 3, "complete"),
                   "ios-api-green": (False, 1, "failed: ReplicaSet has timed out progressing."),
                   "ios-walstream": (False, 3, "progressing")}
    assert parse_k8s_status("", "")["live"] is None


def test_maintenance_file_round_trip():
    assert edge.parse_mode(mt.rule("disk swap (30 min)")) == "disk swap (30 min)"
    assert edge.parse_mode("") is None and edge.parse_mode(None) is None
    assert edge.clean_reason("  two   words ") == "two words" and edge.clean_reason("") == edge.DEFAULT_REASON
    for bad in ("it's", 'say "x"', "a;b", "$host", "{x}", "back\\slash", "x" * 201):
        with pytest.raises(BadInput, match="--reason"):
            edge.clean_reason(bad)
