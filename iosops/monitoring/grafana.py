"""Grafana has no package in any registry reachable here, so dashboards and provisioning files are
validated structurally (what Grafana needs to load them) and their queries are parsed by promtool and
run against a live Prometheus (static.py, live.py). Nothing here starts Grafana.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import DASHBOARDS_DIR, PROVISIONING_DIR, rel
from .dashboards import all_rendered

PANEL_TYPES = {"row", "stat", "timeseries", "gauge", "bargauge", "table", "text", "heatmap"}
BUILTIN_VARS = {"__rate_interval": "1m", "__interval": "30s", "__range": "1h"}
VAR_RE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}")
LABEL_VALUES_RE = re.compile(r"^label_values\((?:(.+),\s*)?(\w+)\)$")


@dataclass
class Query:
    dashboard: str   # uid
    panel: str       # title ("variable <name>" for template variable queries)
    ref: str         # refId
    raw: str         # as written in the dashboard
    expr: str        # variables substituted: what Prometheus gets


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> dict[Path, dict]:
    out = {}
    for path in sorted(directory.glob("*.json")):
        out[path] = json.loads(path.read_text())
    return out


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace Grafana variables the way Grafana would for a query: built-ins by a duration, template
    variables (multi-value, includeAll) by their allValue regex."""
    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        return variables.get(name, m.group(0))
    return VAR_RE.sub(repl, expr)


def variable_query(q: str) -> str:
    """`label_values(metric, label)` (Grafana's variable syntax) as the PromQL that yields the same values."""
    m = LABEL_VALUES_RE.match(q.strip())
    if not m:
        return q
    metric, label = m.group(1), m.group(2)
    return f"group by ({label}) ({metric})" if metric else f"group by ({label}) ({{{label}!=\"\"}})"


def queries(dash: dict) -> list[Query]:
    uid = dash.get("uid", "?")
    tvars = {v["name"]: v.get("allValue") or ".+" for v in dash.get("templating", {}).get("list", [])}
    variables = {**BUILTIN_VARS, **tvars}
    out = []
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query", {})
        q = q.get("query", "") if isinstance(q, dict) else str(q)
        if q:
            out.append(Query(uid, f"variable {v['name']}", "var", q, substitute(variable_query(q), variables)))
    for p in dash.get("panels", []):
        for t in p.get("targets", []):
            out.append(Query(uid, p.get("title", "?"), t.get("refId", "?"), t.get("expr", ""),
                             substitute(t.get("expr", ""), variables)))
    return out


def datasource_uids(prov_dir: Path = PROVISIONING_DIR) -> tuple[set[str], list[str]]:
    uids, problems = set(), []
    for path in sorted((prov_dir / "datasources").glob("*.yml")):
        data = yaml.safe_load(path.read_text()) or {}
        if data.get("apiVersion") != 1:
            problems.append(f"{rel(path)}: apiVersion must be 1")
        for i, ds in enumerate(data.get("datasources") or []):
            for key in ("name", "type", "uid", "url", "access"):
                if not ds.get(key):
                    problems.append(f"{rel(path)}: datasources[{i}] lacks {key}")
            if ds.get("access") not in (None, "proxy", "direct"):
                problems.append(f"{rel(path)}: datasources[{i}].access must be proxy or direct")
            uids.add(ds.get("uid"))
    if not uids:
        problems.append(f"{rel(prov_dir)}/datasources: no datasource provisioned")
    return uids, problems


def provider_problems(prov_dir: Path = PROVISIONING_DIR) -> list[str]:
    problems, n = [], 0
    for path in sorted((prov_dir / "dashboards").glob("*.yml")):
        data = yaml.safe_load(path.read_text()) or {}
        if data.get("apiVersion") != 1:
            problems.append(f"{rel(path)}: apiVersion must be 1")
        for i, p in enumerate(data.get("providers") or []):
            n += 1
            if p.get("type") != "file":
                problems.append(f"{rel(path)}: providers[{i}].type must be file")
            if not str((p.get("options") or {}).get("path", "")).startswith("/"):
                problems.append(f"{rel(path)}: providers[{i}].options.path must be an absolute path")
            if not p.get("name"):
                problems.append(f"{rel(path)}: providers[{i}] lacks a name")
    if not n:
        problems.append(f"{rel(prov_dir)}/dashboards: no dashboard provider")
    return problems


