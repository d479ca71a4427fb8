"""One execution path: every kind of action goes through Runner.execute and the one executor hook; the
SSH side is a transport the runner holds (a remote write goes to the host, never to this machine);
file operations of the restore rollback and the drill are planned, not done, in a dry-run."""
import io
import re
import subprocess
from pathlib import Path

import pytest

from iosops.runner import KINDS, Action, Result, Runner, SSHHost, SSHRemote, by_argv, put_argv
from iosops.secretref import Secret
from tests.conftest import ROOT


@pytest.fixture
def no_processes(monkeypatch):
    def boom(*a, **k):
        raise AssertionError(f"a process was started: {a[:1]}")
    monkeypatch.setattr(subprocess, "run", boom)
    monkeypatch.setattr(subprocess, "Popen", boom)


def every_kind(r: Runner, tmp_path: Path, called: list) -> None:
    r.run(["docker", "rm", "x"])
    r.pipe(["tar", "-c", "."], ["docker", "import", "-", "x"])
    r.stream(["zstd", "-d"], ["tar", "-x"], source=io.BytesIO(b"x"), target="store://b/x")
    r.call("docker-sdk build tag=x", lambda: called.append("call"))
    r.http("POST", "http://127.0.0.1:1/hook")
    r.write_file(tmp_path / "f", "content")
    r.mkdir(tmp_path / "d")
    r.rename(tmp_path / "a", tmp_path / "b")
    r.remove(tmp_path / "gone")


def test_every_kind_goes_through_the_one_executor(no_processes, tmp_path):
    seen: list[Action] = []
    called: list = []

    def executor(action):
        seen.append(action)
        return Result(0, "scripted")

    r = Runner(executor=executor, say=lambda s: None)
    every_kind(r, tmp_path, called)
    assert [a.kind for a in seen] == list(KINDS)
    assert called == [] and list(tmp_path.iterdir()) == []  # the executor answered: nothing was done
    assert r.run(["x"]).stdout == "scripted"


def test_every_kind_is_planned_and_skipped_in_a_dry_run(no_processes, tmp_path, capsys):
    (tmp_path / "a").write_text("keep")
    (tmp_path / "gone").write_text("keep")
    called: list = []
    r = Runner(dry_run=True, executor=lambda a: pytest.fail(f"executed in a dry-run: {a}"))
    every_kind(r, tmp_path, called)
    assert r.plan() == [
        "docker rm x", "tar -c . | docker import - x", "<stream> | zstd -d | tar -x > store://b/x",
        "docker-sdk build tag=x", "POST http://127.0.0.1:1/hook", f"write {tmp_path}/f (7 bytes, mode 644)",
        f"mkdir -p -m 755 {tmp_path}/d", f"mv {tmp_path}/a {tmp_path}/b", f"rm -rf {tmp_path}/gone"]
    assert called == [] and sorted(p.name for p in tmp_path.iterdir()) == ["a", "gone"]
    assert len(capsys.readouterr().out.splitlines()) == len(KINDS)


def test_an_executor_may_leave_an_action_to_the_runner(tmp_path):
    """None from the executor: performed for real (by_argv scripts commands only)."""
    seen = []
    r = Runner(executor=by_argv(lambda argv, **kw: seen.append(list(argv)) or Result(0, "x")), say=lambda s: None)
    r.write_file(tmp_path / "w" / "f", "hello", mode=0o600)
    r.rename(tmp_path / "w" / "f", tmp_path / "w" / "g")
    r.mkdir(tmp_path / "m")
    r.remove(tmp_path / "m")
    assert r.run(["anything"]).stdout == "x" and seen == [["anything"]]
    assert (tmp_path / "w" / "g").read_text() == "hello" and not (tmp_path / "m").exists()


def test_secrets_masked_in_every_plan_line_revealed_only_to_execution(tmp_path):
    got = []
    r = Runner(executor=lambda a: got.append(a) or Result(), verbose=True, say=lambda s: got.append(s))
    r.run(["login", "-p", Secret("pa55-sentinel-7")], env={"PW": Secret("pa55-sentinel-7")})
    r.pipe(["echo", Secret("pa55-sentinel-7")], ["cat"])
    action = got[1]
    assert action.argv[-1].get() == "pa55-sentinel-7"
    assert all("pa55" not in str(a) for a in r.actions) and "pa55" not in " ".join(r.plan())
    assert "pa55" not in got[0]


def test_the_plan_keeps_no_payload_and_an_action_never_shows_it(tmp_path):
    """A file's content or a command's stdin may be a revealed secret: the recorded plan keeps only the
    masked text, and an Action's repr (a failed assertion, a log line) shows no payload."""
    got = []
    r = Runner(executor=lambda a: got.append(a) or Result(), say=lambda s: None)
    r.write_file(tmp_path / "pw", "pa55-sentinel-8", mode=0o600)
    r.run(["psql"], input="ALTER ROLE x PASSWORD 'pa55-sentinel-8'")
    assert got[0].content == "pa55-sentinel-8" and got[1].input.endswith("'pa55-sentinel-8'")
    assert "pa55" not in repr(r.actions) + repr(got) + " ".join(str(a) for a in r.actions)


def test_probe_runs_in_a_dry_run_and_its_result_is_real():
    r = Runner(dry_run=True, executor=by_argv(lambda argv, **kw: Result(1, "", "no")))
    res = r.probe(["cat", "/nope"], check=False)
    assert (res.rc, res.dry_run) == (1, False) and r.plan() == [] and str(r.actions[0]).endswith("# read")


