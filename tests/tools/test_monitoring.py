"""The tools-tier half of tests/unit/test_monitoring.py: these tests run real programs (see tests/tools/__init__.py)."""
import json
import shutil
import subprocess

import pytest
import yaml

from iosops.commands import promtool as pt
from iosops.config import load_env
from iosops.monitoring import (
    ALERTMANAGER_DIR,
    DASHBOARDS_DIR,
    RULE_TESTS_DIR,
    grafana,
    rules,
    static,
)
from iosops.monitoring import stack as mstack
from iosops.runner import Runner
from tests.unit import test_monitoring as unit

copy_tree = unit.copy_tree  # the unit module's fixture, shared


# -- promtool ------------------------------------------------------------------------------------------
def test_promtool_test_rules_passes_on_the_repo():
    proc = subprocess.run(pt.test_rules([p.name for p in rules.test_files()]), cwd=RULE_TESTS_DIR,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(rules.test_files())


def test_promtool_test_rules_fails_when_a_rule_no_longer_fires(copy_tree):
    """Raise IosApiDown's `for` to 10m: the firing case at 5m must now fail."""
    f = copy_tree / "rules" / "api.yml"
    f.write_text(f.read_text().replace("expr: up{job=\"ios-api\"} == 0\n        for: 1m", "expr: up{job=\"ios-api\"} == 0\n        for: 10m"))
    proc = subprocess.run(pt.test_rules(["api_test.yml"]), cwd=copy_tree / "tests", capture_output=True, text=True)
    assert proc.returncode == 1
    assert "IosApiDown" in proc.stdout + proc.stderr


@pytest.mark.parametrize("scrape_interval", ["15s", "5s"])
def test_rendered_prometheus_config_is_valid(tmp_path, scrape_interval):
    """The exact directory monitoring.up mounts, for the env's intervals and the live check's 5s."""
    env = load_env("local", environ={}, overrides={"monitoring": {"scrape_interval": scrape_interval}})
    files = mstack.render_prometheus(env)
    static._write_tree(tmp_path, files)
    proc = subprocess.run(pt.check_config("prometheus.yml"), cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stdout + proc.stderr  # every file_sd file exists
    assert yaml.safe_load(files["targets/ios-api.yml"]) == [{"targets": ["api:8000"], "labels": {"env": "local"}}]
    assert yaml.safe_load(files["targets/nginx.yml"]) == []


def test_kubernetes_variant_checks_and_rejects_a_bad_role(tmp_path, monkeypatch):
    assert static.k8s_config_check(Runner(), tmp_path).ok
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "prometheus-k8s.yml").write_text((static.PROMETHEUS_DIR / "prometheus-k8s.yml").read_text()
                                            .replace("role: node", "role: nodes"))
    monkeypatch.setattr(static, "PROMETHEUS_DIR", bad)
    check = static.k8s_config_check(Runner(), tmp_path / "scratch")
    assert not check.ok and any("'nodes'" in p for p in check.problems)


# -- alertmanager ----------------------------------------------------------------------------------------
def test_amtool_check_config_and_routes_by_severity():
    proc = subprocess.run(pt.am_check_config("alertmanager.yml"), cwd=ALERTMANAGER_DIR, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check = static.routes_check(Runner(), rules.alerts())
    assert check.ok, check.problems
    got = subprocess.run(pt.am_routes_test(str(ALERTMANAGER_DIR / "alertmanager.yml"), {"severity": "info"}),
                         capture_output=True, text=True).stdout.strip()
    assert got == "blackhole"


def test_every_dashboard_query_parses_and_a_broken_one_is_named(tmp_path, monkeypatch):
    check, n = static.parse_dashboard_queries(Runner(), tmp_path)
    assert check.ok, check.problems
    assert n >= 60
    broken = tmp_path / "broken"
    shutil.copytree(DASHBOARDS_DIR, broken)
    f = broken / "ios-api.json"
    dash = json.loads(f.read_text())
    dash["panels"][0]["targets"][0]["expr"] = "sum(rate(http_requests_total[5m])"
    f.write_text(json.dumps(dash))
    monkeypatch.setattr(grafana, "DASHBOARDS_DIR", broken)
    monkeypatch.setattr(grafana.load_dashboards, "__defaults__", (broken,))
    check, _ = static.parse_dashboard_queries(Runner(), broken)
    assert not check.ok
    assert any("ios-api / Request rate / A" in p for p in check.problems)
