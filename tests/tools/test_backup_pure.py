"""The tools-tier half of tests/unit/test_backup_pure.py: these tests run real programs (see tests/tools/__init__.py)."""
from iosops.config import load_env


def test_restore_command_answers_from_the_spool_and_a_local_archive_without_python(tmp_path):
    import subprocess

    from iosops.backup.wal import restore_command

    store, spool, pgwal = tmp_path / "store", tmp_path / "spool", tmp_path / "pg_wal"
    for d in (store / "wal", spool, pgwal):
        d.mkdir(parents=True)
    env = load_env("local", environ={}, overrides={"backup": {"store": {"kind": "local", "path": str(store)}}})
    cmd = restore_command(env, spool)
    (spool / "000000010000000000000003").write_bytes(b"wal")

    def run(name: str) -> int:
        line = cmd.replace("%f", name).replace("%p", str(pgwal / "RECOVERYXLOG"))
        return subprocess.run(["sh", "-c", line], capture_output=True).returncode

    assert run("000000010000000000000003") == 0 and (pgwal / "RECOVERYXLOG").read_bytes() == b"wal"
    assert (spool / "000000010000000000000003").exists()  # copied, not moved: asked for twice
    assert run("00000002.history") == 1  # not archived: answered by the shell
    assert "iosops.backup.wal fetch" in cmd.split("else", 2)[-1]  # an archived one goes to the fetcher
    s3 = load_env("local", environ={}, overrides={"backup": {"store": {"kind": "s3", "bucket": "b"}}})
    assert "elif" not in restore_command(s3, spool)
