"""The compose deploy's flows on SSH hosts (staging: two web hosts, one data host), as plans: a scripted
executor stands in for the three hosts — each keeps the containers `up` started and answers probes like
a real host would — so every failure path is exercised in milliseconds. The same code runs for real on
this machine (tests/integration/test_deploy_stack.py) and on three SSH hosts with their own Docker
engines (tests/integration/test_multihost_deploy.py)."""
import json
import re

import pytest

from iosops.config import load_env
from iosops.deploy import bluegreen as bg
from iosops.deploy import switch as sw
from iosops.errors import BadInput, OperationFailed
from iosops.runner import by_argv, Result, Runner
from tests.unit.test_stack_backup_plan import SENTINELS

APP1, APP2, DB1 = (f"root@{h}.staging.ios.internal:22" for h in ("app1", "app2", "db1"))
IMAGE = "registry.staging.ios.internal:5000/iosops/api:v2"


class Hosts:
    """Three hosts' worth of state: running services, rendered files; `fail` maps (host, needle) to the
    Result that command gets instead (a fault injected on one host)."""

    def __init__(self, active: str = "", fail: dict | None = None, migrate: dict | None = None):
        self.running: dict[str, dict[str, int]] = {h: {} for h in (APP1, APP2, DB1)}
        self.files: dict[tuple[str, str], str] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail = fail or {}
        self.migrate = migrate or {"pending": [], "applied": []}
        if active:
            for h in (APP1, APP2):
                self.running[h].update({f"api-{active}": 2, "nginx": 1})
                self.files[(h, "/srv/iosops/iosops-staging/nginx/conf.d/upstream.conf")] = f"# Active colour: {active}\n"
                self.files[(h, "/srv/iosops/iosops-staging/state.json")] = json.dumps(
                    {"active": active, "images": {active: IMAGE.replace("v2", "v1")}})
            self.running[DB1].update({"postgres": 1, "redis": 1, "walstream": 1})

    def on(self, host: str, needle: str) -> list[str]:
        return [line for h, line in self.calls if h == host and needle in line]

    def __call__(self, argv, host="local", input=None, **kw):
        line = " ".join(str(a) for a in argv)
        self.calls.append((host, line))
        for (h, needle), res in self.fail.items():
            if h == host and needle in line:
                return res
        run = self.running.setdefault(host, {})
        if argv[:1] == ["sh"] and argv[-2:-1] and "mktemp" in argv[2]:  # Target.put
            self.files[(host, argv[-2])] = input
            return Result(0, "")
        if argv[0] == "cat":
            text = self.files.get((host, argv[1]))
            return Result(0, text) if text is not None else Result(1, "", "No such file")
        if " up --detach " in line:
            scale = dict(re.findall(r"--scale (\S+)=(\d+)", line))
            for svc in argv[argv.index("--no-build") + 1:]:
                if not svc.startswith("--") and "=" not in svc:
                    run[svc] = int(scale.get(svc, 1))
            return Result(0, "")
        if " rm --force --stop " in line:
            for svc in argv[argv.index("--stop") + 1:]:
                run.pop(svc, None)
            return Result(0, "")
        if argv[:3] == ["/usr/bin/docker", "ps", "--quiet"]:
            svc = argv[-1].rsplit("=", 1)[1]
            return Result(0, "".join(f"{svc}-{i}\n" for i in range(run.get(svc, 0))))
        if "{{.State.Health.Status}}" in line:
            return Result(0, "healthy\n")
        if "python3 -c" in line and "/ready" in line:
            return Result(0, json.dumps({p: 200 for p in argv[argv.index("-c") + 2:]}) + "\n")
        if "python3 -c" in line and "schema_migrations" in line:
            return Result(0, json.dumps(self.migrate) + "\n")
        if argv[:2] == ["date", "+%s.%N"]:
            return Result(0, "1000.0\n")
        if "ss -Hltn" in line:
            return Result(1, "")
        if " version --short" in line:
            return Result(0, "2.20.0\n")
        return Result(0, "")


@pytest.fixture
def staging(monkeypatch, tmp_path):
    for k, v in SENTINELS.items():
        monkeypatch.setenv(k, v)
    return load_env("staging", environ={"IOSOPS_STATE_DIR": str(tmp_path), "IOSOPS_DEPLOY__VERIFY_HOSTS": "false",
                                        "IOSOPS_NOTIFY__REQUIRED": "false"})


