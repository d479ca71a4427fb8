"""The day-2 tasks on SSH hosts (staging: two web hosts, one data host), as plans: a scripted executor
stands in for the three hosts (their containers, images, files) and records what each was sent, so the
exact argv, the host every command goes to, the safety rules of images.prune and the refusals (exit 2,
nothing changed) are proven in milliseconds. The same code runs for real against a deployed local stack
in tests/integration/test_day2_stack.py."""
import json
import shlex

import pytest

from iosops.commands import pg
from iosops.config import load_env
from iosops.day2 import common, console, edge, images, logs, status
from iosops.day2.probes import Since
from iosops.deploy import maintenance as mt
from iosops.errors import BadInput, OperationFailed
from iosops.ops import local_trail
from iosops.runner import by_argv, Result, Runner
from tests.unit.test_stack_backup_plan import SENTINELS

APP1, APP2, DB1 = (f"root@{h}.staging.ios.internal:22" for h in ("app1", "app2", "db1"))
DIR = "/srv/iosops/iosops-staging"
REG = "registry.staging.ios.internal:5000"
API, OPS = f"{REG}/iosops/api", f"{REG}/iosops/ops"
PS = "label=com.docker.compose.project=iosops-staging"


def cid(host: str, name: str) -> str:
    return f"{host.split('@')[1][:4]}{name}".replace(".", "").replace("-", "")[:12].ljust(12, "0")


