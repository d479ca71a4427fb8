"""The offline half of `inv monitoring.check`: promtool and amtool on the real configs, every alert
covered by a firing and a quiet promtool test, runbooks, dashboards' structure, and every PromQL
expression of the rules and dashboards parsed by Prometheus' own parser (promtool)."""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..commands import promtool as pt
from ..config import Env
from ..runner import Runner
from . import ALERTMANAGER_DIR, PROMETHEUS_DIR, RULE_TESTS_DIR, RULES_DIR, grafana, rules
from .stack import render_prometheus

# Which Alertmanager receiver each severity must reach (amtool config routes test).
RECEIVER_BY_SEVERITY = {"critical": "slack-critical", "warning": "slack-warnings", "info": "blackhole"}
K8S_ROLES = {"node", "service", "pod", "endpoints", "endpointslice", "ingress"}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    problems: list[str] = field(default_factory=list)


@dataclass
class StaticReport:
    checks: list[Check] = field(default_factory=list)
    alerts: int = 0
    test_cases: int = 0
    firing_cases: int = 0
    quiet_cases: int = 0
    recording_rules: int = 0
    dashboards: int = 0
    dashboard_queries: int = 0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def _tool(runner: Runner, name: str, argv: list[str], cwd: Path) -> Check:
    r = runner.run(argv, mutating=False, check=False, cwd=cwd)
    out = (r.stdout + r.stderr).strip()
    tail = [ln for ln in out.splitlines() if ln.strip()][-12:]
    return Check(name, r.rc == 0, f"exit {r.rc}", [] if r.rc == 0 else tail)


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for rel_path, text in files.items():
        p = root / rel_path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def k8s_config_check(runner: Runner, scratch: Path) -> Check:
    """Debian's Prometheus is built without Kubernetes service discovery, so its promtool rejects
    `kubernetes_sd_configs`. Check the roles here, then let promtool check everything else of
    prometheus-k8s.yml with each SD block swapped for an empty static_configs."""
    cfg = yaml.safe_load((PROMETHEUS_DIR / "prometheus-k8s.yml").read_text())
    problems = []

    def strip(block: dict, where: str) -> None:
        for sd in block.pop("kubernetes_sd_configs", None) or []:
            if sd.get("role") not in K8S_ROLES:
                problems.append(f"{where}: kubernetes_sd_configs role {sd.get('role')!r} is not one of {sorted(K8S_ROLES)}")
            block.setdefault("static_configs", [])

    for i, am in enumerate((cfg.get("alerting") or {}).get("alertmanagers") or []):
        strip(am, f"alerting.alertmanagers[{i}]")
    d = scratch / "k8s"
    for sc in cfg.get("scrape_configs") or []:
        strip(sc, f"scrape job {sc.get('job_name')}")
        # In-pod files (service account token, cluster CA) exist only inside the cluster: point the
        # check at placeholders so promtool checks the rest.
        for block, key in ((sc.get("authorization") or {}, "credentials_file"), (sc.get("tls_config") or {}, "ca_file")):
            if block.get(key, "").startswith("/var/run/secrets/kubernetes.io/"):
                placeholder = d / "in-pod" / Path(block[key]).name
                placeholder.parent.mkdir(parents=True, exist_ok=True)
                placeholder.write_text("placeholder\n")
                block[key] = str(placeholder)
    _write_tree(d, {"prometheus.yml": yaml.safe_dump(cfg, sort_keys=False),
                    **{f"rules/{p.name}": p.read_text() for p in RULES_DIR.glob("*.yml")}})
    c = _tool(runner, "promtool check config prometheus-k8s.yml (Kubernetes SD blocks checked separately)",
              pt.check_config("prometheus.yml"), d)
    c.problems = problems + c.problems
    c.ok = c.ok and not problems
    return c