def answered(status: int, n: int = 10, latency: float = 0.01):
    return lambda ts, count, seconds: [sw.ProbeResult(t.name, [status] * n, [latency] * n) for t in ts]


def test_first_deploy_runs_the_datastores_once_and_the_api_on_the_web_hosts(staging):
    hosts = Hosts()
    result = bg.deploy(staging, Runner(executor=by_argv(hosts), say=lambda s: None), IMAGE)
    assert result.colour == "blue" and result.previous is None
    # The datastores and the WAL streamer on the data host only: never a database per host.
    assert hosts.on(DB1, " up --detach --no-deps --no-build postgres redis") and \
        hosts.on(DB1, " up --detach --no-deps --no-build walstream")
    for web in (APP1, APP2):
        assert not hosts.on(web, "postgres redis") and not hosts.on(web, "walstream")
        assert hosts.on(web, "--scale api-blue=2 api-blue") and hosts.on(web, "up --detach --no-deps --no-build nginx")
        assert "compose.roles.yml" in hosts.on(web, "api-blue")[0]
    assert not hosts.on(DB1, "api-blue") and not hosts.on(DB1, " nginx")
    # Migrations once, from the first web host.
    assert len([c for c in hosts.calls if "schema_migrations" in c[1]]) == 1 and hosts.on(APP1, "schema_migrations")
    assert hosts.files[(APP1, "/srv/iosops/iosops-staging/state.json")]
    web_env = hosts.files[(APP2, "/srv/iosops/iosops-staging/stack.env")]
    assert "POSTGRES_HOST=10.20.0.30\n" in web_env and "REDIS_URL=redis://10.20.0.30:6379/0\n" in web_env
    # The backup secrets stay on the data host; the web hosts get empty placeholders.
    assert hosts.files[(APP1, "/srv/iosops/iosops-staging/secrets/backup_password")] == ""
    assert hosts.files[(DB1, "/srv/iosops/iosops-staging/secrets/backup_password")] == "bk-sentinel-9922"


def test_each_host_holds_only_the_datastore_passwords_its_services_use(staging):
    """Least privilege across hosts: the superuser's and the monitor's password stay on the data host, the
    API's on the web hosts (plus the owner's, for the migration run); Redis gets hashes, never passwords;
    the roles are set up in the data host's PostgreSQL from its secret files (no value in any argv); the
    migrations run as the owner, whose secret is mounted into that one-off container only."""
    import hashlib

    hosts = Hosts()
    bg.deploy(staging, Runner(executor=by_argv(hosts), say=lambda s: None), IMAGE)
    d = "/srv/iosops/iosops-staging/"

    def secret(host: str, name: str) -> str:
        return hosts.files[(host, f"{d}secrets/{name}")]

    for web in (APP1, APP2):
        assert secret(web, "postgres_app_password") == SENTINELS["IOS_STAGING_POSTGRES_APP_PASSWORD"]
        assert secret(web, "postgres_owner_password") == SENTINELS["IOS_STAGING_POSTGRES_OWNER_PASSWORD"]
        assert secret(web, "redis_app_password") == SENTINELS["IOS_STAGING_REDIS_APP_PASSWORD"]
        for name in ("postgres_password", "postgres_monitor_password", "redis_backup_password", "redis_exporter_passwords"):
            assert secret(web, name) == "", f"{name} on web host {web}"
        assert (web, f"{d}redis/users.acl") not in hosts.files
    assert secret(DB1, "postgres_password") == SENTINELS["IOS_STAGING_POSTGRES_PASSWORD"]
    assert secret(DB1, "postgres_monitor_password") == SENTINELS["IOS_STAGING_POSTGRES_MONITOR_PASSWORD"]
    assert secret(DB1, "redis_backup_password") == SENTINELS["IOS_STAGING_REDIS_BACKUP_PASSWORD"]
    assert json.loads(secret(DB1, "redis_exporter_passwords")) == {"redis://redis:6379": SENTINELS["IOS_STAGING_REDIS_EXPORTER_PASSWORD"]}
    assert secret(DB1, "redis_app_password") == ""  # the data host only needs its hash
    acl = hosts.files[(DB1, f"{d}redis/users.acl")]
    assert "user default off" in acl and not [v for v in SENTINELS.values() if v in acl]
    assert "#" + hashlib.sha256(SENTINELS["IOS_STAGING_REDIS_APP_PASSWORD"].encode()).hexdigest() in acl
    roles = hosts.on(DB1, "exec -T postgres sh -c")
    assert len(roles) == 1 and "-v owner=ios_owner -v app=ios_app -v monitor=iosops_monitor" in roles[0]
    assert not [h for h, l in hosts.calls if "exec -T postgres sh -c" in l and h != DB1]
    migrate = hosts.on(APP1, "schema_migrations")[0]
    assert ("-e POSTGRES_PASSWORD_FILE=/run/secrets/postgres_owner_password -e POSTGRES_USER=ios_owner -v "
            f"{d}secrets/postgres_owner_password:/run/secrets/postgres_owner_password:ro api-blue python3") in migrate
    assert not [v for v in SENTINELS.values() if any(v in line for _, line in hosts.calls)]


