"""promtool / amtool argv builders (Prometheus 2.42 and Alertmanager 0.25 from Debian)."""
from __future__ import annotations

from typing import Mapping, Sequence

PROMTOOL = "promtool"
AMTOOL = "amtool"


def check_config(path: str) -> list[str]:
    return [PROMTOOL, "check", "config", path]


def check_rules(paths: Sequence[str]) -> list[str]:
    return [PROMTOOL, "check", "rules", *paths]


def test_rules(paths: Sequence[str]) -> list[str]:
    return [PROMTOOL, "test", "rules", *paths]


def am_check_config(path: str) -> list[str]:
    return [AMTOOL, "check-config", path]


def am_routes_test(path: str, labels: Mapping[str, str]) -> list[str]:
    """Print the receiver(s) an alert with these labels is routed to (comma-separated)."""
    return [AMTOOL, "config", "routes", "test", f"--config.file={path}",
            *(f"{k}={v}" for k, v in sorted(labels.items()))]
