"""`inv dr-drill`: prove recovery with numbers, in an isolated drill stack on this host.

provision -> load a realistic dataset -> back up -> keep writing -> disaster (PostgreSQL killed, its
data directory and Redis data destroyed, API stopped) -> restore the latest recoverable point into a
fresh instance -> API ready -> verify.  RTO = disaster -> API /ready.  RPO = disaster - commit time
of the newest write that survived (0 when nothing committed was lost).
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..commands import docker as d
from ..config import Env, load_env
from ..errors import OperationFailed
from ..ports import free_port
from ..runner import Runner
from ..secrets import Secret
from . import manifest as mf
from .pginstance import PgInstance, os_user
from .redisinstance import RedisInstance
from .restore import restore
from .run import run_backup
from .sources import redis_fingerprint
from .wal import command_line

SIZES = {"small": {"rows": 20_000, "keys": 10_000, "write_s": 4.0},
         "1gb": {"rows": 3_000_000, "keys": 1_000_000, "write_s": 15.0}}

# Realistic rows: names, e-mails, enums, money, JSON documents and free-text notes drawn from vocabularies
# (like real data, unlike pgbench's blank padding or pure random hex, which no compressor can shrink).
DATASET_SQL = """
CREATE TABLE drill_orders (
  id bigserial PRIMARY KEY, customer text NOT NULL, email text, amount numeric(12,2), currency text,
  status text, tags text[], payload jsonb, note text, created_at timestamptz);
INSERT INTO drill_orders (customer, email, amount, currency, status, tags, payload, note, created_at)
SELECT initcap(f) || ' ' || initcap(l), f || '.' || l || (i % 997) || '@' || d,
       round((random() * 500)::numeric, 2), (ARRAY['EUR','USD','GBP'])[1 + i % 3],
       (ARRAY['new','paid','shipped','delivered','refunded'])[1 + (random() * 4)::int],
       ARRAY['segment-' || i % 7, 'channel-' || i % 4],
       jsonb_build_object('sku', 'SKU-' || lpad(((random() * 20000)::int)::text, 5, '0'),
                          'qty', 1 + (random() * 5)::int, 'warehouse', (ARRAY['BER','HAM','MUC','FRA'])[1 + i % 4],
                          'gift', random() < 0.1, 'unit_price', round((random() * 100)::numeric, 2)),
       (SELECT string_agg(w[1 + (random() * 40)::int + 0 * g], ' ') FROM generate_series(1, 4 + i % 17) g),
       now() - random() * interval '365 days'
FROM generate_series(1, {rows}) i,
     LATERAL (SELECT (ARRAY['anna','ben','carla','david','emma','felix','greta','hugo','ines','jonas','klara','lukas',
                             'mia','noah','olga','paul','rosa','sami','tina','viktor'])[1 + (random() * 19)::int] AS f,
                     (ARRAY['meyer','schmidt','nguyen','garcia','rossi','kowalski','dubois','jensen','silva','novak',
                             'tanaka','khan','murphy','ivanova','larsen','costa'])[1 + (random() * 15)::int] AS l,
                     (ARRAY['example.com','mail.test','ios.example','corp.example'])[1 + i % 4] AS d,
                     ARRAY['delivered','to','the','warehouse','customer','asked','for','express','shipping','invoice',
                           'sent','twice','address','changed','after','order','payment','confirmed','by','bank',
                           'transfer','gift','wrap','requested','please','call','before','delivery','item',
                           'backordered','until','next','week','partial','refund','issued','damaged','box','label',
                           'reprinted','return'] AS w) v;
