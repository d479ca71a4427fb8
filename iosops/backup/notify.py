"""Slack-compatible webhook messages and Prometheus textfile metrics. Neither may fail the operation:
a dead webhook costs at most a few bounded retries and a warning line."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from ..config import Env
from ..runner import Runner


def webhook(env: Env, runner: Runner, text: str, attempts: int = 3, timeout: float = 3.0) -> bool:
    ref = env.cfg.backup.webhook_url
    if ref is None:
        return False
    try:
        url = ref.reveal("backup.webhook_url", env.root).get()
    except Exception as exc:  # a missing webhook secret must not fail a backup
        runner.info(f"warning: webhook not sent: {exc}")
        return False
    for attempt in range(1, attempts + 1):
        try:
            r = runner.http("POST", url, json={"text": text}, timeout=timeout)
            if r.dry_run or r.rc == 0:
                return True
            last = f"HTTP {r.rc}"
        except Exception as exc:
            last = type(exc).__name__
        if attempt < attempts:
            time.sleep(0.2 * 2 ** attempt)
    runner.info(f"warning: webhook not delivered after {attempts} attempts ({last}); the operation itself is unaffected")
    return False


def read_textfile(path: Path) -> dict[str, float]:
    """A Prometheus textfile as {series: value} ("name{labels}" -> float); missing file: {}."""
    out: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
    return out


def write_metrics(env: Env, runner: Runner, values: dict[str, float], labels: Optional[dict] = None,
                  path: Optional[Path] = None) -> None:
    """Merge `values` into a node-exporter textfile (default backup.metrics_file; atomic rename)."""
    path = path or env.path(env.cfg.backup.metrics_file)
    current = read_textfile(path)
    lab = {"env": env.name, **(labels or {})}
    for name, v in values.items():
        series_labels = dict(lab)
        if "{" in name:  # name{component="x"}
            name, _, extra = name.partition("{")
            for kv in extra.rstrip("}").split(","):
                k, _, val = kv.partition("=")
                series_labels[k] = val.strip('"')
        key = name + "{" + ",".join(f'{k}="{v2}"' for k, v2 in sorted(series_labels.items())) + "}"
        current[key] = float(v)
    body = "".join(f"{k} {v!r}\n" for k, v in sorted(current.items()))
    runner.write_file(path, body, mode=0o644)
