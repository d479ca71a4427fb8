"""The runner: exact display, secret masking, and dry-run that provably executes nothing."""
import subprocess

import pytest

from iosops.runner import by_argv, Result, Runner, display
from iosops.secretref import Secret


@pytest.fixture
def no_processes(monkeypatch):
    """Any attempt to start a process fails the test: proves a dry-run started none."""
    def boom(*a, **k):
        raise AssertionError(f"a process was started in dry-run: {a[:1]}")
    monkeypatch.setattr(subprocess, "run", boom)
    monkeypatch.setattr(subprocess, "Popen", boom)


def test_display_quotes_like_a_shell_and_masks_secrets():
    assert display(["echo", "a b", "c'd", Secret("hunter2-x")]) == "echo 'a b' 'c'\"'\"'d' '***'"


def test_dry_run_records_in_order_and_runs_nothing(no_processes, tmp_path, capsys):
    calls = []
    r = Runner(dry_run=True)
    r.run(["docker", "network", "create", "n"])
    r.pipe(["tar", "-c", "."], ["docker", "import", "-", "x"])
    r.call("docker-sdk build tag=x", lambda: calls.append("built"))
    r.http("POST", "http://127.0.0.1:1/hook")
    r.write_file(tmp_path / "f", "content")
    assert r.plan() == ["docker network create n", "tar -c . | docker import - x", "docker-sdk build tag=x",
                        "POST http://127.0.0.1:1/hook", f"write {tmp_path}/f (7 bytes, mode 644)"]
    assert calls == [] and not (tmp_path / "f").exists()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[dry-run] docker network create n" and len(out) == 5


def test_probes_run_in_dry_run_and_are_marked_read():
    seen = []

    def executor(argv, **kw):
        seen.append(list(argv))
        return Result(0, "abc\n")

    r = Runner(dry_run=True, executor=by_argv(executor))
    assert r.run(["git", "rev-parse", "HEAD"], mutating=False).stdout == "abc\n"
    r.run(["docker", "rm", "x"])
    assert seen == [["git", "rev-parse", "HEAD"]]
    assert r.plan() == ["docker rm x"] and str(r.actions[0]).endswith("# read")


def test_secret_is_revealed_only_at_execution(capsys):
    seen = []
    r = Runner(executor=by_argv(lambda argv, **kw: seen.append(argv) or Result()), verbose=True)
    r.run(["login", "--password", Secret("pa55-sentinel")])
    assert seen[0][-1].get() == "pa55-sentinel"
    assert "pa55" not in capsys.readouterr().err and "pa55" not in " ".join(r.plan())


def test_env_values_masked_in_display(capsys):
    r = Runner(dry_run=True)
    r.run(["docker", "run", "-e", "PW", "img"], env={"PW": Secret("zz-sentinel-zz"), "MODE": "x"})
    assert r.plan() == ["PW='***' MODE=x docker run -e PW img"]


def test_write_file_is_atomic_and_sets_mode(tmp_path):
    p = tmp_path / "d" / "x.conf"
    Runner().write_file(p, "a=1\n", mode=0o600)
    assert p.read_text() == "a=1\n" and oct(p.stat().st_mode)[-3:] == "600"
    assert [f.name for f in p.parent.iterdir()] == ["x.conf"]  # no temp file left


def test_remote_command_quotes_env_and_cwd():
    from iosops.runner import remote_command

    assert remote_command(["id", "-un"]) == "id -un"
    assert remote_command(["sh", "-c", "echo $A"], {"A": "x y"}, "/srv/app") == \
        "cd /srv/app && export A='x y' && exec sh -c 'echo $A'"