def test_a_web_host_whose_colour_never_gets_ready_removes_it_everywhere_and_switches_nothing(staging, monkeypatch):
    monkeypatch.setattr(bg, "probe_all", answered(200))
    hosts = Hosts(active="blue", fail={(APP2, "/ready"): Result(0, json.dumps({"/ready": 503}) + "\n")})
    staging.cfg.deploy.ready_timeout_s = 1
    with pytest.raises(OperationFailed, match=r"failed before the switch: .*not ready.*rolled back: removed api-green on "
                                              r"root@app1.* root@app2.*traffic stays on blue"):
        bg.deploy(staging, Runner(executor=by_argv(hosts), say=lambda s: None), IMAGE)
    for web in (APP1, APP2):
        assert hosts.on(web, "rm --force --stop api-green") and not hosts.on(web, "nginx -c /etc/nginx/iosops/nginx.conf -s reload")
        assert hosts.files[(web, "/srv/iosops/iosops-staging/nginx/conf.d/upstream.conf")] == "# Active colour: blue\n"


def test_nginx_rejecting_the_config_on_the_second_host_switches_the_first_back(staging, monkeypatch):
    monkeypatch.setattr(bg, "probe_all", answered(200))
    hosts = Hosts(active="blue", fail={(APP2, "nginx -t"): Result(1, "", "nginx: [emerg] bad directive")})
    with pytest.raises(OperationFailed, match=r"switch to green failed: .*root@app2.*nginx -t rejected.*bad directive.*"
                                              r"rolled back: traffic back on blue, api-green removed"):
        bg.deploy(staging, Runner(executor=by_argv(hosts), say=lambda s: None), IMAGE)
    up = "/srv/iosops/iosops-staging/nginx/conf.d/upstream.conf"
    assert "# Active colour: blue" in hosts.files[(APP1, up)] and "# Active colour: blue" in hosts.files[(APP2, up)]
    assert len(hosts.on(APP1, "-s reload")) == 2  # to green, then back to blue
    assert hosts.on(APP1, "rm --force --stop api-green") and hosts.on(APP2, "rm --force --stop api-green")


@pytest.mark.parametrize("after,log,why", [
    (answered(502), (10, 10), r"green answered 20/20 requests with 5xx or not at all"),
    (answered(200, latency=2.0), (0, 10), r"p95 latency 2000 ms of the new colour \(both halves of the window\) > 260 ms"),
    (lambda ts, c, s: [sw.ProbeResult(t.name, ["ConnectionRefusedError"] * 3, []) for t in ts], (0, 0),
     r"green answered 6/6 requests with 5xx or not at all"),
])
def test_the_gate_rolls_every_web_host_back(staging, monkeypatch, after, log, why):
    """nginx's log per host is `log` (5xx, answers) of the new colour; the probes answered `after`."""
    calls = []

    def probes(ts, count, seconds):
        calls.append(count)
        return answered(200)(ts, count, seconds) if len(calls) == 1 else after(ts, count, seconds)
    monkeypatch.setattr(bg, "probe_all", probes)
    monkeypatch.setattr(bg, "error_window", lambda t, colour, since: log)
    staging.cfg.deploy.error_window_s = 0.01
    hosts = Hosts(active="blue")
    with pytest.raises(OperationFailed, match=f"gate after the switch: {why}.*rolled back: traffic back on blue"):
        bg.deploy(staging, Runner(executor=by_argv(hosts), say=lambda s: None), IMAGE)
    assert calls == [10, 30]  # the old colour's baseline, then the window's probes
    up = "/srv/iosops/iosops-staging/nginx/conf.d/upstream.conf"
    assert all("# Active colour: blue" in hosts.files[(h, up)] for h in (APP1, APP2))
    assert all(hosts.running[h].get("api-green") == 2 for h in (APP1, APP2))  # kept for inspection


