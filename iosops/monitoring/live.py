"""The live half of `inv monitoring.check`: a throwaway local stack (the real reference API, PostgreSQL
and Redis containers) with Prometheus, Alertmanager and the real postgres/redis/node exporters from
`monitoring.up`, and the compose file's `walstream` service of the ops image streaming its WAL
(iosops.monitoring.ops); one real backup and verify through the compose file's `ops` service; bounded
traffic to the API; then every dashboard query runs on that Prometheus.

Required: every query of the API, PostgreSQL and Redis dashboards and of the platform dashboard's
Backups row returns data (except the entries of dashboards.NO_LIVE_DATA, each with its reason), the
backup and WAL metrics come from the walstream target, all scrape targets are up, every rule evaluates
without error, and Prometheus has discovered the Alertmanager. The Elasticsearch dashboard and the
platform dashboard's Kubernetes/hosts rows are run and reported, not required (no such systems here).
"""
from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .. import wait
from ..config import Env, deep_merge, load_env
from ..errors import OperationFailed
from ..ports import free_port
from ..runner import Runner
from ..stack.local import down as stack_down
from ..stack.local import QUICK, project_dir
from ..stack.local import up as stack_up
from . import dashboards, grafana
from . import ops as check_ops
from .stack import up as mon_up

REQUIRED_JOBS = ("ios-api", "postgres", "redis", "node", "alertmanager", "prometheus", "walstream")
# Data is not enough (a rate of 0 is data): the traffic must show up as values in each system.
FLOW_CHECKS = (
    ("API requests counted by the RED recording rules", 'sum(job:http_requests:rate5m{job="ios-api"}) > 0'),
    ("API p95 latency measured", 'job:http_request_duration_seconds:p95_5m{job="ios-api"} > 0'),
    ("PostgreSQL commits in database ios", 'sum(rate(pg_stat_database_xact_commit{datname="ios"}[1m])) > 0'),
    ("Redis cache hits from GET /items/{id}", "sum(rate(redis_keyspace_hits_total[1m])) > 0"),
    # The backup metrics come from the stack's own walstream (not from a textfile on this host).
    ("walstream streaming from PostgreSQL, its slot active",
     'iosops_walstream_up{job="walstream"} == 1 and on (env) max by (env) (iosops_walstream_slot_active{job="walstream"}) == 1'),
    ("the check's backup (ops container) served by walstream",
     'iosops_backup_last_success_timestamp_seconds{job="walstream", component="postgres"}'),
    ("the check's verify (ops container) served by walstream", 'iosops_backup_last_verify_success{job="walstream"} == 1'),
    ("a WAL segment archived by walstream", 'iosops_wal_archive_last_success_timestamp_seconds{job="walstream"}'),
)


def absent_reason(expr: str) -> str:
    """Why a report-only query has no data on the check stack."""
    for prefix, why in (("elasticsearch_", "no Elasticsearch on this machine"),
                        ("kube_", "no Kubernetes cluster here"), ("container_", "no Kubernetes cluster (cAdvisor) here"),
                        ("node_filesystem_", "filesystem collector off in the node-exporter container (see stack.py)")):
        if prefix in expr:
            return why
    return "MISSING"


@dataclass
class QueryResult:
    dashboard: str
    panel: str
    ref: str
    expr: str
    series: int
    required: bool
    excused: str = ""
    error: str = ""


