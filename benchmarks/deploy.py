#!/usr/bin/env python3
"""Deploy figures in one run, on a fresh stack of its own (labelled iosops.test=1, removed at the end):

  deploy    `inv deploy` of a new release (a new tag: the idle colour's containers are recreated),
            blue -> green, under constant HTTPS load on 127.0.0.1
  rollback  `inv rollback`, green -> blue, under the same load
  requests  failed / sent during each (>= --min-requests at --rate req/s, bounded in count and time)

Targets (issue #4): deploy <= 30 s, rollback <= 10 s, 0 failed requests; printed as measured/target.
--hosts N (issue #12, N >= 2): the stack on N SSH test hosts with their own Docker engines (network
namespaces, tests/netns_hosts.py): N-1 web hosts and one data host, env `staging` pointed at them;
trusted and provisioned first (not timed); the load goes through every web host at once (--rate split
between them). Targets there: deploy <= 30 s, rollback <= 5 s, 0 failed requests.
The load generator runs in this process (each request a new TLS connection), so it competes with the
deploy for this machine's CPU: the figures are an upper bound for a dedicated host.
Run: .venv/bin/python benchmarks/deploy.py [--hosts 3] [--rate 100] [--min-requests 2000] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Imports below waive E402: run as a script, they need ROOT on sys.path first.
from iosops.images.image import build_image  # noqa: E402
from iosops.images.offline import build_offline  # noqa: E402
from iosops.config import load_env  # noqa: E402
from iosops.deploy import bluegreen as bg  # noqa: E402
from iosops.deploy.loadgen import Load  # noqa: E402
from iosops.runner import Runner  # noqa: E402

TARGETS = {"deploy_s": 30.0, "rollback_s": 10.0}
TARGETS_HOSTS = {"deploy_s": 30.0, "rollback_s": 5.0}
DOCKER = "/usr/bin/docker"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inv(*args: str, env: dict) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", "import sys; from invoke.main import program; sys.exit(program.run())",
                           *args], capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, timeout=900)
    return proc, time.monotonic() - start


def under_load(port: int, rate: float, min_requests: int, *args: str, env: dict, hosts: tuple[str, ...] = ("127.0.0.1",)):
    """`inv ARGS` while every host in `hosts` gets rate/len(hosts) req/s; the results summed."""
    from iosops.deploy.loadgen import LoadResult

    share = rate / len(hosts)
    loads = [Load(port, host=h, rate=share, min_count=int(min_requests / len(hosts)), max_count=min_requests * 10,
                  max_seconds=max(120.0, 3 * min_requests / rate)).start() for h in hosts]
    for load in loads:
        load.wait_sent(int(share))  # one second of steady load before the operation
    proc, seconds = inv(*args, env=env)
    parts = [load.stop() for load in loads]
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {proc.stderr[-2000:]}")
    total = LoadResult()
    for r in parts:
        total.sent, total.failed = total.sent + r.sent, total.failed + r.failed
        total.statuses.update(r.statuses)
        total.errors.update(r.errors)
        total.seconds = max(total.seconds, r.seconds)
    return seconds, total


def figures(first_s: float, deploy_s: float, dl, rollback_s: float, rl, targets: dict) -> dict:
    return {
        "first_deploy_s": round(first_s, 1),
        "deploy_s": round(deploy_s, 1), "deploy_target_s": targets["deploy_s"],
        "deploy_ratio": round(deploy_s / targets["deploy_s"], 2),
        "deploy_requests": {"sent": dl.sent, "failed": dl.failed, "rate": round(dl.rate, 1),
                            "errors": dict(dl.errors), "statuses": {str(k): v for k, v in dl.statuses.items()}},
        "rollback_s": round(rollback_s, 1), "rollback_target_s": targets["rollback_s"],
        "rollback_ratio": round(rollback_s / targets["rollback_s"], 2),
        "rollback_requests": {"sent": rl.sent, "failed": rl.failed, "rate": round(rl.rate, 1),
                              "errors": dict(rl.errors), "statuses": {str(k): v for k, v in rl.statuses.items()}},
        "load_avg_1m": os.getloadavg()[0],
    }


def multi_host(a, image: str, green: str, ops: str, ops_green: str) -> tuple[dict, object, object]:
    """The same deploy and rollback on N SSH test hosts (N-1 web + 1 data)."""
    from tests.netns_hosts import NetnsHosts, load_release, staging_vars

    local = load_env("local", environ={}).cfg.images
    images = {"postgres": local.postgres, "redis": local.redis, "nginx": local.nginx}
    state = Path(f"/tmp/iosops-bench-{uuid.uuid4().hex[:6]}")
    state.mkdir(parents=True)
    try:
        with NetnsHosts(a.hosts) as hosts:
            vars_ = staging_vars(hosts, state, images)
            from iosops.deploy.dbusers import ROLE_SECRETS  # the datastore roles' and users' test passwords

            vars_.update({f"IOS_STAGING_{n.upper()}": f"bench-{uuid.uuid4().hex}" for n in ROLE_SECRETS})
            load_release(hosts, image, ops, images)
            load_release(hosts, green, ops_green, {})
            for step in (("hosts.trust",), ("provision",)):
                proc, _ = inv(*step, "--env", "staging", env=vars_)
                if proc.returncode != 0:
                    raise SystemExit(f"{step[0]} failed: {proc.stderr[-2000:]}")
            proc, first_s = inv("deploy", "--env", "staging", "--tag", image.rsplit(":", 1)[1], env=vars_)
            if proc.returncode != 0:
                raise SystemExit(f"first deploy failed: {proc.stderr[-2000:]}")
            webs = tuple(h.address for h in list(hosts)[:-1])
            deploy_s, dl = under_load(443, a.rate, a.min_requests, "deploy", "--env", "staging", "--tag",
                                      green.rsplit(":", 1)[1], env=vars_, hosts=webs)
            rollback_s, rl = under_load(443, a.rate, a.min_requests, "rollback", "--env", "staging", env=vars_, hosts=webs)
            out = {"hosts": a.hosts, "web_hosts": len(webs), **figures(first_s, deploy_s, dl, rollback_s, rl, TARGETS_HOSTS)}
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return out, dl, rl


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--min-requests", type=int, default=2000)
    ap.add_argument("--hosts", type=int, default=1, help="1: this machine; N >= 2: N SSH test hosts (N-1 web + 1 data)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.hosts < 1 or a.hosts > 8:
        print("error: --hosts must be 1..8", file=sys.stderr)
        return 2

    state = Path(f"/tmp/iosops-bench-{uuid.uuid4().hex[:6]}")
    name = f"iosops-bench-{uuid.uuid4().hex[:6]}"
    vars_ = {"IOSOPS_STATE_DIR": str(state), "IOSOPS_STACK__NAME": name,
             "IOSOPS_DEPLOY__HTTP_PORT": str(free_port()), "IOSOPS_DEPLOY__HTTPS_PORT": str(free_port()),
             "IOSOPS_STACK__LABELS": '{"iosops.test": "1"}'}
    env = load_env("local", environ=vars_)
    quiet = Runner(say=lambda line: None)
    build_offline(env, quiet, ("python", "postgres", "redis", "nginx"))
    image = build_image(env, quiet, tag=f"bench-{uuid.uuid4().hex[:6]}").image
    repo = image.rsplit(":", 1)[0]
    green = f"{repo}:bench-green-{uuid.uuid4().hex[:6]}"
    subprocess.run([DOCKER, "tag", image, green], check=True)
    ops, ops_green = (f"iosops/ops:{ref.rsplit(':', 1)[1]}" for ref in (image, green))
    subprocess.run([DOCKER, "tag", ops, ops_green], check=True)  # the ops image goes with every release
    out: dict = {}
    targets = TARGETS_HOSTS if a.hosts > 1 else TARGETS
    try:
        if a.hosts > 1:
            out, dl, rl = multi_host(a, image, green, ops, ops_green)
        else:
            proc, first_s = inv("deploy", "--env", "local", "--tag", image.rsplit(":", 1)[1], env=vars_)
            if proc.returncode != 0:
                raise SystemExit(f"first deploy failed: {proc.stderr[-2000:]}")
            port = env.cfg.deploy.https_port
            deploy_s, dl = under_load(port, a.rate, a.min_requests, "deploy", "--env", "local", "--tag",
                                      green.rsplit(":", 1)[1], env=vars_)
            rollback_s, rl = under_load(port, a.rate, a.min_requests, "rollback", "--env", "local", env=vars_)
            out = figures(first_s, deploy_s, dl, rollback_s, rl, TARGETS)
    finally:
        bg.destroy(env, Runner(say=lambda line: None), volumes=True)
        shutil.rmtree(state, ignore_errors=True)
        subprocess.run([DOCKER, "rmi", green, image, ops_green, ops], capture_output=True)
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        where = f"{a.hosts} SSH hosts ({a.hosts - 1} web + 1 data)" if a.hosts > 1 else "this machine"
        print(f"on {where}; first deploy (stack from nothing): {out['first_deploy_s']} s")
        print(f"deploy   {out['deploy_s']:6.1f} s  target {targets['deploy_s']:.0f} s  ratio {out['deploy_ratio']:.2f}  "
              f"failed {dl.failed}/{dl.sent} requests at {dl.rate:.0f}/s")
        print(f"rollback {out['rollback_s']:6.1f} s  target {targets['rollback_s']:.0f} s  ratio {out['rollback_ratio']:.2f}  "
              f"failed {rl.failed}/{rl.sent} requests at {rl.rate:.0f}/s")
        print(f"(1-minute load average at the end: {out['load_avg_1m']:.1f} on {os.cpu_count()} cores)")
    ok = dl.failed == 0 and rl.failed == 0 and dl.sent >= a.min_requests and rl.sent >= a.min_requests
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