class Fleet:
    """Three hosts with a deployed stack: green live (v2), blue kept for rollback (v1). Containers are
    (service, name, image, state, status); images are (repository, tag, id, created)."""

    def __init__(self, fail: dict | None = None, unreachable: tuple = ()):
        def web():  # a fresh list per web host
            return [
                ("api-green", "iosops-staging_api-green_1", f"{API}:v2", "running", "Up 2 hours (healthy)"),
                ("api-green", "iosops-staging_api-green_2", f"{API}:v2", "running", "Up 2 hours (healthy)"),
                ("api-blue", "iosops-staging_api-blue_1", f"{API}:v1", "running", "Up 3 hours (healthy)"),
                ("api-blue", "iosops-staging_api-blue_2", f"{API}:v1", "running", "Up 3 hours (unhealthy)"),
                ("nginx", "iosops-staging_nginx_1", "iosops/nginx:1.22-bookworm", "running", "Up 3 hours (healthy)")]
        self.containers = {APP1: web(), APP2: web(), DB1: [
            ("postgres", "iosops-staging_postgres_1", "iosops/postgres:15-bookworm", "running", "Up 3 hours (healthy)"),
            ("redis", "iosops-staging_redis_1", "iosops/redis:7-bookworm", "running", "Up 3 hours (healthy)"),
            ("walstream", "iosops-staging_walstream_1", f"{OPS}:v2", "running", "Up 2 hours (healthy)")]}
        # A stopped one-off container on app2 still holds v0: its image must stay there (not on app1).
        self.containers[APP2].append(("", "debug-session", f"{API}:v0", "exited", "Exited (0) 1 day ago"))
        day = "2026-12-0{} 10:00:00 +0000 UTC"
        rows = [(API, "v3", "sha256:a3", day.format(5)), (API, "v2", "sha256:a2", day.format(4)),
                (API, "v1", "sha256:a1", day.format(3)), (API, "v0", "sha256:a0", day.format(2)),
                (API, "old", "sha256:ax", day.format(1)), (API, "<none>", "sha256:an", day.format(1)),
                (OPS, "v3", "sha256:o3", day.format(5)), (OPS, "v2", "sha256:o2", day.format(4)),
                (OPS, "v1", "sha256:o1", day.format(3)), (OPS, "v0", "sha256:o0", day.format(2))]
        self.images = {APP1: list(rows), APP2: list(rows), DB1: [r for r in rows if r[0] == OPS]}
        state_web = {"active": "green", "previous": "blue", "images": {"blue": f"{API}:v1", "green": f"{API}:v2"},
                     "deployed_at": "2026-12-04T10:00:00Z", "deployed_by": "ci@runner", "release": "v2"}
        state_data = {"datastores": "abc", "deployed_at": "2026-12-04T10:00:00Z", "deployed_by": "ci@runner",
                      "release": "v2"}
        self.files = {(APP1, f"{DIR}/state.json"): json.dumps(state_web),
                      (APP2, f"{DIR}/state.json"): json.dumps(state_web),
                      (DB1, f"{DIR}/state.json"): json.dumps(state_data)}
        for h in (APP1, APP2):
            self.files[(h, f"{DIR}/nginx/conf.d/upstream.conf")] = "# Active colour: green\nupstream api {}\n"
            self.files[(h, f"{DIR}/nginx/conf.d/maintenance.conf")] = ""
        self.calls: list[tuple[str, list[str]]] = []
        self.inputs: list[str] = []
        self.fail = fail or {}
        self.unreachable = unreachable

    def on(self, host: str, needle: str = "") -> list[str]:
        return [" ".join(a) for h, a in self.calls if h == host and needle in " ".join(a)]

    def changes(self) -> list[tuple[str, str]]:
        """Everything sent that changes a host: writes, reloads, removals."""
        return [(h, " ".join(a)) for h, a in self.calls
                if "mktemp" in " ".join(a) or "-s reload" in " ".join(a) or a[1:3] == ["image", "rm"]]

    def __call__(self, argv, host="local", input=None, **kw):
        argv = [str(a) for a in argv]
        line = " ".join(argv)
        self.calls.append((host, argv))
        if input is not None:
            self.inputs.append(input)
        if host in self.unreachable:
            raise OperationFailed(f"ssh {host}: NoValidConnectionsError: Unable to connect to port 22")
        for (h, needle), res in self.fail.items():
            if h == host and needle in line:
                return res
        cs = self.containers.get(host, [])
        if argv[:1] == ["sh"] and "mktemp" in argv[2]:  # Target.put
            self.files[(host, argv[-2])] = input
            return Result(0, "")
        if argv[0] == "cat":
            text = self.files.get((host, argv[1]))
            return Result(0, text) if text is not None else Result(1, "", "No such file")
        if argv[1:3] == ["ps", "--all"] and PS in argv:
            return Result(0, "".join(f"{cid(host, n)}\t{n}\t{s}\t{img}\t{st}\t{status}\n" for s, n, img, st, status in cs
                                     if s))
        if argv[1:3] == ["ps", "--quiet"]:  # Target.containers(service): running ones
            svc = argv[-1].rsplit("=", 1)[1]
            return Result(0, "".join(f"{cid(host, n)}\n" for s, n, _i, st, _ in cs if s == svc and st == "running"))
        if argv[1:] == ["ps", "--all", "--quiet", "--no-trunc"]:
            return Result(0, "".join(f"{cid(host, n)}\n" for _s, n, *_ in cs))
        if argv[1:3] == ["container", "inspect"]:
            by_ref = {f"{r[0]}:{r[1]}": r[2] for r in self.images.get(host, [])}
            return Result(0, "".join(f"{cid(host, n)}\t{by_ref.get(img, 'sha256:other')}\t{img}\n"
                                     for _s, n, img, *_ in cs if cid(host, n) in argv))
        if argv[1:3] == ["image", "ls"]:
            repo = argv[-1]
            return Result(0, "".join(f"{r}\t{t}\t{i}\t{c}\n" for r, t, i, c in self.images.get(host, []) if r == repo))
        if argv[1:3] == ["image", "rm"]:
            self.images[host] = [r for r in self.images[host] if f"{r[0]}:{r[1]}" != argv[3]]
            return Result(0, f"Untagged: {argv[3]}\n")
        if argv[:1] == ["sh"] and argv[3:4] == ["logs"]:  # logs_merged: answer each container's lines
            pairs = argv[8:]
            out = "".join(f"{pairs[i]} 2026-12-04T10:00:0{i // 2}.5{host[5]}Z line of {pairs[i]}\n"
                          for i in range(0, len(pairs), 2))
            return Result(0, out)
        if argv[1:2] == ["exec"] and "nginx" in argv and "-t" in argv:
            return Result(0, "")
        if argv[1:2] == ["exec"] and "python3" in argv:
            return Result(0, "1\n")
        if argv[1:2] == ["exec"] and "psql" in argv:
            return Result(0, " ?column? \n----------\n        1\n(1 row)\n\n")
        return Result(0, "")