@dataclass
class LiveReport:
    stack: str = ""
    prometheus_url: str = ""
    requests_sent: int = 0
    walstream: str = ""
    backup_id: str = ""
    verified: bool = False
    targets: dict[str, str] = field(default_factory=dict)
    rules_evaluated: int = 0
    rule_errors: list[str] = field(default_factory=list)
    alertmanagers: int = 0
    firing: list[str] = field(default_factory=list)
    flows: dict[str, bool] = field(default_factory=dict)
    results: list[QueryResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


PROFILES = (QUICK, "monitoring", "ops")


def check_env(base: Env, extra: Optional[dict] = None) -> Env:
    """A throwaway copy of the local env: unique stack name and free ports, fast scrapes; labels of the
    base env's stack (tests add iosops.test=1) are kept."""
    name = f"{base.cfg.stack.name}-moncheck-{uuid.uuid4().hex[:6]}"
    # The check's own backup store and (empty) host metrics folder, in its compose project's directory
    # (removed with it): the backup metrics must reach Prometheus through walstream.
    cdir = Path(base.state_dir) / "stacks" / name / "check"
    return load_env("local", root=base.root, overrides=deep_merge({
        "state_dir": str(base.state_dir),
        "stack": {"name": name, "api_port": free_port(), "labels": dict(base.cfg.stack.labels)},
        "backup": {"store": {"kind": "local", "path": str(cdir / "store")},
                   "metrics_file": str(cdir / "metrics" / "iosops_backup.prom")},
        "monitoring": {"prometheus_port": free_port(), "alertmanager_port": free_port(),
                       "scrape_interval": "5s", "evaluation_interval": "5s", "require_slack": False,
                       "targets": {"walstream": ["walstream:9898"]}}}, extra or {}))


def traffic(api_url: str, rounds: int = 4) -> int:
    """Bounded: `rounds` x ~20 requests, 2.5s apart covering every /items route, cache misses and hits, 404s and 422s."""
    import requests

    sent = 0
    with requests.Session() as http:
        for r in range(rounds):
            ids = []
            for i in range(4):
                resp = http.post(f"{api_url}/items", json={"name": f"moncheck-{r}-{i}", "data": {"i": i}}, timeout=10)
                sent += 1
                if resp.status_code == 201:
                    ids.append(resp.json()["id"])
            for item_id in ids:
                for _ in range(2):  # miss, then hit: feeds the Redis hit ratio
                    http.get(f"{api_url}/items/{item_id}", timeout=10)
                    sent += 1
            http.get(f"{api_url}/items?limit=10", timeout=10)
            http.get(f"{api_url}/items/987654321", timeout=10)  # 404
            http.post(f"{api_url}/items", json={"name": ""}, timeout=10)  # 422
            sent += 3
            if ids:
                http.put(f"{api_url}/items/{ids[0]}", json={"name": "renamed"}, timeout=10)
                http.delete(f"{api_url}/items/{ids[-1]}", timeout=10)
                sent += 2
            time.sleep(2.5)
    return sent


def prom_query(prom_url: str, expr: str) -> tuple[int, str]:
    import requests

    resp = requests.get(f"{prom_url}/api/v1/query", params={"query": expr}, timeout=10)
    body = resp.json()
    if body.get("status") != "success":
        return 0, str(body.get("error", resp.text[:200]))
    return len(body["data"]["result"]), ""


def _wait(what: str, fn, timeout: float, interval: float = 2.0):
    """Poll fn() -> (done, value) until done or timeout; returns (done, the last value) either way."""
    try:
        return True, wait.until(what, fn, timeout=timeout, interval=interval)
    except wait.WaitTimeout as exc:
        return False, exc.last


def wait_targets(report: LiveReport, prom_url: str, timeout: float) -> None:
    import requests

    def targets():
        data = requests.get(f"{prom_url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        found = {f"{t['labels']['job']} {t['labels']['instance']}": t["health"] for t in data}
        jobs_up = {k.split()[0] for k, v in found.items() if v == "up"}
        return set(REQUIRED_JOBS) <= jobs_up and all(v == "up" for v in found.values()), found

    done, report.targets = _wait("targets up", targets, timeout)
    if not done:
        down = [f"{k} ({v})" for k, v in report.targets.items() if v != "up"]
        missing = sorted(set(REQUIRED_JOBS) - {k.split()[0] for k in report.targets})
        report.problems.append(f"scrape targets not up after {timeout:.0f}s: {', '.join(down + missing)}")


def observe(report: LiveReport, prom_url: str, timeout: float) -> None:
    import requests

    def flows():
        for name, expr in FLOW_CHECKS:
            if not report.flows.get(name):
                report.flows[name] = prom_query(prom_url, expr)[0] > 0
        return all(report.flows.values()), None

    _wait("traffic visible", flows, timeout, interval=3.0)
    report.problems += [f"not seen live: {name} ({dict(FLOW_CHECKS)[name]})" for name, ok in report.flows.items() if not ok]

    all_queries = [(uid, q) for _, dash in grafana.load_dashboards().items() for q in grafana.queries(dash)
                   for uid in [dash.get("uid", "?")]]
    results: dict[int, QueryResult] = {}
    for i, (uid, q) in enumerate(all_queries):
        results[i] = QueryResult(uid, q.panel, q.ref, q.expr, 0, dashboards.live_required(uid, q.panel),
                                 dashboards.expected_empty(uid, q.panel) or "")

    def poll_queries():
        for r in results.values():
            if r.series == 0:
                r.series, r.error = prom_query(prom_url, r.expr)
        pending = [r for r in results.values() if r.required and not r.excused and r.series == 0]
        return not pending, pending

    done, pending = _wait("dashboard queries return data", poll_queries, timeout, interval=3.0)
    report.results = list(results.values())
    for r in report.results:
        if r.error:
            report.problems.append(f"{r.dashboard} / {r.panel} / {r.ref}: Prometheus error: {r.error}")
    for r in pending:
        report.problems.append(f"{r.dashboard} / {r.panel} / {r.ref}: no data after {timeout:.0f}s: {r.expr}")

    def rules():
        groups = requests.get(f"{prom_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rs = [r for g in groups for r in g["rules"]]
        return all(r.get("health") != "unknown" for r in rs) and rs, rs

    _, rs = _wait("rules evaluated", rules, 60)
    report.rules_evaluated = sum(1 for r in rs if r.get("health") == "ok")
    report.rule_errors = [f"{r['name']}: {r.get('health')} {r.get('lastError', '')}".strip()
                          for r in rs if r.get("health") != "ok"]
    report.problems += [f"rule does not evaluate cleanly: {e}" for e in report.rule_errors]

    def ams():
        active = requests.get(f"{prom_url}/api/v1/alertmanagers", timeout=10).json()["data"]["activeAlertmanagers"]
        return bool(active), len(active)

    _, report.alertmanagers = _wait("alertmanager discovered", ams, 60)
    if not report.alertmanagers:
        report.problems.append("Prometheus has not discovered the Alertmanager")
    alerts = requests.get(f"{prom_url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    report.firing = sorted(f"{a['labels']['alertname']} ({a['state']})" for a in alerts)


def teardown(env: Env, runner: Runner, report: LiveReport) -> None:
    """`inv down --volumes` for the throwaway stack. Docker can still list a just-removed container's
    endpoint on the network for a moment (seen under load): retry once, and report rather than hide."""
    for attempt in (1, 2):
        try:
            stack_down(env, runner, volumes=True)
            return
        except OperationFailed as exc:
            if attempt == 2:
                report.problems.append(f"teardown of {env.cfg.stack.name} failed ({exc}); run "
                                       f"`IOSOPS_STACK__NAME={env.cfg.stack.name} inv down --volumes`")
            time.sleep(3)


def live_check(base: Env, runner: Runner, api_image: str, keep: bool = False,
               timeout: float = 150.0, env: Optional[Env] = None, ops_image: str = "") -> LiveReport:
    """`ops_image`: the ops image for walstream and the backup (default: the one built with api_image)."""
    from ..deploy.stackfiles import ops_image_for

    start = time.monotonic()
    env = env or check_env(base)
    report = LiveReport(stack=env.cfg.stack.name)
    try:
        try:
            up = stack_up(env, runner, api_image, PROFILES, ops_image=ops_image)
        except OperationFailed as exc:  # it rolled back; a loaded machine can fail one health check
            runner.info(f"stack start failed once, retrying: {exc}")
            up = stack_up(env, runner, api_image, PROFILES, ops_image=ops_image)
        project, ops = check_ops.start(env, runner, ops_image or ops_image_for(env, api_image), timeout)
        report.walstream = ", ".join(c[:12] for c in ops.walstream)
        mon = mon_up(env, runner)
        report.prometheus_url = mon.prometheus_url
        # Traffic only after the first scrape, spread over several scrapes, so rates see it.
        runner.call(f"wait until every scrape target of {mon.prometheus_url} is up (timeout {timeout:.0f}s)",
                    wait_targets, report, mon.prometheus_url, timeout)
        check_ops.backup_and_verify(project, env, ops)
        report.backup_id, report.verified = ops.backup_id, ops.verified
        report.requests_sent = runner.call(f"send bounded traffic to {up.url} (4 rounds of ~20 requests)",
                                           traffic, up.url).value or 0
        runner.call(f"query {mon.prometheus_url}: traffic visible, every dashboard query, rules, alertmanagers "
                    f"(timeout {timeout:.0f}s)", observe, report, mon.prometheus_url, timeout)
    except OperationFailed as exc:
        report.problems.append(str(exc))
    finally:
        if not keep:
            teardown(env, runner, report)
            pdir = Path(project_dir(env))
            runner.call(f"rm -r {pdir}", shutil.rmtree, pdir, ignore_errors=True)
    report.seconds = round(time.monotonic() - start, 1)
    return report


def lines(report: LiveReport) -> list[str]:
    out = [f"live: stack {report.stack}, Prometheus {report.prometheus_url}, {report.requests_sent} API requests sent, "
           f"{report.seconds}s"]
    up = sum(1 for v in report.targets.values() if v == "up")
    out.append(f"  targets up: {up}/{len(report.targets)} ({', '.join(sorted(report.targets))})")
    out.append(f"  rules evaluated cleanly: {report.rules_evaluated}; alertmanagers discovered: {report.alertmanagers}")
    out.append(f"  walstream container: {report.walstream or 'none'}; backup taken by the ops container: "
               f"{report.backup_id or 'none'} (verified: {report.verified})")
    out += [f"  {'seen' if ok else 'NOT SEEN'}: {name}" for name, ok in report.flows.items()]
    by_dash: dict[str, list[QueryResult]] = {}
    for r in report.results:
        by_dash.setdefault(r.dashboard, []).append(r)
    for uid, rs in by_dash.items():
        with_data = sum(1 for r in rs if r.series)
        out.append(f"  {uid}: {with_data}/{len(rs)} queries returned data ({dashboards.live_requirement(uid)})")
        for r in rs:
            if not r.series:
                why = r.excused or ("MISSING" if r.required else absent_reason(r.expr))
                out.append(f"      no data: {r.panel} / {r.ref} ({why})")
    if report.firing:
        out.append(f"  alerts pending/firing on the check stack: {', '.join(report.firing)}")
    out += [f"FAIL {p}" for p in report.problems]
    return out
