"""Waiting for containers (Docker health, then /ready of every replica) and the smoke checks, run from
inside each container so they need no published port."""
from __future__ import annotations

import json
from typing import Any, Callable, Optional

from ..commands import docker as d
from ..commands import python as py
from .. import wait
from ..errors import OperationFailed
from ..runner import Runner, error_line
from .target import Target

SMOKE = """
import json, sys, urllib.error, urllib.request
out = {}
for p in sys.argv[1:]:
    try:
        out[p] = urllib.request.urlopen("http://127.0.0.1:8000" + p, timeout=5).status
    except urllib.error.HTTPError as e:
        out[p] = e.code
    except Exception as e:
        out[p] = type(e).__name__
print(json.dumps(out))
"""

def all_healthy(t: Target, services: list[str]) -> bool:
    for svc in services:
        ids = t.containers(svc)
        if not ids:
            return False
        for cid in ids:
            if t.runner.run(d.health_status(cid), mutating=False, check=False).stdout.strip() != "healthy":
                return False
    return True


# -- waiting and checking ------------------------------------------------------------------------------
def poll(runner: Runner, what: str, fn: Callable[[], Optional[str]], timeout: float, interval: float = 0.5) -> None:
    """Call fn until it returns None (done) or the timeout passes (wait.WaitTimeout naming `what` and fn's
    last word). A word starting "fatal:" ends the wait at once: it will not get better."""
    def check() -> tuple[bool, Optional[str]]:
        res = fn()
        if res is not None and res.startswith("fatal:"):
            raise OperationFailed(f"gave up waiting for {what}: {res}")
        return res is None, res

    runner.call(f"wait for {what} (timeout {timeout:.0f}s)",
                lambda: wait.until(what, check, timeout=timeout, interval=interval))


def wait_service_healthy(t: Target, service: str, timeout: float, want: int = 1) -> list[str]:
    def check() -> Optional[str]:
        ids = t.containers(service)
        if len(ids) < want:
            return f"{len(ids)}/{want} containers running"
        for cid in ids:
            st = t.runner.run(d.health_status(cid), mutating=False, check=False).stdout.strip()
            if st in ("unhealthy", "exited", "dead"):
                return f"fatal: container {cid[:12]} of {service} is {st}"
            if st != "healthy":
                return f"container {cid[:12]} of {service} is {st or 'starting'}"
        return None
    poll(t.runner, f"[{t.name}] {service} to be healthy", check, timeout)
    return t.containers(service)


def exec_json(t: Target, cid: str, code: str, *args: str) -> Any:
    r = t.runner.run(d.exec_(cid, py.script(code, *args)), check=False)
    if r.dry_run:
        return None
    if r.rc != 0:
        raise OperationFailed(f"[{t.name}] check in {cid[:12]} failed: {error_line(r.stderr or r.stdout)[-300:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def wait_ready(t: Target, service: str, timeout: float, ready_timeout: Optional[float] = None) -> list[str]:
    """Docker health (liveness) of every replica, then /ready of each, from inside the container."""
    want = t.env.cfg.deploy.replicas
    wait_service_healthy(t, service, timeout, want)
    timeout = ready_timeout or t.env.cfg.deploy.ready_timeout_s
    ids = t.containers(service)
    for cid in ids:
        def check(cid: str = cid) -> Optional[str]:
            got = exec_json(t, cid, SMOKE, "/ready")
            return None if got is None or got.get("/ready") == 200 else f"not ready (GET /ready -> {got.get('/ready')})"
        poll(t.runner, f"[{t.name}] {service} replica {cid[:12]} to answer GET /ready 200", check, timeout)
    return ids


def smoke(t: Target, ids: list[str]) -> list[str]:
    paths = t.env.cfg.deploy.smoke_paths
    for cid in ids:
        got = exec_json(t, cid, SMOKE, *paths)
        if got is None:
            continue
        bad = {p: s for p, s in got.items() if s != 200}
        if bad:
            raise OperationFailed(f"[{t.name}] smoke check of {cid[:12]} failed: "
                                  + ", ".join(f"GET {p} -> {s}" for p, s in bad.items()))
    return [f"[{t.name}] smoke: {len(ids)} replica(s) answered 200 on {', '.join(paths)}"]