@pytest.fixture
def staging(monkeypatch, tmp_path):
    for k, v in SENTINELS.items():
        monkeypatch.setenv(k, v)
    # The env's lock lives on its data host (iosops.hosts.trail, over its own SSH connection): here a lock
    # file of the same interface stands in for it.
    monkeypatch.setattr(common, "trail_for", lambda env, here=False, runner=None: local_trail(tmp_path, env.name))
    return load_env("staging", environ={"IOSOPS_STATE_DIR": str(tmp_path)})


def quiet(fleet, dry_run=False):
    return Runner(executor=by_argv(fleet), say=lambda s: None, dry_run=dry_run)


# -- status --------------------------------------------------------------------------------------------------
def test_status_reads_every_host_by_its_role_and_names_the_lock_holder(staging):
    fleet = Fleet()
    local_trail(staging.state_dir, "staging").lock.acquire("deploy", "release v3")
    data = status.status(staging, quiet(fleet))
    assert data["lock"]["holder"]["task"] == "deploy" and data["lock"]["at"].endswith("locks/staging.lock")
    app1, app2, db1 = data["hosts"]
    assert (app1["host"], app1["roles"], db1["roles"]) == (APP1, ["web"], ["data"])
    assert app1["active"] == "green" and app1["previous"] == "blue" and app1["maintenance"] is False
    assert app1["colours"]["green"] | {"containers": []} == {"image": f"{API}:v2", "live": True, "running": 2,
                                                            "healthy": 2, "containers": []}
    assert (app1["colours"]["blue"]["running"], app1["colours"]["blue"]["healthy"]) == (2, 1)
    assert app1["last_deploy"] == {"at": "2026-12-04T10:00:00Z", "by": "ci@runner", "release": "v2"}
    assert {k: v["healthy"] for k, v in db1["datastores"].items()} == {"postgres": 1, "redis": 1}
    assert db1["walstream"]["healthy"] == 1 and "colours" not in db1 and "datastores" not in app1
    # The idle colour's unhealthy replica is not a problem of the live service; nothing is wrong.
    assert data["ok"] and not any(h["problems"] for h in data["hosts"])
    # Each host is asked only what its role holds; nothing was changed anywhere.
    assert not fleet.on(DB1, "upstream.conf") and not fleet.on(DB1, "maintenance.conf")
    assert fleet.on(APP2, "upstream.conf") and not fleet.changes()
    text = "\n".join(status.lines(data))
    assert "lock: held by" in text and "api-green live" in text and "problems: none" in text


def test_status_reports_an_unreachable_host_and_an_unhealthy_live_colour_and_still_reads_the_others(staging):
    fleet = Fleet(unreachable=(APP2,))
    fleet.containers[APP1][0] = ("api-green", "iosops-staging_api-green_1", f"{API}:v2", "exited", "Exited (137)")
    fleet.containers[DB1][1] = ("redis", "iosops-staging_redis_1", "iosops/redis:7-bookworm", "running",
                                "Up 1 minute (health: starting)")
    data = status.status(staging, quiet(fleet))
    app1, app2, db1 = data["hosts"]
    assert app1["problems"] == ["api-green (live): 1/2 replicas healthy"]
    assert app2["reachable"] is False and "Unable to connect" in app2["problems"][0]
    assert db1["problems"] == ["redis is starting"] and not data["ok"]
    assert data["lock"] == {"holder": None, "at": data["lock"]["at"]}  # free