CREATE TABLE drill_writes (seq bigint PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT clock_timestamp());
"""


@dataclass
class Phase:
    name: str
    start: float
    end: float = 0.0

    @property
    def seconds(self) -> float:
        return round(self.end - self.start, 2)


@dataclass
class DrillReport:
    id: str
    env: str
    size: str
    rto_seconds: float = 0.0
    rpo_seconds: float = 0.0
    verified: bool = False
    targets: dict = field(default_factory=dict)
    targets_met: bool = False
    phases: list[dict] = field(default_factory=list)
    dataset: dict = field(default_factory=dict)
    writes: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)
    restore_steps: dict = field(default_factory=dict)  # inside "restore": seconds per step of inv restore
    backup_id: str = ""
    error: str = ""


class Writer(threading.Thread):
    """Commits one numbered row at a time and records each commit's time as the client saw it."""

    def __init__(self, inst: PgInstance):
        super().__init__(daemon=True)
        self.inst = inst
        self.committed: list[tuple[int, float]] = []
        self.stop_flag = threading.Event()
        self.runner = Runner(say=lambda s: None)

    def run(self) -> None:
        seq = 0
        while not self.stop_flag.is_set():
            seq += 1
            try:
                self.inst.sql(self.runner, f"INSERT INTO drill_writes (seq) VALUES ({seq})")  # nosec B608 # seq is this loop's own int counter, not input
            except OperationFailed:
                return
            self.committed.append((seq, time.time()))
            time.sleep(0.05)


def drill(env: Env, runner: Runner, size: str = "small", image: str = "") -> DrillReport:
    spec = SIZES[size]
    b = env.cfg.backup
    did = mf.now().strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)
    rep = DrillReport(id=did, env=env.name, size=size, targets={"rto_seconds": b.rto_target_s, "rpo_seconds": b.rpo_target_s})
    ws = Path(f"/var/tmp/iosops-drill-{did}")  # nosec B108 # per-drill workspace named by a random id; created by the drill, removed after it
    phases: list[Phase] = []

    def phase(name: str) -> Phase:
        if phases and not phases[-1].end:
            phases[-1].end = time.time()
        p = Phase(name, time.time())
        phases.append(p)
        runner.info(f"[drill] {name}")
        return p

    user = os_user(b.postgres.os_user)
    pg_port, redis_port, api_port = free_port(), free_port(), free_port()
    password = secrets.token_urlsafe(18)
    api_name = f"iosops-drill-{did.lower()}-api"
    inst = PgInstance(ws / "pgdata", pg_port, b.postgres.bin_dir, user)
    red = RedisInstance(ws / "redis", redis_port)
    try:
        ws.mkdir(parents=True)
        (ws / "store").mkdir()
        (ws / "secrets").mkdir()
        (ws / "secrets" / "pg").write_text(password)
        if user:
            for p in (ws, ws / "store", ws / "secrets", ws / "secrets" / "pg"):
                shutil.chown(p, user, user)
        # The drill stack runs on this host whatever the env's target: a local store is right for it.
        denv = load_env(env.name, overrides={
            **env.overrides, "target": "local", "state_dir": str(ws / "state"),
            "backup": {**env.overrides.get("backup", {}), "runs_on": "host",
                       "store": {"kind": "local", "path": str(ws / "store")},
                       "metrics_file": str(ws / "metrics.prom"), "components": ["postgres", "redis"],
                       "postgres": {"port": pg_port, "host": "127.0.0.1", "data_dir": str(ws / "pgdata"),
                                    "password": {"file": str(ws / "secrets" / "pg")}},
                       "redis": {"port": redis_port, "host": "127.0.0.1", "rdb_path": str(ws / "redis" / "dump.rdb")}}})
        phase("provision")
        inst.init(runner, Secret(password, "drill.pg"), command_line(denv, "push"))
        red.start(runner)
        api = ApiProcess(api_name, image or _default_image(env), pg_port, redis_port, api_port, password)
        api.migrate(runner)

        phase("load dataset")
        inst.sql(runner, DATASET_SQL.format(rows=spec["rows"]))
        inst.sql(runner, "VACUUM (ANALYZE) drill_orders")  # as production tables are: hint bits set
        _load_redis(runner, redis_port, spec["keys"])
        rep.dataset = {"rows": spec["rows"], "redis_keys": spec["keys"],
                       "postgres_bytes": int(inst.sql(runner, "SELECT pg_database_size(current_database())"))}
        api.start(runner)
        api.wait_ready(runner, 120)

        phase("backup")
        man = run_backup(denv, runner)
        rep.backup_id = man.id

        phase("keep writing")
        writer = Writer(inst)
        writer.start()
        time.sleep(spec["write_s"])

        phase("disaster")
        t_disaster = time.time()
        writer.stop_flag.set()
        writer.join(10)
        _kill_postgres(inst)
        shutil.rmtree(inst.data_dir)
        red.stop(runner)
        shutil.rmtree(red.dir)
        api.stop(runner)

        phase("restore")  # the fresh instances: an empty Redis, no PostgreSQL data directory at all
        red.start(runner)
        rep.restore_steps = restore(denv, runner, latest=True, safety=False).phases
        phase("api ready")
        api.start(runner)
        api.wait_ready(runner, 120)
        t_ready = time.time()

        phase("verify")
        rep.rto_seconds = round(t_ready - t_disaster, 2)
        survived = {int(x) for x in inst.sql(runner, "SELECT seq FROM drill_writes").split()}
        committed = writer.committed
        lost = [(s, t) for s, t in committed if s not in survived]
        kept = [(s, t) for s, t in committed if s in survived]
        holes = bool(lost and kept and min(s for s, _ in lost) < max(s for s, _ in kept))
        newest_kept = max((t for _, t in kept), default=None)
        rep.rpo_seconds = 0.0 if not lost else round(t_disaster - (newest_kept or man.completed.timestamp()), 2)
        rep.writes = {"committed": len(committed), "recovered": len(kept), "lost": len(lost), "holes": holes}
        from ..commands.pg import table_fingerprint_sql

        want = man.fingerprints["postgres"]["tables"]["public.drill_orders"]
        pg_fp = inst.sql(runner, table_fingerprint_sql("public.drill_orders", want.get("hash", "text")))
        rep.checks = {
            "drill_orders equals the backup's fingerprint": pg_fp == f"{want['rows']} {want['checksum']}",
            "redis keyset equals the backup's fingerprint": redis_fingerprint(denv, runner) == man.fingerprints["redis"],
            "recovered writes have no holes": not holes,
            "api /ready answers 200 after verification": api.ready_now(),
        }
        rep.verified = all(rep.checks.values())
        phases[-1].end = time.time()
    except BaseException as exc:
        rep.error = str(exc)
        if phases and not phases[-1].end:
            phases[-1].end = time.time()
        raise
    finally:
        t0 = phases[0].start if phases else time.time()
        rep.phases = [{"name": p.name, "start_s": round(p.start - t0, 2), "seconds": p.seconds} for p in phases]
        rep.targets_met = rep.rto_seconds <= b.rto_target_s and rep.rpo_seconds <= b.rpo_target_s
        _cleanup(runner, inst, red, api_name, ws)
    return rep


