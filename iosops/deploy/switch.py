"""The nginx switch: render, `nginx -t`, reload (never an invalid config), drain the old workers; the
post-switch gate (synthetic probes through nginx, error rate and latency)."""
from __future__ import annotations

import http.client
import math
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

from ..commands import compose as cc
from ..commands import docker as d
from ..commands import nginx as nc
from ..errors import OperationFailed
from . import nginx as ng
from .health import poll
from .target import Target, edge_address

def nginx_id(t: Target) -> Optional[str]:
    ids = t.containers("nginx")
    return ids[0] if ids else None


def active_colour(t: Target) -> Optional[str]:
    text = t.read("nginx/conf.d/upstream.conf")
    return ng.parse_active(text) if text else None


def switch(t: Target, colour: str) -> None:
    """Render both nginx files, swap them in (rename), `nginx -t`; reload only a valid config, else
    put the previous files back and fail. Raises OperationFailed naming nginx's complaint."""
    env = t.env
    main = ng.render_main(env, env.path(ng.TEMPLATE).read_text())
    upstream = ng.render_upstream(env.path(ng.UPSTREAM_TEMPLATE).read_text(), colour)
    cid = nginx_id(t)
    if cid is None and not t.runner.dry_run:
        raise OperationFailed(f"[{t.name}] nginx is not running; nothing switched")
    previous = {rel: t.read(rel) for rel in ("nginx/nginx.conf", "nginx/conf.d/upstream.conf")}
    t.put("nginx/nginx.conf", main)
    t.put("nginx/conf.d/upstream.conf", upstream)
    test = t.runner.run(d.exec_(cid or "nginx", nc.test_config(ng.CONF)), check=False)
    if test.rc != 0:
        for rel, text in previous.items():
            if text is not None:
                t.put(rel, text)
        why = (test.stderr or test.stdout).strip().splitlines()
        raise OperationFailed(f"[{t.name}] nginx -t rejected the new config ({why[-1] if why else 'no output'}); "
                              f"the previous config was put back and nginx was NOT reloaded")
    t.runner.run(d.exec_(cid or "nginx", nc.reload(ng.CONF)))


def drain(t: Target) -> None:
    """Old nginx workers finish their in-flight requests; wait until none is left."""
    cid = nginx_id(t)
    if cid is None:
        return

    def check() -> Optional[str]:
        r = t.runner.probe(d.exec_(cid, nc.processes()), check=False)
        n = ng.parse_shutting_down(r.stdout)
        return None if n == 0 else f"{n} old worker(s) still draining"
    poll(t.runner, f"[{t.name}] old nginx workers to drain", check, t.env.cfg.deploy.drain_timeout_s, interval=0.2)


def error_window(t: Target, colour: str, since: float) -> tuple[int, int]:
    cid = nginx_id(t)
    if cid is None or t.runner.dry_run:
        return 0, 0
    r = t.runner.run(d.logs_since(cid, since - 1), mutating=False, check=False)
    return ng.error_rate(r.stdout.splitlines(), colour, since)


def remove_colour(t: Target, colour: str) -> None:
    t.runner.run(cc.rm(t.base(), [f"api-{colour}"]), check=False)


# -- the post-switch gate ----------------------------------------------------------------------------
@dataclass
class ProbeResult:
    """Synthetic requests through one host's nginx: statuses (or the error class) and latencies (s)."""
    host: str
    statuses: list = field(default_factory=list)
    latencies: list = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.statuses if not isinstance(s, int) or s >= 500)

    def p95(self) -> Optional[float]:
        return p95(self.latencies)


def p95(values: list[float]) -> Optional[float]:
    """Nearest-rank 95th percentile (None without samples)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def probe(t: Target, count: int, seconds: float) -> ProbeResult:
    """`count` GETs of deploy.gate_path through this host's nginx (HTTPS, a new connection each, like a
    client), spread over `seconds`: a sample the gate always has, however quiet the traffic is. Goes
    only to the host's own edge address (loopback for a local stack). Bounded: count ≤ 200."""
    cfg = t.env.cfg.deploy
    count = max(1, min(int(count), 200))
    out = ProbeResult(t.name)
    ctx = ssl.create_default_context()
    # Availability and latency of the new colour, not the certificate (ensure_tls checks that): a
    # self-signed local certificate must not fail the gate.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    host, port = edge_address(t), cfg.https_port
    gap = seconds / count if count else 0
    t0 = time.monotonic()
    for i in range(count):
        due = t0 + i * gap
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        start = time.monotonic()
        conn = http.client.HTTPSConnection(host, port, timeout=5, context=ctx)
        try:
            conn.request("GET", cfg.gate_path, headers={"Host": cfg.server_name if cfg.server_name != "_"
                                                         else "localhost", "User-Agent": "iosops-gate"})
            resp = conn.getresponse()
            resp.read()
            out.statuses.append(resp.status)
            out.latencies.append(time.monotonic() - start)
        except (OSError, http.client.HTTPException) as exc:
            out.statuses.append(type(exc).__name__)
        finally:
            conn.close()
    return out


def probe_all(ts: list[Target], count: int, seconds: float) -> list[ProbeResult]:
    """The probes of every web host at the same time (one thread per host)."""
    with ThreadPoolExecutor(max_workers=max(1, len(ts))) as pool:
        return list(pool.map(lambda t: probe(t, count, seconds), ts))


def latency_verdict(env_deploy, before: Optional[float], halves: tuple[Optional[float], Optional[float]]) -> Optional[str]:
    """None when the new colour's p95 is within max(ratio × old, old + slack) in either half of the window;
    a regression must last the whole window (a cold worker's first request in the first half is not one)."""
    first, second = halves
    if first is None and second is None:
        return "no probe of the new colour was answered"
    if before is None:
        return None
    limit = max(before * env_deploy.gate_max_latency_ratio, before + env_deploy.gate_latency_slack_ms / 1000)
    over = [p for p in halves if p is not None and p > limit]
    if len(over) == len([p for p in halves if p is not None]):
        return (f"p95 latency {min(over) * 1000:.0f} ms of the new colour (both halves of the window) > "
                f"{limit * 1000:.0f} ms (old colour {before * 1000:.0f} ms × {env_deploy.gate_max_latency_ratio:g}, "
                f"or + {env_deploy.gate_latency_slack_ms:g} ms)")
    return None


def split_p95(results: list[ProbeResult]) -> tuple[Optional[float], Optional[float]]:
    """p95 of the first and of the second half of every host's probes (in the order they were sent)."""
    first = [x for r in results for x in r.latencies[:len(r.latencies) // 2]]
    second = [x for r in results for x in r.latencies[len(r.latencies) // 2:]]
    return p95(first), p95(second)