def test_status_says_when_the_lock_cannot_be_read(staging, monkeypatch):
    from iosops.errors import OperationFailed as Failed

    class Unreadable:
        where = f"{DB1}:{DIR}/lock"

        def holder(self):
            raise Failed(f"env staging: could not read the lock on its data host {DB1}: timed out")

    class Trail:
        lock = Unreadable()

        def close(self):
            pass
    monkeypatch.setattr(common, "trail_for", lambda env, here=False, runner=None: Trail())
    data = status.status(staging, quiet(Fleet()))
    assert data["lock"]["error"].endswith("timed out") and len(data["hosts"]) == 3
    assert "lock: unknown (env staging: could not read the lock" in status.lines(data)[0]


# -- logs ----------------------------------------------------------------------------------------------------
def test_logs_one_command_per_host_merged_by_time_with_host_and_container_prefixes(staging):
    fleet = Fleet()
    got = logs.logs(staging, quiet(fleet), "", Since(duration="10m"), "50")
    sent = {h: [a for hh, a in fleet.calls if hh == h and a[:1] == ["sh"] and a[3:4] == ["logs"]]
            for h in (APP1, APP2, DB1)}
    assert all(len(v) == 1 for v in sent.values())
    app1 = sent[APP1][0]
    assert app1[4:8] == ["/usr/bin/docker", "10m", "50", "0"]
    assert app1[8:] == [x for n in ("iosops-staging_api-blue_1", "iosops-staging_api-blue_2", "iosops-staging_api-green_1",
                                    "iosops-staging_api-green_2", "iosops-staging_nginx_1") for x in (n, cid(APP1, n))]
    assert sent[DB1][0][8::2] == ["iosops-staging_postgres_1", "iosops-staging_redis_1", "iosops-staging_walstream_1"]
    # One timeline: sorted by the timestamps (nanosecond text, not the host order).
    assert [ll.ts for ll in got] == sorted(ll.ts for ll in got) and len(got) == 13
    assert got[0].render() == f"[{APP1}/iosops-staging_api-blue_1] 2026-12-04T10:00:00.5aZ line of iosops-staging_api-blue_1"
    assert {ll.host for ll in got} == {APP1, APP2, DB1}


def test_logs_of_one_service_ask_only_the_hosts_that_run_it_and_follow_streams_each_host(staging):
    fleet = Fleet()
    got = logs.logs(staging, quiet(fleet), "api", Since(), "all")
    assert not fleet.on(DB1, " logs ") and {ll.host for ll in got} == {APP1, APP2}
    assert all("api-" in ll.container for ll in got)
    fleet = Fleet()
    seen = []
    errors = logs.follow(staging, quiet(fleet), "postgres", Since(time="2026-12-04T09:00:00Z"), "10", seen.append,
                         seconds=10)
    assert errors == [] and [ll.container for ll in seen] == ["iosops-staging_postgres_1"]
    (host, argv), = [(h, a) for h, a in fleet.calls if a[:1] == ["sh"] and a[3:4] == ["logs"]]
    assert host == DB1 and argv[5:8] == ["2026-12-04T09:00:00Z", "10", "1"]  # --follow


def test_logs_refusals(staging):
    fleet = Fleet()
    with pytest.raises(BadInput, match=r"--service 'mysql': unknown; services: api \(both colours\), nginx"):
        logs.logs(staging, quiet(fleet), "mysql", Since(), "all")
    assert fleet.calls == []


