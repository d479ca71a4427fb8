"""Prometheus textfile metrics of backups (webhook messages: iosops.notify, shared with deploys)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..config import Env
from ..runner import Runner


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