def dashboard_problems(path: Path, dash: dict, ds_uids: set[str]) -> list[str]:
    where = rel(path)
    out = []
    for key, typ in (("uid", str), ("title", str), ("schemaVersion", int), ("panels", list),
                     ("templating", dict), ("time", dict)):
        if not isinstance(dash.get(key), typ):
            out.append(f"{where}: {key} must be a {typ.__name__}")
    if out:
        return out
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dash["uid"]):
        out.append(f"{where}: uid {dash['uid']!r} must be 1-40 characters of [A-Za-z0-9_-]")
    declared = {v.get("name") for v in dash["templating"].get("list", [])}
    for v in dash["templating"].get("list", []):
        if v.get("type") == "query" and (v.get("datasource") or {}).get("uid") not in ds_uids:
            out.append(f"{where}: variable {v.get('name')}: datasource uid not provisioned")
    ids, cells = set(), set()
    for i, p in enumerate(dash["panels"]):
        pw = f"{where}: panel {p.get('id', i)} ({p.get('title', '?')})"
        if p.get("type") not in PANEL_TYPES:
            out.append(f"{pw}: unknown type {p.get('type')!r}")
        if not isinstance(p.get("id"), int) or p["id"] in ids:
            out.append(f"{pw}: id must be a unique integer")
        ids.add(p.get("id"))
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in "hwxy") or g["w"] <= 0 or g["h"] <= 0 \
                or g["x"] < 0 or g["x"] + g["w"] > 24:
            out.append(f"{pw}: gridPos must have integer h, w, x, y within the 24-column grid")
            continue
        for cx in range(g["x"], g["x"] + g["w"]):
            for cy in range(g["y"], g["y"] + g["h"]):
                if (cx, cy) in cells:
                    out.append(f"{pw}: overlaps another panel at column {cx}, row {cy}")
                    break
                cells.add((cx, cy))
            else:
                continue
            break
        if p.get("type") == "row":
            continue
        if (p.get("datasource") or {}).get("uid") not in ds_uids:
            out.append(f"{pw}: datasource uid {(p.get('datasource') or {}).get('uid')!r} is not provisioned")
        targets = p.get("targets") or []
        if not targets:
            out.append(f"{pw}: no queries")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or not all(refs):
            out.append(f"{pw}: refIds must be unique and non-empty")
        for t in targets:
            if not str(t.get("expr", "")).strip():
                out.append(f"{pw}: query {t.get('refId')} has no expr")
            for m in VAR_RE.finditer(t.get("expr", "")):
                name = m.group(1) or m.group(2)
                if name not in declared and name not in BUILTIN_VARS:
                    out.append(f"{pw}: query {t.get('refId')} uses undeclared variable ${name}")
    return out


def problems(directory: Path = DASHBOARDS_DIR, prov_dir: Path = PROVISIONING_DIR) -> list[str]:
    ds_uids, out = datasource_uids(prov_dir)
    out += provider_problems(prov_dir)
    dashes = load_dashboards(directory)
    for path, dash in dashes.items():
        out += dashboard_problems(path, dash, ds_uids)
    for attr in ("uid", "title"):
        seen = [d.get(attr) for d in dashes.values()]
        out += [f"two dashboards share the {attr} {v!r}" for v in sorted({s for s in seen if seen.count(s) > 1})]
    # Generated artifacts are checked: the committed JSON is exactly what the generator produces.
    for name, text in all_rendered().items():
        path = directory / name
        if not path.is_file() or path.read_text() != text:
            out.append(f"{rel(path)} differs from iosops/monitoring/dashboards.py; run `inv monitoring.dashboards` and commit")
    return out
