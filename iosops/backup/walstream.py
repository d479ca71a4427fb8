"""The WAL streamer of a deployed stack (Barman's streaming model): `pg_receivewal` on a physical
replication slot, run by `python -m iosops.backup.stackops walstream` in the ops image as the compose
service `walstream` or the Kubernetes Deployment `ios-walstream`.

- The slot makes the primary keep every segment until pg_receivewal has flushed it here, so a dead or
  restarted streamer loses nothing; `max_slot_wal_keep_size` bounds what the primary keeps (alerts fire
  long before).
- Each completed segment (and timeline history file) is pushed with the archive's own `push` (compress,
  checksum, upload, .json last) and only then removed from the spool.
- The segment being written is uploaded as `<name>.partial` every `partial_interval_s` when it changed,
  and once more when pg_receivewal stops (a clean shutdown of the primary, SIGTERM): RPO ≈ that interval.
- Metrics on :metrics_port/metrics: this process's gauges plus every *.prom textfile beside
  backup.metrics_file (the backup and WAL metrics `stackops backup` writes into the shared volume).
"""
from __future__ import annotations

import http.server
import re
import signal
import subprocess  # nosec B404 # pg_receivewal runs as an argv list built by iosops.commands.pg, no shell
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..commands import pg
from ..config import Env
from ..errors import IosopsError
from ..runner import Runner
from ..secretref import Secret
from . import postgres
from .store import open_store
from .wal import push, push_partial, wal_metrics

COMPLETE_RE = re.compile(r"^([0-9A-F]{24}|[0-9A-F]{8}\.history)$")
PARTIAL_RE = re.compile(r"^([0-9A-F]{24})\.partial$")

SLOT_SQL = ("SELECT active::int, coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint, "
            "coalesce(safe_wal_size, -1), coalesce(wal_status, '') FROM pg_replication_slots "
            "WHERE slot_name = '{slot}'")
# pg_receivewal's words when the primary no longer has the WAL the slot pointed at
GAP_WORDS = ("has already been removed", "has been invalidated", "can no longer get changes")


@dataclass
class Gauges:
    env: str
    slot: str
    up: int = 0
    slot_active: int = 0
    slot_lag_bytes: int = 0
    slot_safe_wal_size_bytes: int = -1
    last_partial_upload: float = 0.0
    segments_uploaded: int = 0
    gaps: int = 0
    extra_dirs: list[Path] = field(default_factory=list)

    def render(self) -> str:
        e, s = f'env="{self.env}"', f'env="{self.env}",slot="{self.slot}"'
        lines = [
            "# HELP iosops_walstream_up 1 while pg_receivewal runs and is connected to the primary.",
            "# TYPE iosops_walstream_up gauge", f"iosops_walstream_up{{{e}}} {self.up}",
            "# TYPE iosops_walstream_slot_active gauge", f"iosops_walstream_slot_active{{{s}}} {self.slot_active}",
            "# TYPE iosops_walstream_slot_lag_bytes gauge", f"iosops_walstream_slot_lag_bytes{{{s}}} {self.slot_lag_bytes}",
            "# TYPE iosops_walstream_slot_safe_wal_size_bytes gauge",
            f"iosops_walstream_slot_safe_wal_size_bytes{{{s}}} {self.slot_safe_wal_size_bytes}",
            "# TYPE iosops_walstream_last_partial_upload_timestamp_seconds gauge",
            f"iosops_walstream_last_partial_upload_timestamp_seconds{{{e}}} {self.last_partial_upload}",
            "# TYPE iosops_walstream_segments_uploaded_total counter",
            f"iosops_walstream_segments_uploaded_total{{{e}}} {self.segments_uploaded}",
            "# HELP iosops_walstream_gaps_total Times the slot was invalidated (WAL lost before it was streamed):"
            " point-in-time recovery across a gap is impossible until the next base backup.",
            "# TYPE iosops_walstream_gaps_total counter", f"iosops_walstream_gaps_total{{{e}}} {self.gaps}",
        ]
        for d in self.extra_dirs:
            for f in sorted(d.glob("*.prom")) if d.is_dir() else []:
                try:
                    lines.append(f.read_text().rstrip("\n"))
                except OSError:
                    continue
        return "\n".join(lines) + "\n"