# -- exec and psql -------------------------------------------------------------------------------------------
def test_exec_runs_in_the_first_replica_of_the_live_colour_on_the_first_web_host(staging):
    fleet = Fleet()
    ran = console.exec_(staging, quiet(fleet), ["python3", "-c", "print(1)"])
    assert (ran.rc, ran.stdout) == (0, "1\n") and ran.where.startswith(f"{APP1} api-green")
    (host, argv), = [(h, a) for h, a in fleet.calls if a[1:2] == ["exec"]]
    assert host == APP1 and argv == ["/usr/bin/docker", "exec", cid(APP1, "iosops-staging_api-green_1"),
                                     "python3", "-c", "print(1)"]
    fleet = Fleet(fail={(APP2, "exec"): Result(3, "", "boom\n")})
    ran = console.exec_(staging, quiet(fleet), ["false"], host="app2.staging.ios.internal", colour="blue", tty=False)
    assert ran.rc == 3 and ran.stderr == "boom\n"  # the command's exit code is passed through
    assert [a for h, a in fleet.calls if a[1:2] == ["exec"]][0][2] == cid(APP2, "iosops-staging_api-blue_1")


@pytest.mark.parametrize("kwargs,why", [
    ({"command": []}, r"inv exec needs a command after --"),
    ({"command": ["ls"], "host": "app9.staging.ios.internal"}, r"unknown host 'app9.staging.ios.internal'; web hosts "
                                                                r"of this env: app1.staging.ios.internal, app2"),
    ({"command": ["ls"], "host": "db1.staging.ios.internal"}, r"host db1.staging.ios.internal has no web role \(roles: data\)"),
    ({"command": ["ls"], "colour": "red"}, r"--colour 'red': blue or green"),
    ({"command": ["ls"], "colour": "blue", "host": APP2}, r"api-blue is not running on root@app2.* \(running: api-green, "
                                                          r"pass --colour green\)"),
])
def test_exec_refusals_exit_2_and_run_nothing(staging, kwargs, why):
    fleet = Fleet()
    fleet.containers[APP2] = [c for c in fleet.containers[APP2] if c[0] != "api-blue"]
    with pytest.raises(BadInput, match=why) as exc:
        console.exec_(staging, quiet(fleet), **kwargs)
    assert exc.value.exit_code == 2 and "; nothing was " in str(exc.value)
    assert not [a for _h, a in fleet.calls if a[1:2] == ["exec"]] and not fleet.changes()


def test_exec_on_an_unreachable_host_is_refused(staging):
    fleet = Fleet(unreachable=(APP1,))
    with pytest.raises(BadInput, match=r"host root@app1.* is unreachable"):
        console.exec_(staging, quiet(fleet), ["ls"])


def test_psql_runs_in_the_postgres_container_on_the_data_host_with_the_password_from_its_file(staging):
    fleet = Fleet()
    ran = console.psql(staging, quiet(fleet), sql="select 1")
    assert ran.rc == 0 and "(1 row)" in ran.stdout
    (host, argv), = [(h, a) for h, a in fleet.calls if a[1:2] == ["exec"]]
    assert host == DB1 and argv == ["/usr/bin/docker", "exec", cid(DB1, "iosops-staging_postgres_1"), "sh", "-c",
                                    pg.PSQL_IN_CONTAINER, "psql", "ios", "ios", "-X", "-v", "ON_ERROR_STOP=1",
                                    "-c", "select 1"]
    assert '"$POSTGRES_PASSWORD_FILE"' in pg.PSQL_IN_CONTAINER
    everything = "\n".join(" ".join(a) for _h, a in fleet.calls) + "\n".join(fleet.inputs)
    assert not [v for v in SENTINELS.values() if v in everything]


def test_psql_refusals_run_nothing(staging):
    fleet = Fleet()
    with pytest.raises(BadInput, match="stdin is not a terminal: pass -c SQL"):
        console.psql(staging, quiet(fleet), sql=None, tty=False)
    fleet.containers[DB1] = [c for c in fleet.containers[DB1] if c[0] != "postgres"]
    with pytest.raises(BadInput, match=r"PostgreSQL is not running on root@db1"):
        console.psql(staging, quiet(fleet), sql="select 1")
    assert not [a for _h, a in fleet.calls if a[1:2] == ["exec"]]