def test_local_file_operation_failure_is_one_line(tmp_path):
    from iosops.errors import OperationFailed

    with pytest.raises(OperationFailed, match=r"command failed \(exit 1\): mv .*/nope .*/x: error: "):
        Runner().rename(tmp_path / "nope", tmp_path / "x")
    assert Runner().remove(tmp_path / "none").rc == 0


# -- the SSH side: a transport the runner holds ------------------------------------------------------------
@pytest.fixture
def host_transport(monkeypatch):
    sent = []

    def command(self, argv, env, cwd, input, timeout):
        sent.append((str(self.host), list(argv), input))
        return Result(0, "")

    def stream(self, a):
        sent.append((str(self.host), "stream", [list(x) for x in a.argvs]))
        return Result(0, "")

    monkeypatch.setattr(SSHRemote, "command", command)
    monkeypatch.setattr(SSHRemote, "_stream", stream)
    monkeypatch.setattr(SSHRemote, "connection", lambda self: pytest.fail("no real connection in a unit test"))
    return sent


def test_a_remote_write_goes_through_the_remote_transport_not_this_machine(host_transport, tmp_path, no_processes):
    parent = Runner(say=lambda s: None)
    r = parent.on(SSHHost("db1", user="root"))
    assert r.remote is not None and r.actions is parent.actions and r.where == "root@db1:22"
    target = tmp_path / "srv" / "app.conf"
    r.write_file(target, "a=1\n", mode=0o600)
    r.stream(["pg_dump"], ["zstd"], target="store://x")
    r.rename(tmp_path / "a", tmp_path / "b")
    r.remove(tmp_path / "c")
    assert not target.exists() and not target.parent.exists()  # nothing written here
    assert host_transport == [
        ("root@db1:22", put_argv(target, 0o600), "a=1\n"),
        ("root@db1:22", "stream", [["pg_dump"], ["zstd"]]),
        ("root@db1:22", ["mv", "-T", f"{tmp_path}/a", f"{tmp_path}/b"], None),
        ("root@db1:22", ["rm", "-rf", "--", f"{tmp_path}/c"], None)]
    assert parent.plan()[0] == f"[root@db1:22] write {target} (4 bytes, mode 600)"


def test_a_remote_write_reaches_an_argv_script_as_the_put_command(tmp_path):
    calls = []
    r = Runner(executor=by_argv(lambda argv, **kw: calls.append((argv, kw)) or Result()), say=lambda s: None)
    r.on(SSHHost("app1")).write_file(Path("/srv/x"), "body")
    (argv, kw), = calls
    assert argv == put_argv(Path("/srv/x"), 0o644) and kw == {"host": "deploy@app1:22", "input": "body", "timeout": None}


# -- dry-run shows the restore rollback's and the drill's file operations ------------------------------------
def test_dry_run_plans_the_restore_rollback_without_doing_it(tmp_path, no_processes):
    from iosops.backup.pginstance import PgInstance
    from iosops.backup.restore import rollback
    from iosops.backup.restore_redis import rollback_dir
    from iosops.config import load_env

    data, aside = tmp_path / "pgdata", tmp_path / "pgdata.pre-restore-1"
    data.mkdir()
    aside.mkdir()
    rdir = tmp_path / "redis"
    rdir.mkdir()
    (rdir / "dump.rdb.pre-restore").write_text("old")
    env = load_env("local", environ={"IOSOPS_STATE_DIR": str(tmp_path)},
                   overrides={"backup": {"redis": {"restore_dir": str(rdir)}}})
    r = Runner(dry_run=True, say=lambda s: None)
    rollback(env, r, PgInstance(data, 5432, "/usr/lib/postgresql/15/bin", None), aside, None)
    rollback_dir(env, r)
    plan = r.plan()
    assert f"rm -rf {data}" in plan and f"mv {aside} {data}" in plan
    assert f"mv {rdir}/dump.rdb.pre-restore {rdir}/dump.rdb" in plan
    assert data.is_dir() and aside.is_dir() and (rdir / "dump.rdb.pre-restore").read_text() == "old"


# -- one runner per task; no dead dry-run branches -------------------------------------------------------
# Entry points that make their one Runner: the tasks (through _common.new_runner), and the two commands
# that run inside the ops container or as PostgreSQL's archive_command.
RUNNER_MAKERS = {"iosops/tasks/_common.py", "iosops/backup/stackops.py", "iosops/backup/wal.py"}


def test_no_runner_is_constructed_outside_the_entry_points():
    made = {}
    for p in sorted((ROOT / "iosops").rglob("*.py")):
        rel = str(p.relative_to(ROOT))
        if rel == "iosops/runner.py":
            continue
        hits = [n for n, line in enumerate(p.read_text().splitlines(), 1)
                if re.search(r"(?<![\w.])Runner\(", line) and not re.match(r"\s*(def|class) ", line)]
        if hits:
            made[rel] = hits
    assert set(made) <= RUNNER_MAKERS, made
    assert all(len(v) == 1 for v in made.values()), made


def test_no_branch_on_a_probe_results_dry_run():
    """A probe runs in a dry-run too: its Result.dry_run is always False, so such a branch never fires."""
    for rel, names in {"iosops/deploy/target.py": ("v2", "state"), "iosops/hosts/provision.py": ("ident",)}.items():
        text = (ROOT / rel).read_text()
        for name in names:
            assert not re.search(rf"\b{name}\.dry_run\b", text.replace("runner.dry_run", "")), (rel, name)
