"""Bounded constant-rate HTTPS load against the local edge (127.0.0.1) or the project's own SSH test hosts
(network namespaces on 10.213.0.0/16, tests/netns_hosts.py), for tests and benchmarks.

Every request opens its own connection (as many clients do), so a reload of nginx can never be blamed
on a reused keep-alive connection the server already closed; what is counted is what a client sees:
a request fails when it gets no answer or an answer other than the expected status.
"""
from __future__ import annotations

import http.client
import ipaddress
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from .. import wait


TEST_HOSTS = ipaddress.ip_network("10.213.0.0/16")  # tests/netns_hosts.py SUBNET_PREFIX


def _test_host(host: str) -> bool:
    try:
        return ipaddress.ip_address(host) in TEST_HOSTS
    except ValueError:
        return False


@dataclass
class LoadResult:
    sent: int = 0
    failed: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


class Load:
    """Start, do something, stop: sends `rate` req/s until stopped and at least `min_count` were sent;
    never more than `max_count` requests or `max_seconds` (bounded by construction)."""

    def __init__(self, port: int, path: str = "/items?limit=5", rate: float = 100.0, min_count: int = 2000,
                 max_count: int = 20000, max_seconds: float = 180.0, workers: int = 16, host: str = "127.0.0.1",
                 expect: int = 200):
        if host not in ("127.0.0.1", "localhost", "::1") and not _test_host(host):
            raise ValueError("load goes to loopback or the project's own test hosts (10.213.0.0/16) only")
        self.port, self.path, self.rate, self.host, self.expect = port, path, rate, host, expect
        self.min_count, self.max_count, self.max_seconds, self.workers = min_count, max_count, max_seconds, workers
        self.result = LoadResult()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._next = 0
        self._threads: list[threading.Thread] = []
        self._t0 = 0.0
        self._ctx = ssl.create_default_context()
        self._ctx.check_hostname = False
        self._ctx.verify_mode = ssl.CERT_NONE  # our own self-signed certificate

    def _take(self) -> Optional[float]:
        with self._lock:
            i = self._next
            elapsed = time.monotonic() - self._t0
            if i >= self.max_count or elapsed > self.max_seconds:
                return None
            if self._stop.is_set() and i >= self.min_count:
                return None
            self._next += 1
        return self._t0 + i / self.rate

    def _one(self) -> None:
        key = None
        try:
            conn = http.client.HTTPSConnection(self.host, self.port, context=self._ctx, timeout=15)
            try:
                conn.request("GET", self.path, headers={"Connection": "close"})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            finally:
                conn.close()
        except Exception as exc:  # any transport failure is a lost request
            status, key = None, type(exc).__name__
        with self._lock:
            self.result.sent += 1
            if status is None:
                self.result.failed += 1
                self.result.errors[key] += 1
            else:
                self.result.statuses[status] += 1
                if status != self.expect:
                    self.result.failed += 1

    def _worker(self) -> None:
        while True:
            at = self._take()
            if at is None:
                return
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._one()

    def start(self) -> "Load":
        self._t0 = time.monotonic()
        self._threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(self.workers)]
        for t in self._threads:
            t.start()
        return self

    def wait_sent(self, n: int, timeout: float = 60) -> None:
        try:
            wait.ready(f"{n} requests sent", lambda: self.result.sent >= n, timeout=timeout, interval=0.05)
        except wait.WaitTimeout:
            pass  # the caller reads result.sent: fewer than n is its answer

    def stop(self) -> LoadResult:
        self._stop.set()
        for t in self._threads:
            t.join(self.max_seconds + 30)
        self.result.seconds = round(time.monotonic() - self._t0, 2)
        return self.result

    def __enter__(self) -> "Load":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