def _default_image(env: Env) -> str:
    from ..build.image import build_image

    return build_image(env, Runner(say=lambda s: None)).image


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _kill_postgres(inst: PgInstance) -> None:
    """Host loss: SIGKILL the postmaster and every backend at once (no checkpoint, no final archiving)."""
    pid_file = inst.data_dir / "postmaster.pid"
    pid = int(pid_file.read_text().split()[0])
    for p in [pid, *_children(pid)]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", inst.port), timeout=0.2):
                time.sleep(0.1)
        except OSError:
            break
    # children of a SIGKILLed postmaster exit on their own once they notice; give them a moment
    time.sleep(0.5)


def _load_redis(runner: Runner, port: int, keys: int) -> None:
    import subprocess  # nosec B404 # argv list, no shell: the drill pipes bytes into redis-cli

    payload = bytearray()
    for i in range(keys):
        k, v = f"drill:key:{i}".encode(), secrets.token_hex(20).encode()
        payload += b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v)
    runner.call(f"redis-cli -p {port} --pipe  (load {keys} keys)", lambda: subprocess.run(  # nosec B603 B607 # fixed argv without a shell; redis-cli is found on PATH like every tool
        ["redis-cli", "-p", str(port), "--pipe"], input=bytes(payload), capture_output=True, check=True))