# -- maintenance ---------------------------------------------------------------------------------------------
def test_maintenance_on_every_web_host_then_no_change_then_off(staging):
    fleet = Fleet()
    out = edge.set_maintenance(staging, quiet(fleet), "on", "database upgrade")
    assert [(h.host, h.changed) for h in out] == [(APP1, True), (APP2, True)]
    for h in (APP1, APP2):
        text = fleet.files[(h, f"{DIR}/{mt.REL}")]
        assert "return 503" in text and "maintenance: database upgrade; retry later" in text and "Retry-After" in text
        assert len(fleet.on(h, "-s reload")) == 1
    assert not fleet.on(DB1, "maintenance") and not fleet.on(DB1, "reload")
    before = len(fleet.changes())
    again = edge.set_maintenance(staging, quiet(fleet), "on", "database upgrade")
    assert [h.changed for h in again] == [False, False] and len(fleet.changes()) == before
    assert again[0].note == "no change: maintenance already on" and again[0].before == "database upgrade"
    off = edge.set_maintenance(staging, quiet(fleet), "off")
    assert [h.changed for h in off] == [True, True] and all(fleet.files[(h, f"{DIR}/{mt.REL}")] == "" for h in (APP1, APP2))
    assert [h.changed for h in edge.set_maintenance(staging, quiet(fleet), "off")] == [False, False]


def test_maintenance_failing_on_the_second_host_puts_the_first_back(staging):
    fleet = Fleet(fail={(APP2, "nginx -t"): Result(1, "", "nginx: [emerg] unexpected end of file")})
    with pytest.raises(OperationFailed, match=r"maintenance on failed: .*root@app2.*nginx -t rejected.*put "
                                              r"root@app1\S* back as they were"):
        edge.set_maintenance(staging, quiet(fleet), "on", "upgrade")
    assert fleet.files[(APP1, f"{DIR}/{mt.REL}")] == "" and fleet.files[(APP2, f"{DIR}/{mt.REL}")] == ""
    assert len(fleet.on(APP1, "-s reload")) == 2 and not fleet.on(APP2, "-s reload")


@pytest.mark.parametrize("mode,reason,why", [
    ("maybe", "", r"maintenance 'maybe': say `on` or `off`"),
    ("on", "it's $broken", r"--reason: \$ ' cannot go into nginx's 503 page"),
])
def test_maintenance_refusals_change_nothing(staging, mode, reason, why):
    fleet = Fleet()
    with pytest.raises(BadInput, match=why):
        edge.set_maintenance(staging, quiet(fleet), mode, reason)
    assert fleet.calls == []
    fleet = Fleet(unreachable=(APP2,))
    with pytest.raises(BadInput, match=r"host root@app2.* is unreachable.*nothing was changed on any host"):
        edge.set_maintenance(staging, quiet(fleet), "on", "x")
    assert not fleet.changes()


