"""`inv dr-drill`: prove recovery with numbers, on the topology `inv deploy` runs.

An isolated copy of the compose stack (own project name, ports, state dir and store; labelled
iosops.drill=1; removed with its volumes afterwards) is deployed with the current release -> a realistic
dataset is loaded -> one backup through the ops image -> writes keep arriving THROUGH THE API BEHIND NGINX
-> disaster: "the data host is lost": the PostgreSQL, Redis and walstream containers are SIGKILLed and
removed with their volumes (only the store survives; the web tier keeps running) -> `inv restore --latest`
(the same code path as the task) -> the API answers /ready 200 through nginx.

RTO = disaster -> /ready 200 through nginx, the restore's fingerprint verification included.
RPO = how much acknowledged work was lost: the ack time of the newest write the API acknowledged that is
missing, minus that of the newest acknowledged write that survived (0 when nothing acknowledged was lost).
"""
from __future__ import annotations

import secrets
import ssl
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import wait
from ..commands import compose as cc
from ..commands import docker as d
from ..commands import pg
from ..commands import python as py
from ..config import Env, load_env
from ..ports import free_port
from ..runner import Runner
from . import manifest as mf

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
    topology: dict = field(default_factory=dict)  # what was drilled: services, what was lost, what survived
    backup_id: str = ""
    error: str = ""


