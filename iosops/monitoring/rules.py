"""What the rule files promise, checked without Prometheus: every alert has a severity, summary,
description and a runbook that exists and says what to do, and a promtool test that fires it and
one that keeps it quiet. Pure functions over the YAML files (promtool itself runs in static.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import yaml

from . import RULE_TESTS_DIR, RULES_DIR, RUNBOOKS_DIR, SEVERITIES, rel


@dataclass
class Alert:
    name: str
    expr: str
    labels: dict
    annotations: dict
    file: str


@dataclass
class Coverage:
    firing: dict[str, int] = field(default_factory=dict)  # alert -> number of cases expecting it to fire
    quiet: dict[str, int] = field(default_factory=dict)   # alert -> number of cases expecting silence
    cases: int = 0                                        # alert_rule_test + promql_expr_test entries
    unknown: list[str] = field(default_factory=list)      # tests naming an alert that does not exist


def load_rule_groups(rules_dir: Path = RULES_DIR) -> list[tuple[Path, dict]]:
    out = []
    for path in sorted(rules_dir.glob("*.yml")):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            out.append((path, group))
    return out


def alerts(rules_dir: Path = RULES_DIR) -> list[Alert]:
    return [Alert(r["alert"], r["expr"], r.get("labels", {}), r.get("annotations", {}), rel(path))
            for path, group in load_rule_groups(rules_dir) for r in group.get("rules", []) if "alert" in r]


def recording_rules(rules_dir: Path = RULES_DIR) -> list[dict]:
    return [r for _, g in load_rule_groups(rules_dir) for r in g.get("rules", []) if "record" in r]


def test_files(tests_dir: Path = RULE_TESTS_DIR) -> list[Path]:
    return sorted(tests_dir.glob("*_test.yml"))


def coverage(test_paths: Iterable[Path], known: set[str]) -> Coverage:
    cov = Coverage()
    for path in test_paths:
        for test in (yaml.safe_load(path.read_text()) or {}).get("tests", []):
            cov.cases += len(test.get("promql_expr_test", []))
            for case in test.get("alert_rule_test", []):
                cov.cases += 1
                name = case.get("alertname", "")
                if name not in known:
                    cov.unknown.append(f"{rel(path)}: {name!r}")
                    continue
                bucket = cov.firing if case.get("exp_alerts") else cov.quiet
                bucket[name] = bucket.get(name, 0) + 1
    return cov


def runbook_problems(alert: Alert, runbooks_dir: Path = RUNBOOKS_DIR) -> list[str]:
    want = f"docs/runbooks/{alert.name}.md"
    if alert.annotations.get("runbook_url") != want:
        return [f"{alert.name}: runbook_url must be {want!r}, is {alert.annotations.get('runbook_url')!r}"]
    path = runbooks_dir / f"{alert.name}.md"
    if not path.is_file():
        return [f"{alert.name}: runbook {want} does not exist"]
    text = path.read_text()
    problems = []
    if not text.startswith(f"# {alert.name}\n"):
        problems.append(f"{alert.name}: {want} must start with '# {alert.name}'")
    # "says what to do": a Check and a Fix section, each with at least one step.
    for section in ("## Check", "## Fix"):
        body = text.split(section, 1)[1].split("\n## ", 1)[0] if section in text else ""
        if not any(line.lstrip().startswith(("-", "1.")) for line in body.splitlines()):
            problems.append(f"{alert.name}: {want} needs a '{section[3:]}' section with steps")
    return problems


def problems(rules_dir: Path = RULES_DIR, tests_dir: Path = RULE_TESTS_DIR,
             runbooks_dir: Path = RUNBOOKS_DIR) -> tuple[list[str], list[Alert], Coverage]:
    """Everything wrong with the alerts, their annotations, runbooks and test coverage."""
    found = alerts(rules_dir)
    out: list[str] = []
    names = [a.name for a in found]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        out.append(f"{dup}: defined more than once")
    for a in found:
        if a.labels.get("severity") not in SEVERITIES:
            out.append(f"{a.name} ({a.file}): severity must be one of {', '.join(SEVERITIES)}")
        for key in ("summary", "description"):
            if not str(a.annotations.get(key, "")).strip():
                out.append(f"{a.name} ({a.file}): missing annotation {key}")
        out += runbook_problems(a, runbooks_dir)
    cov = coverage(test_files(tests_dir), set(names))
    for name in names:
        if not cov.firing.get(name):
            out.append(f"{name}: no promtool test case where it fires (add one to {rel(tests_dir)}/)")
        if not cov.quiet.get(name):
            out.append(f"{name}: no promtool test case where it stays quiet (exp_alerts: [])")
    out += [f"test for an unknown alert: {u}" for u in cov.unknown]
    orphans = sorted(p.stem for p in runbooks_dir.glob("*.md") if p.stem not in set(names) and p.stem != "README")
    out += [f"runbook without an alert: docs/runbooks/{o}.md" for o in orphans]
    return out, found, cov
