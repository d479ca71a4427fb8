"""Monitoring as code: Prometheus rules and configs, Alertmanager, Grafana dashboards; their static
checks (promtool, amtool, structure, coverage) and a live check against a real Prometheus."""
from pathlib import Path

from .. import REPO_ROOT

MONITORING = REPO_ROOT / "monitoring"
PROMETHEUS_DIR = MONITORING / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"
ALERTMANAGER_DIR = MONITORING / "alertmanager"
GRAFANA_DIR = MONITORING / "grafana"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
PROVISIONING_DIR = GRAFANA_DIR / "provisioning"
RUNBOOKS_DIR = REPO_ROOT / "docs" / "runbooks"

SEVERITIES = ("critical", "warning", "info")


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