def parse_dashboard_queries(runner: Runner, scratch: Path) -> tuple[Check, int]:
    """Every dashboard query (variables substituted as Grafana would) becomes a recording rule in a
    scratch file, one group per query, so promtool's PromQL parser names the one that fails."""
    groups, index = [], {}
    for _path, dash in grafana.load_dashboards().items():
        for q in grafana.queries(dash):
            gname = f"q{len(groups)}"
            index[gname] = f"{dash.get('uid')} / {q.panel} / {q.ref}: {q.raw}"
            groups.append({"name": gname, "rules": [{"record": "iosops:dashboard_query", "expr": q.expr}]})
    f = scratch / "dashboard-queries.yml"
    f.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    r = runner.run(pt.check_rules([str(f)]), mutating=False, check=False)
    problems = []
    if r.rc != 0:
        for line in (r.stdout + r.stderr).splitlines():
            m = re.search(r'group "(q\d+)"', line)
            problems.append(f"{index[m.group(1)]} -> {line.strip()}" if m else line.strip())
        problems = [p for p in problems if p] or [f"promtool exit {r.rc}"]
    return Check("every dashboard query parses (promtool)", r.rc == 0, f"{len(groups)} queries", problems), len(groups)


def routes_check(runner: Runner, found: list[rules.Alert]) -> Check:
    problems = []
    cfg = str(ALERTMANAGER_DIR / "alertmanager.yml")
    for a in found:
        sev = a.labels.get("severity", "")
        r = runner.run(pt.am_routes_test(cfg, {"alertname": a.name, "severity": sev, "job": "x"}),
                       mutating=False, check=False)
        got = r.stdout.strip()
        if r.rc != 0 or got != RECEIVER_BY_SEVERITY.get(sev):
            problems.append(f"{a.name} (severity {sev}) routes to {got or r.stderr.strip()!r}, "
                            f"want {RECEIVER_BY_SEVERITY.get(sev)!r}")
    return Check("every alert routes to the receiver of its severity (amtool config routes test)",
                 not problems, f"{len(found)} alerts", problems)


def run(env: Env, runner: Runner) -> StaticReport:
    report = StaticReport()
    meta, found, cov = rules.problems()
    report.alerts, report.test_cases = len(found), cov.cases
    report.firing_cases, report.quiet_cases = sum(cov.firing.values()), sum(cov.quiet.values())
    report.recording_rules = len(rules.recording_rules())
    report.checks.append(Check("alerts: severity, summary, description, runbook; a firing and a quiet test each",
                               not meta, f"{len(found)} alerts, {cov.cases} test cases", meta))
    rule_files = sorted(str(p) for p in RULES_DIR.glob("*.yml"))
    report.checks.append(_tool(runner, "promtool check rules", pt.check_rules(rule_files), PROMETHEUS_DIR))
    report.checks.append(_tool(runner, "promtool test rules",
                               pt.test_rules([p.name for p in rules.test_files()]), RULE_TESTS_DIR))
    with tempfile.TemporaryDirectory(prefix="iosops-monitoring-") as tmp:
        scratch = Path(tmp)
        # The exact directory monitoring.up mounts (rendered intervals and file_sd targets for this env).
        _write_tree(scratch / "prometheus", render_prometheus(env))
        c = _tool(runner, f"promtool check config prometheus.yml (rendered for env {env.name})",
                  pt.check_config("prometheus.yml"), scratch / "prometheus")
        report.checks.append(c)
        report.checks.append(k8s_config_check(runner, scratch))
        parsed, n = parse_dashboard_queries(runner, scratch)
        report.checks.append(parsed)
        report.dashboard_queries = n
    report.checks.append(_tool(runner, "amtool check-config alertmanager.yml",
                               pt.am_check_config("alertmanager.yml"), ALERTMANAGER_DIR))
    report.checks.append(routes_check(runner, found))
    gp = grafana.problems()
    report.dashboards = len(grafana.load_dashboards())
    report.checks.append(Check("Grafana dashboards and provisioning: structure, datasource, variables, "
                               "generated == committed (no Grafana here)", not gp,
                               f"{report.dashboards} dashboards", gp))
    return report


def lines(report: StaticReport) -> list[str]:
    out = []
    for c in report.checks:
        out.append(f"{'ok  ' if c.ok else 'FAIL'} {c.name} ({c.detail})")
        out += [f"       {p}" for p in c.problems]
    out.append(f"{report.alerts} alerts, {report.recording_rules} recording rules, {report.test_cases} promtool "
               f"test cases ({report.firing_cases} firing, {report.quiet_cases} quiet, rest recording-rule), "
               f"{report.dashboards} dashboards with {report.dashboard_queries} queries")
    return out
