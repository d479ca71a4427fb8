"""The tools-tier half of tests/unit/test_trail.py: these tests run real programs (see tests/tools/__init__.py)."""
import json
import subprocess

from iosops.commands import lock as cl


def sh(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=10)


def test_lock_commands_take_once_read_and_release_only_their_own(tmp_path):
    d = str(tmp_path / "srv" / "stack")
    assert sh(cl.lock_read(d)).stdout == ""  # not locked; the directory need not exist
    first = sh(cl.lock_take(d, json.dumps({"who": "alice", "owner": "own-a"})))
    assert first.returncode == 0, first.stderr
    assert cl.parse_holder(sh(cl.lock_read(d)).stdout) == {"who": "alice", "owner": "own-a"}
    second = sh(cl.lock_take(d, json.dumps({"who": "bob", "owner": "own-b"})))
    assert second.returncode == cl.HELD
    assert cl.parse_holder(sh(cl.lock_read(d)).stdout)["who"] == "alice"  # the winner's info is untouched
    assert sh(cl.lock_release(d, "own-b")).returncode == cl.NOT_OURS  # bob cannot release alice's lock
    assert (tmp_path / "srv" / "stack" / "lock").is_dir()
    assert sh(cl.lock_release(d, "own-a")).returncode == 0
    assert not (tmp_path / "srv" / "stack" / "lock").exists()
    assert sh(cl.lock_take(d, "{}")).returncode == 0 and sh(cl.lock_release(d)).returncode == 0  # force


def test_lock_without_holder_info_reads_as_unknown_holder(tmp_path):
    (tmp_path / "lock").mkdir()
    assert cl.parse_holder(sh(cl.lock_read(str(tmp_path))).stdout) == {}


def test_lock_take_says_why_it_cannot_create_the_directory(tmp_path):
    (tmp_path / "file").write_text("")
    r = sh(cl.lock_take(str(tmp_path / "file"), "{}"))
    assert r.returncode not in (0, cl.HELD) and "file" in r.stderr


def test_audit_commands_append_one_line_per_record_and_tail(tmp_path):
    d = str(tmp_path / "stack")
    for i in range(3):
        assert sh(cl.audit_append(d, cl.audit_line({"run": f"r{i}", "args": {"note": "it's \"quoted\"\nnewline"}}))).returncode == 0
    text = (tmp_path / "stack" / "audit.log").read_text()
    assert len(text.splitlines()) == 3
    rows = cl.parse_audit(sh(cl.audit_tail(d, 2)).stdout)
    assert [r["run"] for r in rows] == ["r1", "r2"] and rows[0]["args"]["note"] == "it's \"quoted\"\nnewline"
    assert sh(cl.audit_tail(str(tmp_path / "none"), 5)).stdout == ""