class ApiWriter(threading.Thread):
    """Creates one item at a time through nginx (https on 127.0.0.1) and records, for every write the API
    acknowledged (201), its id and the time the client saw the acknowledgement. Bounded: stops when told,
    after max_seconds, or after max_count writes."""

    def __init__(self, port: int, max_seconds: float = 600, max_count: int = 100_000, pause: float = 0.02):
        super().__init__(daemon=True, name="drill-writer")
        self.url = f"https://127.0.0.1:{port}/items"
        self.acked: list[tuple[int, float]] = []  # (seq in the item's name, when the client saw the 201)
        self.failed = 0
        self.stop_flag = threading.Event()
        self.max_seconds, self.max_count, self.pause = max_seconds, max_count, pause

    def run(self) -> None:
        import http.client
        import json

        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the drill stack's own self-signed certificate
        host, port = "127.0.0.1", int(self.url.split(":")[2].split("/")[0])
        t0, seq, conn = time.monotonic(), 0, None
        while not self.stop_flag.is_set() and time.monotonic() - t0 < self.max_seconds and seq < self.max_count:
            seq += 1
            body = json.dumps({"name": f"drill-write-{seq}", "data": {"seq": seq}})
            try:
                conn = conn or http.client.HTTPSConnection(host, port, timeout=5, context=ctx)
                conn.request("POST", "/items", body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()  # the connection is reused: read the whole answer
                if resp.status == 201:
                    self.acked.append((seq, time.time()))  # matched by name after the restore (ids may be reused)
                else:
                    self.failed += 1
            except (OSError, http.client.HTTPException, ValueError):
                self.failed += 1
                conn = None
            self.stop_flag.wait(self.pause)


def drill_env(env: Env, ws: Path, did: str) -> Env:
    """The env of the drill's own stack: everything isolated from what the user runs."""
    return load_env(env.name, overrides={
        **env.overrides, "target": "local", "state_dir": str(ws / "state"),
        "stack": {"name": f"iosops-drill-{did.lower()}", "labels": {**env.cfg.stack.labels, "iosops.drill": "1"},
                  "publish_host": "127.0.0.1"},
        "deploy": {"http_port": free_port(), "https_port": free_port(), "verify_hosts": False, "replicas": 1,
                   "project_dir": str(ws / "stack"), "tls": {"self_signed": True,
                                                              "cert": "nginx/certs/fullchain.pem",
                                                              "key": "nginx/certs/privkey.pem"},
                   "error_window_s": 0, "profiles": []},
        "backup": {**env.overrides.get("backup", {}), "runs_on": "stack", "components": ["postgres", "redis"],
                   "store": {"kind": "local", "path": str(ws / "store")}},
        "hosts": {"hosts": []}, "notify": {"required": False}})


def drill(env: Env, runner: Runner, size: str = "small", image: str = "") -> DrillReport:
    from ..deploy import bluegreen as bg
    from ..deploy.target import targets
    from . import stack

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

    denv = None
    writer = None
    try:
        runner.mkdir(ws)
        denv = drill_env(env, ws, did)
        t = targets(denv, runner)[0]
        https = denv.cfg.deploy.https_port
        rep.topology = {"kind": "compose", "project": denv.cfg.stack.name, "edge": f"https://127.0.0.1:{https}",
                        "services": ["nginx", "api-blue", "postgres", "redis", "walstream"],
                        "lost": ["postgres", "redis", "walstream", "pgdata", "redisdata", "opsdata"],
                        "survives": ["the store", "nginx", "the API replicas"]}

        phase("deploy")
        image = image or _default_image(env, runner)
        # One step: in a dry-run the deploy's own looks (image, ports, colours) would ask about a stack and an
        # image that the drill has not made yet.
        runner.call(f"inv deploy of {image} as the drill's isolated stack {denv.cfg.stack.name} "
                    f"(https://127.0.0.1:{https})", bg.deploy, denv, runner, image)

        phase("load dataset")
        runner.run(cc.exec_(t.base(), "postgres", pg.psql_socket(denv.cfg.stack.postgres_user, denv.cfg.stack.postgres_db)),
                   input=DATASET_SQL.format(rows=spec["rows"]) + "VACUUM (ANALYZE) drill_orders;\n", timeout=3600)
        _load_redis(runner, t, spec["keys"])
        rep.dataset = {"rows": spec["rows"], "redis_keys": spec["keys"]}
        if not runner.dry_run:  # a look at the drill's own stack, which a dry-run never starts
            rep.dataset["postgres_bytes"] = int(_psql(runner, t, denv, "SELECT pg_database_size(current_database())") or 0)

        phase("backup")
        man = stack.backup(denv, runner).get("backup", {})  # {} in a dry-run
        rep.backup_id = man.get("id", "")

        phase("keep writing")
        writer = ApiWriter(https)
        runner.call(f"write through nginx for {spec['write_s']}s", _write_for, writer, spec["write_s"])

        phase("disaster")
        lost = ["postgres", "redis", "walstream"]
        # The compose file's volumes by compose's own labels (looked up before the clock starts).
        vols = [v for name in ("pgdata", "redisdata", "opsdata")
                for v in runner.run(d.compose_volumes(t.project, name), mutating=False).stdout.split()]
        # Through the compose file's own services (SIGKILL: no clean shutdown, no last upload: the host is gone).
        runner.run(cc.kill(t.base(), lost))
        t_disaster = time.time()
        writer.stop_flag.set()  # its in-flight request fails or is acknowledged; either is recorded
        runner.run(cc.rm(t.base(), lost))
        if vols:
            runner.run(d.rm_volumes(vols))

        restore_started = phase("restore").start  # `inv restore --latest` of the drill's env, into fresh volumes
        res = stack.restore(denv, runner, latest=True, safety=False)
        rep.restore_steps = res.get("phases", {})
        phase("api ready")
        _wait_ready_tls(runner, https, 120)
        t_ready = time.time()

        phase("verify")
        if runner.dry_run:  # the drill's own stack never started: nothing to look at
            runner.call("verify: acknowledged writes recovered without holes, fingerprints equal the backup's, "
                        "RTO/RPO measured", lambda: None)
            phases[-1].end = time.time()
            return rep
        writer.join(15)
        rep.rto_seconds = round(t_ready - t_disaster, 2)
        # A request in flight at the disaster may be answered after the restore (the API waited for a
        # connection): it was never lost and never acknowledged before the disaster; counted apart.
        late = [(i, at) for i, at in writer.acked if at > restore_started]
        acked = [(i, at) for i, at in writer.acked if at <= restore_started]
        # By name, not id: a sequence restored by recovery hands out again the ids of the writes it lost.
        present = {int(x) for x in _psql(runner, t, denv, "SELECT substr(name, 13) FROM items "
                                                           "WHERE name LIKE 'drill-write-%'").split()}
        kept = [(i, at) for i, at in acked if i in present]
        missing = [(i, at) for i, at in acked if i not in present]
        holes = bool(missing and kept and min(i for i, _ in missing) < max(i for i, _ in kept))
        newest_kept = max((at for _, at in kept), default=t_disaster)
        rep.rpo_seconds = round(max(at for _, at in missing) - newest_kept, 2) if missing else 0.0
        rep.writes = {"acknowledged": len(acked), "recovered": len(kept), "lost": len(missing), "holes": holes,
                      "failed_requests": writer.failed, "acknowledged_after_restore": len(late),
                      "newest_recovered": max(kept, default=None), "oldest_lost": min(missing, default=None),
                      "newest_lost": max(missing, default=None), "disaster_at": t_disaster}
        want = man["fingerprints"]["postgres"]["tables"]["public.drill_orders"]
        from ..commands.pg import table_fingerprint_sql

        got = _psql(runner, t, denv, table_fingerprint_sql("public.drill_orders", want.get("hash", "text")))
        rep.checks = {
            "inv restore verified its fingerprints": bool(res.get("verified")),
            "drill_orders equals the backup's fingerprint": got == f"{want['rows']} {want['checksum']}",
            "redis keyset equals the backup's fingerprint": res.get("fingerprints", {}).get("redis") ==
            man["fingerprints"]["redis"],
            "acknowledged writes recovered without holes": not holes,
            # Still ready after the checks above (a single answer can be late on a loaded host: 30 s to answer).
            "api /ready answers 200 through nginx": _ready_within(https, 30),
        }
        rep.verified = all(rep.checks.values())
        phases[-1].end = time.time()
    except BaseException as exc:
        rep.error = str(exc)
        if phases and not phases[-1].end:
            phases[-1].end = time.time()
        raise
    finally:
        if writer is not None:
            writer.stop_flag.set()
        t0 = phases[0].start if phases else time.time()
        rep.phases = [{"name": p.name, "start_s": round(p.start - t0, 2), "seconds": p.seconds} for p in phases]
        rep.targets_met = rep.rto_seconds <= b.rto_target_s and rep.rpo_seconds <= b.rpo_target_s
        _cleanup(runner, denv, ws)
    return rep


def _write_for(writer: "ApiWriter", seconds: float) -> None:
    writer.start()  # keeps writing through the disaster until stopped
    time.sleep(seconds)


def _psql(runner: Runner, t, env: Env, sql: str) -> str:
    return runner.probe(cc.exec_(t.base(), "postgres", pg.psql_socket(env.cfg.stack.postgres_user, env.cfg.stack.postgres_db, sql))).stdout.strip()


def _default_image(env: Env, runner: Runner) -> str:
    from ..images.image import build_image

    return build_image(env, runner.quiet()).image


# Run in the API container, as the API connects (its ACL user, key pattern ios:*; the default user is off):
# argv[1] random keys, pipelined.
LOAD_REDIS = """
import secrets, sys, redis
from iosapi.settings import load
s = load()
c = redis.Redis.from_url(s.redis_url, username=s.redis_username or None, password=s.redis_password or None)
n = int(sys.argv[1])
for start in range(0, n, 1000):
    p = c.pipeline(transaction=False)
    for i in range(start, min(n, start + 1000)):
        p.set(f"ios:drill:key:{i}", secrets.token_hex(20))
    p.execute()
print(n)
"""


def _load_redis(runner: Runner, t, keys: int) -> None:
    runner.run(cc.exec_(t.base(), "api-blue", py.script(LOAD_REDIS, str(keys))), timeout=600)


def _ready_now(port: int) -> bool:
    import urllib.request

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/ready", timeout=5, context=ctx) as resp:  # nosec B310 loopback https to the drill's own stack
            return resp.status == 200
    except OSError:
        return False


def _ready_within(port: int, seconds: float) -> bool:
    try:
        wait.ready(f"https://127.0.0.1:{port}/ready to answer 200", lambda: _ready_now(port), timeout=seconds, interval=1)
        return True
    except wait.WaitTimeout:
        return False


def _wait_ready_tls(runner: Runner, port: int, timeout: float) -> None:
    def poll() -> None:
        wait.ready(f"https://127.0.0.1:{port}/ready to answer 200", lambda: _ready_now(port), timeout=timeout)

    runner.call(f"wait until GET https://127.0.0.1:{port}/ready answers 200 through nginx", poll)


def _cleanup(runner: Runner, denv, ws: Path) -> None:
    from ..deploy import bluegreen as bg

    quiet = runner.quiet()
    if denv is not None:
        bg.destroy(denv, quiet, volumes=True)
    quiet.remove(ws, best_effort=True)


def report_markdown(rep: DrillReport) -> str:
    ok = "PASS" if rep.verified and rep.targets_met else "FAIL"
    lines = [f"# DR drill {rep.id} — {ok}", "",
             f"env `{rep.env}`, dataset `{rep.size}`: {rep.dataset.get('rows', 0):,} PostgreSQL rows "
             f"({rep.dataset.get('postgres_bytes', 0) / 1e6:.0f} MB), {rep.dataset.get('redis_keys', 0):,} Redis keys", "",
             f"topology: {rep.topology.get('kind', '?')} stack `{rep.topology.get('project', '?')}`; lost: "
             f"{', '.join(rep.topology.get('lost', []))}; survived: {', '.join(rep.topology.get('survives', []))}", "",
             "| figure | measured | target |", "|---|---|---|",
             f"| RTO (disaster → API /ready through nginx) | **{rep.rto_seconds} s** | ≤ {rep.targets.get('rto_seconds')} s |",
             f"| RPO (data-loss window) | **{rep.rpo_seconds} s** | ≤ {rep.targets.get('rpo_seconds')} s |",
             f"| writes acknowledged by the API / recovered / lost | {rep.writes.get('acknowledged')} / "
             f"{rep.writes.get('recovered')} / {rep.writes.get('lost')} | — |", "", "## Timeline", "", "| phase | starts at | takes |", "|---|---|---|"]
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