@dataclass
class ApiProcess:
    name: str
    image: str
    pg_port: int
    redis_port: int
    port: int
    password: str

    def _env(self) -> dict[str, str]:
        return {"POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(self.pg_port), "POSTGRES_DB": "ios",
                "POSTGRES_USER": "ios", "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0", "PORT": str(self.port),
                "WEB_CONCURRENCY": "1"}

    def _base(self) -> list[str]:
        argv = [d.DOCKER, "run", "--network", "host", "--label", "iosops.drill=1"]
        for k, v in sorted(self._env().items()):
            argv += ["--env", f"{k}={v}"]
        return argv + ["--env", "POSTGRES_PASSWORD"]

    def migrate(self, runner: Runner) -> None:
        runner.run([*self._base(), "--rm", self.image, "python3", "-m", "iosapi.migrate"],
                   env={"POSTGRES_PASSWORD": Secret(self.password)})

    def start(self, runner: Runner) -> None:
        runner.run([*self._base(), "--detach", "--name", self.name, self.image],
                   env={"POSTGRES_PASSWORD": Secret(self.password)})

    def wait_ready(self, runner: Runner, timeout: float) -> None:
        from ..stack.local import wait_ready

        wait_ready(runner, f"http://127.0.0.1:{self.port}/ready", timeout)

    def ready_now(self) -> bool:
        """One more /ready probe, after the checks above ran against the restored data."""
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=5) as resp:  # nosec B310 loopback http
                return resp.status == 200
        except OSError:
            return False

    def stop(self, runner: Runner) -> None:
        runner.run(d.rm_containers([self.name]), check=False)


def _cleanup(runner: Runner, inst: PgInstance, red: RedisInstance, api_name: str, ws: Path) -> None:
    quiet = Runner(say=lambda s: None)
    quiet.run(d.rm_containers([api_name]), check=False)
    if (inst.data_dir / "postmaster.pid").exists():
        inst.stop(quiet, check=False)
    red.stop(quiet)
    shutil.rmtree(ws, ignore_errors=True)


def report_markdown(rep: DrillReport) -> str:
    ok = "PASS" if rep.verified and rep.targets_met else "FAIL"
    lines = [f"# DR drill {rep.id} — {ok}", "",
             f"env `{rep.env}`, dataset `{rep.size}`: {rep.dataset.get('rows', 0):,} PostgreSQL rows "
             f"({rep.dataset.get('postgres_bytes', 0) / 1e6:.0f} MB), {rep.dataset.get('redis_keys', 0):,} Redis keys", "",
             "| figure | measured | target |", "|---|---|---|",
             f"| RTO (disaster → API ready) | **{rep.rto_seconds} s** | ≤ {rep.targets.get('rto_seconds')} s |",
             f"| RPO (data-loss window) | **{rep.rpo_seconds} s** | ≤ {rep.targets.get('rpo_seconds')} s |",
             f"| writes committed / recovered / lost | {rep.writes.get('committed')} / {rep.writes.get('recovered')} / "
             f"{rep.writes.get('lost')} | — |", "", "## Timeline", "", "| phase | starts at | takes |", "|---|---|---|"]
    width = max((p["start_s"] + p["seconds"]) for p in rep.phases) if rep.phases else 1
    for p in rep.phases:
        bar = "█" * max(1, int(30 * p["seconds"] / max(width, 0.01)))
        lines.append(f"| {p['name']} | +{p['start_s']} s | {p['seconds']} s {bar} |")
    if rep.restore_steps:
        lines += ["", "Inside *restore* (`inv restore` step timings): " + ", ".join(
            f"{k.removesuffix('_s')} {v} s" for k, v in rep.restore_steps.items())]
    lines += ["", "## Checks", ""] + [f"- {'✅' if v else '❌'} {k}" for k, v in rep.checks.items()]
    if rep.error:
        lines += ["", f"**Error:** {rep.error}"]
    return "\n".join(lines) + "\n"


def as_json(rep: DrillReport) -> dict:
    return asdict(rep)