def parse_slot_row(text: str) -> Optional[tuple[int, int, int, str]]:
    """`active|lag|safe_wal_size|wal_status` from SLOT_SQL (psql -A -t), or None when there is no slot."""
    parts = text.strip().split("|")
    if len(parts) != 4:
        return None
    return int(parts[0]), int(parts[1]), int(parts[2]), parts[3]


def serve_metrics(gauges: Gauges, port: int) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = gauges.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)  # nosec B104 # a container's metrics port, scraped by Prometheus over the stack's network
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
    return server


class Streamer:
    def __init__(self, env: Env, runner: Runner, say=print):
        self.env, self.runner = env, runner
        self.cfg = env.cfg.backup.walstream
        self.spool = Path(self.cfg.spool_dir)
        self.store = open_store(env)
        self.say = say
        self.stopping = threading.Event()
        self.proc: Optional[subprocess.Popen] = None
        self.gauges = Gauges(env.name, self.cfg.slot,
                             extra_dirs=[env.path(env.cfg.backup.metrics_file).parent])
        self._partial_seen: dict[str, tuple[int, int]] = {}

    # -- pieces ------------------------------------------------------------------------------------
    def _pg_env(self) -> dict[str, str]:
        return {k: (v.get() if isinstance(v, Secret) else v) for k, v in postgres.pg_env(self.env).items()}

    def _conn(self) -> list[str]:
        s = self.env.cfg.backup.postgres
        return pg.conn_args(s.host, s.port, s.user)

    def ensure_slot(self) -> bool:
        s = self.env.cfg.backup.postgres
        r = subprocess.run(pg.receivewal_create_slot(s.bin_dir, s.host, s.port, s.user, self.cfg.slot),  # nosec B603 # argv list
                           env=self._full_env(), capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            self.say(f"walstream: cannot create slot {self.cfg.slot}: {r.stderr.strip()[-300:]}")
        return r.returncode == 0

    def _full_env(self) -> dict[str, str]:
        import os

        return {**os.environ, **self._pg_env()}

    def upload_completed(self) -> None:
        for f in sorted(self.spool.iterdir()):
            if not COMPLETE_RE.match(f.name):
                continue
            try:
                msg = push(self.env, self.store, f, f.name)
            except (IosopsError, OSError) as exc:
                self.say(f"walstream: upload of {f.name} failed, retrying later: {exc}")
                wal_metrics(self.env, False, self.runner)
                return  # in order: never skip ahead of a segment that is not stored yet
            wal_metrics(self.env, True, self.runner)
            self.gauges.segments_uploaded += 1
            self.say(f"walstream: {f.name}: {msg}")
            f.unlink()
            self._partial_seen.pop(f.name, None)

    def upload_partial(self, force: bool = False) -> None:
        for f in sorted(self.spool.glob("*.partial")):
            m = PARTIAL_RE.match(f.name)
            if not m:
                continue
            try:
                st = f.stat()
            except FileNotFoundError:
                continue  # completed and renamed meanwhile: the next upload_completed takes it
            sig = (st.st_size, st.st_mtime_ns)
            if not force and self._partial_seen.get(m.group(1)) == sig:
                # Nothing new was streamed: the store still holds everything (an idle database must not
                # look like a stale upload to the WalStreamPartialUploadStale alert).
                self.gauges.last_partial_upload = time.time()
                continue
            try:
                push_partial(self.env, self.store, f, m.group(1))
            except (IosopsError, OSError) as exc:
                self.say(f"walstream: partial upload of {m.group(1)} failed, retrying: {exc}")
                continue
            self._partial_seen[m.group(1)] = sig
            self.gauges.last_partial_upload = time.time()

    def read_slot(self) -> None:
        s = self.env.cfg.backup.postgres
        argv = pg.psql(s.bin_dir, s.host, s.port, s.user, s.dbname, SLOT_SQL.format(slot=self.cfg.slot))
        try:
            r = subprocess.run(argv, env=self._full_env(), capture_output=True, text=True, timeout=10)  # nosec B603 # argv list
        except subprocess.TimeoutExpired:
            return
        row = parse_slot_row(r.stdout) if r.returncode == 0 else None
        if row:
            self.gauges.slot_active, self.gauges.slot_lag_bytes, self.gauges.slot_safe_wal_size_bytes, status = row
            return status
        self.gauges.slot_active = 0
        return None

    def restart_after_gap(self, why: str) -> None:
        """The primary dropped WAL the slot still needed (max_slot_wal_keep_size: the stream was down too
        long): streaming resumes on a new slot, the gap is counted (WalStreamGap alert) and said loudly."""
        s = self.env.cfg.backup.postgres
        subprocess.run(pg.receivewal_drop_slot(s.bin_dir, s.host, s.port, s.user, self.cfg.slot),  # nosec B603 # argv list
                       env=self._full_env(), capture_output=True, text=True, timeout=30)
        for f in self.spool.iterdir():
            f.unlink()
        self.gauges.gaps += 1
        self.say(f"walstream: WAL GAP: {why}; started a new slot. Point-in-time recovery into the gap is impossible: "
                 "take a base backup now (inv backup)")

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> int:
        self.spool.mkdir(parents=True, exist_ok=True)
        server = serve_metrics(self.gauges, self.cfg.metrics_port)
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        s = self.env.cfg.backup.postgres
        self.say(f"walstream: {s.host}:{s.port} slot {self.cfg.slot} -> {self.store.url} "
                 f"(partial every {self.cfg.partial_interval_s}s, metrics :{self.cfg.metrics_port})")
        backoff = 1.0
        try:
            while not self.stopping.is_set():
                self.upload_completed()
                if self.read_slot() == "lost":
                    self.restart_after_gap(f"slot {self.cfg.slot} was invalidated by the primary")
                if not self.ensure_slot():
                    self.stopping.wait(backoff)
                    backoff = min(backoff * 2, 30)
                    continue
                self.proc = subprocess.Popen(  # nosec B603 # argv list
                    pg.receivewal(s.bin_dir, s.host, s.port, s.user, str(self.spool), self.cfg.slot),
                    env=self._full_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                started = time.monotonic()
                last_slot = 0.0
                while self.proc.poll() is None and not self.stopping.is_set():
                    self.gauges.up = 1
                    self.upload_completed()
                    self.upload_partial()
                    if time.monotonic() - last_slot > 5:
                        self.read_slot()
                        last_slot = time.monotonic()
                    self.stopping.wait(min(self.cfg.partial_interval_s, 1.0))
                self.gauges.up = 0
                if self.proc.poll() is None:
                    self.proc.terminate()  # SIGTERM: pg_receivewal flushes what it has and exits
                try:
                    _, err = self.proc.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    _, err = self.proc.communicate()
                # The primary stopped (or we do): what was streamed last must reach the store now.
                self.upload_completed()
                self.upload_partial(force=True)
                if any(w in (err or "") for w in GAP_WORDS) and not self.stopping.is_set():
                    self.restart_after_gap((err or "").strip().splitlines()[-1][:200])
                    continue
                if not self.stopping.is_set():
                    tail = (err or "").strip().splitlines()[-1:] or [""]
                    self.say(f"walstream: pg_receivewal exited {self.proc.returncode}: {tail[0][:300]}; reconnecting")
                    backoff = 1.0 if time.monotonic() - started > 30 else min(backoff * 2, 30)
                    self.stopping.wait(backoff)
        finally:
            server.shutdown()
        self.say("walstream: stopped; the last partial segment is in the store")
        return 0


def run(env: Env, runner: Runner) -> int:
    return Streamer(env, runner, say=runner.info).run()