def test_the_gate_passes_with_probes_and_records_the_figures(staging, monkeypatch):
    monkeypatch.setattr(bg, "probe_all", answered(200))
    monkeypatch.setattr(bg, "error_window", lambda t, colour, since: (0, 10))
    staging.cfg.deploy.error_window_s = 0.01
    hosts = Hosts(active="blue")
    result = bg.deploy(staging, Runner(executor=by_argv(hosts), say=lambda s: None), IMAGE)
    assert (result.colour, result.errors_after_switch, result.requests_after_switch) == ("green", 0, 20)
    assert result.p95_after_ms == result.p95_before_ms == 10.0 and result.probes_after_switch == 20
    assert any("gate: 0/20 5xx" in s for s in result.steps)


def test_a_slow_start_that_recovers_within_the_window_passes(staging, monkeypatch):
    """Cold workers: the first half of the window is slow, the second is back to the old colour's."""
    seq = []

    def probes(ts, count, seconds):
        seq.append(count)
        lat = [0.01] * count if len(seq) == 1 else [0.9] * (count // 2) + [0.012] * (count - count // 2)
        return [sw.ProbeResult(t.name, [200] * count, lat) for t in ts]
    monkeypatch.setattr(bg, "probe_all", probes)
    monkeypatch.setattr(bg, "error_window", lambda t, colour, since: (0, 30))
    staging.cfg.deploy.error_window_s = 0.01
    result = bg.deploy(staging, Runner(executor=by_argv(Hosts(active="blue")), say=lambda s: None), IMAGE)
    assert result.colour == "green" and result.p95_after_ms == 900.0


def test_silence_does_not_pass_the_gate(staging, monkeypatch):
    """Probes answered but not one line in nginx's log of the new colour: the gate refuses to pass."""
    monkeypatch.setattr(bg, "probe_all", answered(200))
    monkeypatch.setattr(bg, "error_window", lambda t, colour, since: (0, 0))
    staging.cfg.deploy.error_window_s = 0.01
    with pytest.raises(OperationFailed, match=r"only 0 of 20 probes reached nginx's log of green"):
        bg.deploy(staging, Runner(executor=by_argv(Hosts(active="blue")), say=lambda s: None), IMAGE)


def test_refusals_change_nothing(staging):
    # a destructive migration: nothing started on the web hosts, nothing switched
    hosts = Hosts(active="blue", migrate={"pending": [{"version": "0007", "name": "drop_x", "destructive": True}],
                                          "applied": None})
    with pytest.raises(BadInput, match="0007_drop_x are marked destructive"):
        bg.deploy(staging, Runner(executor=by_argv(hosts), say=lambda s: None), IMAGE)
    assert not [c for c in hosts.calls if "api-green" in c[1] and " up " in c[1]]
    # the web hosts disagree on the active colour
    hosts = Hosts(active="blue")
    hosts.files[(APP2, "/srv/iosops/iosops-staging/nginx/conf.d/upstream.conf")] = "# Active colour: green\n"
    with pytest.raises(BadInput, match="hosts disagree on the active colour"):
        bg.deploy(staging, Runner(executor=by_argv(hosts), say=lambda s: None), IMAGE)
    assert not [c for c in hosts.calls if " up " in c[1] or "mktemp" in c[1]]
    # the image is missing on one web host (no registry answer either)
    hosts = Hosts(fail={(APP2, f"inspect --format {{{{.Id}}}} {IMAGE}"): Result(1, "", "no such image"),
                        (APP2, f"pull {IMAGE}"): Result(1, "", "not found")})
    with pytest.raises(BadInput, match=f"unknown image {re.escape(IMAGE)} on {re.escape(APP2)}"):
        bg.deploy(staging, Runner(executor=by_argv(hosts), say=lambda s: None), IMAGE)
    assert not [c for c in hosts.calls if " up " in c[1] or "mktemp" in c[1]]


def test_rollback_switches_only_the_web_hosts(staging):
    hosts = Hosts(active="green")
    hosts.running[APP1]["api-blue"] = hosts.running[APP2]["api-blue"] = 2
    res = bg.rollback(staging, Runner(executor=by_argv(hosts), say=lambda s: None))
    assert res.colour == "blue" and not hosts.on(DB1, "reload") and not hosts.on(DB1, "cat")
    assert all("# Active colour: blue" in hosts.files[(h, "/srv/iosops/iosops-staging/nginx/conf.d/upstream.conf")]
               for h in (APP1, APP2))
