#!/usr/bin/env python3
"""DR drill figures on the deployed topology, against #11's targets and the seed's floor, one run:

  RTO  disaster (data host lost) -> API /ready 200 through nginx, fingerprints verified   target <= 45 s
  RPO  acknowledged writes lost (newest lost ack - newest recovered ack)                   target <= 5 s

Runs `inv dr-drill`'s own code (an isolated compose stack; see iosops/backup/drill.py) and prints each
figure with its ratio to the target and to the seed's floor (RTO 15 min, RPO 24 h), the restore's steps,
and the load average (2 shared cores: the figures move with it).

Run: .venv/bin/python benchmarks/drill.py [--size small|1gb] [--image iosops/api:TAG] [--json]
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Imports below waive E402: run as a script, they need ROOT on sys.path first.
from iosops.backup.drill import drill  # noqa: E402
from iosops.config import load_env  # noqa: E402
from iosops.runner import Runner  # noqa: E402

TARGETS = {"rto_s": 45.0, "rpo_s": 5.0}
SEED = {"rto_s": 15 * 60.0, "rpo_s": 24 * 3600.0}


def main() -> int:
    size = sys.argv[sys.argv.index("--size") + 1] if "--size" in sys.argv else "small"
    image = sys.argv[sys.argv.index("--image") + 1] if "--image" in sys.argv else ""
    load_before = os.getloadavg()
    env = load_env("local", environ={"IOSOPS_STATE_DIR": os.environ.get("IOSOPS_STATE_DIR", "/var/tmp/iosops-bench-drill")})
    rep = drill(env, Runner(say=lambda line: print(line, file=sys.stderr)), size=size, image=image)
    out = {
        "size": size, "dataset": rep.dataset, "verified": rep.verified, "checks": rep.checks,
        "rto_s": rep.rto_seconds, "rto_vs_target": round(rep.rto_seconds / TARGETS["rto_s"], 2),
        "rto_vs_seed": round(rep.rto_seconds / SEED["rto_s"], 4),
        "rpo_s": rep.rpo_seconds, "rpo_vs_target": round(rep.rpo_seconds / TARGETS["rpo_s"], 2),
        "rpo_vs_seed": round(rep.rpo_seconds / SEED["rpo_s"], 6),
        "writes": rep.writes, "restore_steps": rep.restore_steps, "phases": rep.phases, "topology": rep.topology,
        "loadavg": {"before": load_before, "after": os.getloadavg()},
    }
    if "--json" in sys.argv:
        print(json.dumps(out, indent=2, default=str))
    else:
        for k in ("size", "dataset", "verified", "rto_s", "rto_vs_target", "rto_vs_seed", "rpo_s", "rpo_vs_target",
                  "rpo_vs_seed", "writes", "restore_steps", "loadavg"):
            print(f"{k:16} {out[k]}")
        for name, key in (("RTO", "rto"), ("RPO", "rpo")):
            ok = out[f"{key}_s"] <= TARGETS[f"{key}_s"]
            print(f"{'met' if ok else 'MISSED':7} {name} <= {TARGETS[f'{key}_s']:g} s ({out[f'{key}_s']} s)")
    return 0 if rep.verified and rep.rto_seconds <= TARGETS["rto_s"] and rep.rpo_seconds <= TARGETS["rpo_s"] else 1


if __name__ == "__main__":
    sys.exit(main())