# -- images.prune --------------------------------------------------------------------------------------------
def test_prune_keeps_the_newest_the_live_the_rollback_and_every_used_image_on_each_host(staging):
    fleet = Fleet()
    out = {h.host: h for h in images.prune(staging, quiet(fleet), keep=1)}
    removed = {h: [a[3] for hh, a in fleet.calls if hh == h and a[1:3] == ["image", "rm"]] for h in (APP1, APP2, DB1)}
    # v3: newest; v2: live (state.json and the containers); v1: rollback (state.json); v0: a stopped
    # container on app2 still uses it, so only app1 loses it; <none> is never touched.
    assert removed[APP1] == [f"{API}:v0", f"{API}:old", f"{OPS}:v0"]
    assert removed[APP2] == [f"{API}:old", f"{OPS}:v0"]
    assert removed[DB1] == [f"{OPS}:v0"]
    assert out[APP1].removed == removed[APP1] and out[APP1].failed == []
    kept = {k["ref"]: k["why"] for k in out[APP2].kept}
    assert kept == {f"{API}:v3": "one of the 1 newest", f"{API}:v2": "named in state.json (live or rollback)",
                    f"{API}:v1": "named in state.json (live or rollback)", f"{API}:v0": "used by a container",
                    f"{OPS}:v3": "one of the 1 newest", f"{OPS}:v2": "named in state.json (live or rollback)",
                    f"{OPS}:v1": "named in state.json (live or rollback)"}
    # Exact argv: one tag at a time, never --force.
    assert fleet.on(APP1, "image rm")[0] == f"/usr/bin/docker image rm {API}:v0"
    # All hosts were looked at before the first removal.
    first_rm = next(i for i, (_h, a) in enumerate(fleet.calls) if a[1:3] == ["image", "rm"])
    assert {h for h, a in fleet.calls[:first_rm] if a[1:3] == ["image", "ls"]} == {APP1, APP2, DB1}


def test_prune_never_removes_an_image_a_container_uses_even_beyond_keep(staging):
    fleet = Fleet()
    fleet.containers[DB1].append(("", "old-ops-debug", f"{OPS}:v0", "exited", "Exited (1) 2 days ago"))
    images.prune(staging, quiet(fleet), keep=1)
    assert not fleet.on(DB1, "image rm")


def test_prune_dry_run_lists_what_would_go_and_removes_nothing(staging):
    fleet = Fleet()
    runner = quiet(fleet, dry_run=True)
    out = images.prune(staging, runner, keep=2)
    assert not [a for _h, a in fleet.calls if a[1:3] == ["image", "rm"]]
    assert runner.plan() == [f"[{APP1}] /usr/bin/docker image rm {API}:v0", f"[{APP1}] /usr/bin/docker image rm {API}:old",
                             f"[{APP1}] /usr/bin/docker image rm {OPS}:v0", f"[{APP2}] /usr/bin/docker image rm {API}:old",
                             f"[{APP2}] /usr/bin/docker image rm {OPS}:v0", f"[{DB1}] /usr/bin/docker image rm {OPS}:v0"]
    assert out[0].removed == [f"{API}:v0", f"{API}:old", f"{OPS}:v0"]


def test_prune_refusals_change_nothing(staging):
    fleet = Fleet()
    with pytest.raises(BadInput, match=r"--keep 0: keep at least 1"):
        images.prune(staging, quiet(fleet), keep=0)
    assert fleet.calls == []
    fleet = Fleet(unreachable=(DB1,))
    with pytest.raises(BadInput, match=r"host root@db1.* is unreachable"):
        images.prune(staging, quiet(fleet), keep=1)
    assert not fleet.changes()


def test_prune_reports_a_tag_docker_refused_and_goes_on(staging):
    fleet = Fleet(fail={(APP1, f"image rm {API}:old"): Result(1, "", "Error response from daemon: conflict: unable to "
                                                                   "remove repository reference (must force)\n")})
    out = {h.host: h for h in images.prune(staging, quiet(fleet), keep=1)}
    assert out[APP1].failed == [{"ref": f"{API}:old", "error": "Error response from daemon: conflict: unable to remove "
                                 "repository reference (must force)"}]
    assert out[APP1].removed == [f"{API}:v0", f"{OPS}:v0"]


# -- Kubernetes (kubectl argv; no cluster here) -------------------------------------------------------------------
class Kubectl:
    def __init__(self, answers: dict[str, str]):
        self.answers, self.calls = answers, []

    def __call__(self, argv, **kw):
        line = shlex.join(str(a) for a in argv)
        self.calls.append(line)
        for needle, out in self.answers.items():
            if needle in line:
                return Result(0, out)
        return Result(0, "")


