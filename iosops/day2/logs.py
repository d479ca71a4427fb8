"""`inv logs`: the stack's container logs, merged across hosts into one timeline, every line prefixed
[host/container] and timestamped; --follow streams from every host at once until Ctrl-C. One command per
host (docker.logs_merged); Kubernetes: `kubectl logs --selector ... --prefix`."""
from __future__ import annotations

import queue
import signal
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from ..commands import docker as d
from ..commands import kubectl as k
from ..config import Env
from ..deploy.target import Target
from ..errors import BadInput
from ..runner import Runner
from .attach import Stream
from .common import containers, hosts, k8s_cfg, kubernetes
from .probes import LogLine, Since, merge_logs, parse_kube_log_line, parse_log_line

WEB = ("nginx", "api-blue", "api-green")
DATA = ("postgres", "redis", "walstream", "elasticsearch")
# `api` is both colours; the rest are compose services (and on Kubernetes the workloads' names).
K8S = {"api": "app.kubernetes.io/name=ios-api",
       "api-blue": "app.kubernetes.io/name=ios-api,app.kubernetes.io/color=blue",
       "api-green": "app.kubernetes.io/name=ios-api,app.kubernetes.io/color=green",
       "postgres": "app.kubernetes.io/name=ios-postgres", "redis": "app.kubernetes.io/name=ios-redis",
       "walstream": "app.kubernetes.io/name=ios-walstream", "elasticsearch": "app.kubernetes.io/name=ios-elasticsearch",
       "": "app.kubernetes.io/name in (ios-api,ios-postgres,ios-redis,ios-walstream,ios-elasticsearch)"}


def services(service: str) -> set[str]:
    """The compose services `--service` names (empty: all of the stack's)."""
    if not service:
        return set(WEB + DATA)
    if service == "api":
        return {"api-blue", "api-green"}
    if service in WEB + DATA:
        return {service}
    raise BadInput(f"--service {service!r}: unknown; services: api (both colours), {', '.join(WEB + DATA)}; "
                   "nothing was read")


def _argv(t: Target, wanted: set[str], since: Since, tail: str, follow: bool) -> Optional[list[str]]:
    picked = [(c.name, c.id) for c in containers(t) if c.service in wanted]
    return d.logs_merged(picked, since.docker(), tail, follow) if picked else None


def compose_logs(env: Env, runner: Runner, service: str, since: Since, tail: str) -> list[LogLine]:
    wanted = services(service)
    per_host: dict[str, str] = {}
    for t in hosts(env, runner):
        argv = _argv(t, wanted, since, tail, follow=False)
        if argv:
            per_host[t.name] = t.runner.run(argv, mutating=False, check=False, timeout=300).stdout
    return merge_logs(per_host)


def k8s_argv(env: Env, service: str, since: Since, tail: str, follow: bool) -> list[str]:
    if service == "nginx":
        raise BadInput("--service nginx: a Kubernetes env has no nginx of its own (the ingress controller's logs "
                       "are the cluster's); nothing was read")
    if service not in K8S:
        services(service)  # the same one-line refusal as for compose
    cfg = k8s_cfg(env)
    return k.logs_selected(cfg.context, cfg.namespace, K8S[service], since=since.duration, since_time=since.time,
                           tail=-1 if tail == "all" else int(tail), follow=follow, kubectl=cfg.kubectl)


def logs(env: Env, runner: Runner, service: str, since: Since, tail: str) -> list[LogLine]:
    if kubernetes(env):
        out = runner.run(k8s_argv(env, service, since, tail, False), mutating=False, timeout=300).stdout
        return [ll for line in out.splitlines() if (ll := parse_kube_log_line(line)) is not None]
    return compose_logs(env, runner, service, since, tail)


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


@contextmanager
def stoppable() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM (a CI timeout, `kill`) end a follow the same way: its streams are stopped and
    their `docker logs` processes (each in a session of its own) go with it. SIGINT is honoured even when the
    parent started us with it ignored (a shell's background job): following is meant to run until stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def follow(env: Env, runner: Runner, service: str, since: Since, tail: str, sink: Callable[[LogLine], None],
           seconds: Optional[float] = None) -> list[str]:
    """Stream every host's lines to `sink` as they come, until Ctrl-C (KeyboardInterrupt ends it quietly),
    every stream ended, or `seconds` passed (a bound for tests). Returns the hosts' stream errors."""
    q: "queue.Queue[LogLine]" = queue.Queue()
    streams: list[Stream] = []
    if kubernetes(env):
        streams.append(Stream(runner, k8s_argv(env, service, since, tail, True),
                              lambda line: q.put(parse_kube_log_line(line))))
    else:
        wanted = services(service)
        for t in hosts(env, runner):
            argv = _argv(t, wanted, since, tail, follow=True)
            if argv:
                streams.append(Stream(t.runner, argv, lambda line, h=t.name: q.put(parse_log_line(h, line))))
    for s in streams:
        s.start()
    deadline = time.monotonic() + seconds if seconds is not None else None
    try:
        with stoppable():
            _pump_lines(streams, q, sink, deadline)
    except KeyboardInterrupt:
        pass
    finally:
        for s in streams:
            s.stop()
    return [s.error for s in streams if s.error]


def _pump_lines(streams: list[Stream], q: "queue.Queue[LogLine]", sink: Callable[[LogLine], None],
                deadline: Optional[float]) -> None:
    while any(s.alive() for s in streams) or not q.empty():
        if deadline is not None and time.monotonic() >= deadline:
            return
        try:
            ll = q.get(timeout=0.2)
        except queue.Empty:
            continue
        if ll is not None:
            sink(ll)