SERVICE = {"kind": "Service", "metadata": {"name": "ios-api", "annotations": {"iosops.io/deployed-tag": "v2"}},
           "spec": {"selector": {"app.kubernetes.io/name": "ios-api", "app.kubernetes.io/color": "green"}}}


def deployment(colour, replicas, ready, image, **status):
    return {"kind": "Deployment", "metadata": {"name": f"ios-api-{colour}", "generation": 4,
                                               "labels": {"app.kubernetes.io/color": colour}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "api", "image": image}]}}},
            "status": {"observedGeneration": 4, "readyReplicas": ready, "updatedReplicas": ready, **status}}


@pytest.fixture
def prod(monkeypatch, tmp_path):
    return load_env("prod", environ={"IOSOPS_STATE_DIR": str(tmp_path)})


def test_kubernetes_status_logs_exec_and_psql_name_the_context_and_namespace(prod):
    workloads = {"kind": "List", "items": [deployment("green", 3, 2, "registry.ios.internal/iosops/api:v2"),
                                           deployment("blue", 3, 3, "registry.ios.internal/iosops/api:v1")]}
    kube = Kubectl({"get service ios-api": json.dumps(SERVICE), "get deployments,statefulsets": json.dumps(workloads)})
    runner = Runner(executor=by_argv(kube), say=lambda s: None)
    data = status.status(prod, runner)
    assert data["live"] == "green" and data["problems"] == ["deployment/ios-api-green: 2/3 ready, rollout progressing"]
    assert kube.calls[:2] == [
        "kubectl --context ios-prod --namespace ios-prod get service ios-api --ignore-not-found --output json",
        "kubectl --context ios-prod --namespace ios-prod get deployments,statefulsets --ignore-not-found --output json"]
    kube.answers["logs"] = "[pod/ios-api-green-1/api] 2026-12-04T10:00:00.1Z hello\n"
    got = logs.logs(prod, runner, "api-green", Since(duration="5m"), "20")
    assert kube.calls[-1] == ("kubectl --context ios-prod --namespace ios-prod logs --selector "
                              "app.kubernetes.io/name=ios-api,app.kubernetes.io/color=green --all-containers --prefix "
                              "--timestamps --ignore-errors --max-log-requests=20 --tail=20 --since=5m")
    assert got[0].render() == "[kubernetes/pod/ios-api-green-1/api] 2026-12-04T10:00:00.1Z hello"
    kube.answers["get service ios-api --ignore-not-found --output json"] = json.dumps(SERVICE)
    kube.answers["get deployment"] = json.dumps(workloads)
    console.exec_(prod, runner, ["python3", "-c", "print(1)"])
    assert kube.calls[-1] == ("kubectl --context ios-prod --namespace ios-prod exec deployment/ios-api-green "
                              "--container api -- python3 -c 'print(1)'")
    console.psql(prod, runner, sql="select 1")
    assert kube.calls[-1].startswith("kubectl --context ios-prod --namespace ios-prod exec statefulset/ios-postgres "
                                     "--container postgres -- sh -c ")
    assert kube.calls[-1].endswith(" psql ios ios -X -v ON_ERROR_STOP=1 -c 'select 1'")


def test_kubernetes_refusals(prod):
    kube = Kubectl({})
    runner = Runner(executor=by_argv(kube), say=lambda s: None)
    with pytest.raises(BadInput, match="--host does not apply to a Kubernetes env"):
        console.exec_(prod, runner, ["ls"], host="x")
    with pytest.raises(BadInput, match="runs on Kubernetes: maintenance mode is the compose stack's nginx"):
        edge.set_maintenance(prod, runner, "on")
    with pytest.raises(BadInput, match="runs on Kubernetes: its nodes' images are the kubelet's"):
        images.prune(prod, runner, keep=2)
    with pytest.raises(BadInput, match="--service nginx: a Kubernetes env has no nginx"):
        logs.logs(prod, runner, "nginx", Since(), "all")
    assert kube.calls == []
