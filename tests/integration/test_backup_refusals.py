"""Corrupt backups and bad input through the real `inv` CLI against a REAL PostgreSQL 15 and Redis:
a corrupt artifact is always named and refused (exit 1, one `error:` line, no debris, the verify record and
metric say failed); a store path that is a file and unusable secret files are bad input (exit 2, one
`error:` line naming the path or the reference, nothing changed)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iosops.backup.catalog import last_run_path, verify_record
from iosops.backup.metrics import read_textfile
from iosops.backup.run import run_backup
from iosops.backup.store import open_store
from tests.conftest import ROOT, run_inv
from tests.integration.backup_lab import QUIET, destroy_lab, make_lab


@pytest.fixture(scope="module")
def lab():
    lab = make_lab("refuse")
    # a base backup of several MB: the pipeline is still pumping when zstd/tar give up on a damaged byte
    lab.sql("CREATE TABLE bulk AS SELECT i, md5(i::text) || repeat(md5(random()::text), 8) AS payload "
            "FROM generate_series(1, 60000) i")
    yield lab
    destroy_lab(lab)


def cli(lab, **extra) -> dict[str, str]:
    return {**lab.cli_env(), "IOSOPS_STATE_DIR": str(lab.ws / "state"), **extra}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def debris(lab) -> list[str]:
    """What a refused run must never leave: the env lock, a staging copy, a WAL spool."""
    left = [str(p) for p in (lab.ws / "state").rglob("*.lock")]
    left += [str(p) for p in lab.ws.glob("*.restoring")] + [str(p) for p in lab.ws.glob("*.walspool")]
    return left


def verify_metric(lab) -> float:
    return read_textfile(lab.ws / "metrics.prom")['iosops_backup_last_verify_success{env="local"}']


def test_a_flipped_byte_anywhere_in_the_base_backup_is_always_named_and_refused(lab):
    env = lab.env()
    man = run_backup(env, QUIET)
    art = next(a for a in man.artifacts if a.component == "postgres" and a.kind == "base-tar")
    path = lab.ws / "store" / art.key
    original = path.read_bytes()
    n = len(original)
    assert n > 2_000_000, n  # several 1 MiB chunks: the pump is mid-stream when a stage exits
    offsets = [4, 64, 4096] + [n * k // 8 for k in range(1, 8)] + [n - 64, n - 1]
    assert len(set(offsets)) == 12
    assert run_inv("backups.verify", "--env", "local", "--id", man.id, env=cli(lab)).returncode == 0
    assert verify_metric(lab) == 1
    before = lab.sql("SELECT count(*) FROM accounts")
    try:
        for off in offsets:
            data = bytearray(original)
            data[off] ^= 0x01
            path.write_bytes(bytes(data))
            for args in (["backups.verify", "--id", man.id], ["restore", "--backup", man.id, "--yes"]):
                proc = run_inv(*args, "--env", "local", env=cli(lab))
                what = (off, args[0], proc.returncode, proc.stderr[-600:])
                assert proc.returncode == 1, what  # never 141 (killed by SIGPIPE) and never 0
                errs = error_lines(proc.stderr)
                assert len(errs) == 1 and art.key in errs[0] and "corrupt" in errs[0], what
                assert proc.stderr.rstrip().splitlines()[-1] == errs[0], what
                assert "Traceback" not in proc.stderr, what
                assert not debris(lab), (what, debris(lab))
                if args[0] == "backups.verify":
                    assert verify_metric(lab) == 0, what
                    assert verify_record(open_store(env), man.id)["ok"] is False, what
                else:
                    assert "refusing to restore from it" in errs[0], what
            # the live cluster kept serving throughout
            assert lab.sql("SELECT count(*) FROM accounts") == before
    finally:
        path.write_bytes(original)
    assert run_inv("backups.verify", "--env", "local", "--id", man.id, env=cli(lab)).returncode == 0
    assert verify_metric(lab) == 1 and verify_record(open_store(env), man.id)["ok"] is True


def test_inv_stays_quiet_when_its_reader_goes_away():
    """`inv ... | head` ends quietly without the process-wide SIGPIPE=SIG_DFL that killed runs mid-pipeline."""
    r, w = os.pipe()
    os.close(r)  # the reader is gone before inv writes anything
    try:
        proc = subprocess.run([sys.executable, "-c", "import sys; from invoke.main import program; sys.exit(program.run())",
                               "--list"], cwd=ROOT, stdout=w, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(w)
    assert proc.stderr == "" and proc.returncode == 128 + 13, (proc.returncode, proc.stderr)  # as `cat` would


# -- bad input: the store path is a file -----------------------------------------------------------
def test_a_store_path_that_is_a_file_is_bad_input_and_changes_nothing(lab, tmp_path):
    not_a_dir = tmp_path / "store-is-a-file"
    not_a_dir.write_text("not a directory\n")
    below = not_a_dir / "nested"  # a path under a file: also not a usable directory
    last = last_run_path(lab.env())
    for store_path in (not_a_dir, below):
        store = json.dumps({"kind": "local", "path": str(store_path)})
        env = cli(lab, IOSOPS_BACKUP__STORE=store)
        last_before = last.read_bytes() if last.exists() else None
        for args in (["backups.list"], ["backup"], ["backups.verify"], ["backups.prune"],
                     ["restore", "--latest", "--yes"]):
            proc = run_inv(*args, "--env", "local", env=env)
            what = (store_path, args, proc.returncode, proc.stdout, proc.stderr)
            assert proc.returncode == 2, what
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error:"), what
            assert str(store_path) in lines[0] and "not a directory" in lines[0] and "backup.store.path" in lines[0], what
            assert "no backups" not in proc.stdout, what
        assert not_a_dir.read_text() == "not a directory\n"
        assert (last.read_bytes() if last.exists() else None) == last_before
        assert not debris(lab)


# -- bad input: secret files -----------------------------------------------------------------------
def test_unusable_secret_files_are_bad_input_and_never_record_a_failed_backup(lab, tmp_path):
    assert run_inv("backup", "--env", "local", "--only", "redis", env=cli(lab)).returncode == 0
    last = last_run_path(lab.env())
    assert json.loads(last.read_text())["ok"] is True
    last_before = last.read_bytes()
    store_before = sorted(o.key for o in open_store(lab.env()).list("backups/"))
    as_dir = tmp_path / "pw-is-a-dir"
    as_dir.mkdir()
    latin1 = tmp_path / "pw-latin1"
    latin1.write_bytes("lab-päss-4f9c2e\n".encode("latin-1"))  # pragma: allowlist secret - test value, not a credential
    for ref_path, why in ((as_dir, "is a directory"), (latin1, "not UTF-8")):
        ref = json.dumps({"file": str(ref_path)})
        for args in (["backup"], ["backup", "--only", "postgres"]):
            proc = run_inv(*args, "--env", "local", env=cli(lab, IOSOPS_BACKUP__POSTGRES__PASSWORD=ref))
            what = (ref_path, args, proc.returncode, proc.stderr)
            assert proc.returncode == 2, what
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error:"), what
            assert "backup.postgres.password" in lines[0] and str(ref_path) in lines[0] and why in lines[0], what
            assert "päss" not in proc.stderr and "p\\xe4ss" not in proc.stderr, what
        assert last.read_bytes() == last_before  # bad input is not a failed backup: prune is not blocked
        assert sorted(o.key for o in open_store(lab.env()).list("backups/")) == store_before
        assert not debris(lab)
    plan = run_inv("backups.prune", "--env", "local", "--dry-run", env=cli(lab))
    assert plan.returncode == 0, plan.stderr


@pytest.fixture
def shared_dir():
    """A directory `nobody` may enter (pytest's tmp_path is private to root)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="iosops-itest-secret-", dir="/var/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_an_unreadable_secret_file_is_bad_input_for_a_non_root_user(shared_dir):
    """A real PermissionError (root reads anything, so the reader runs as `nobody`)."""
    secret = shared_dir / "pw"
    secret.write_text("hidden-value-91e3\n")
    secret.chmod(0o600)  # root's file: nobody cannot read it
    code = ("import sys\nfrom pathlib import Path\nfrom iosops.errors import BadInput\nfrom iosops.secretref import SecretRef\n"
            "try:\n    SecretRef(file=sys.argv[1]).reveal('backup.postgres.password', Path('/'))\n"
            "except BadInput as exc:\n    print(exc)\n    sys.exit(2)\n")
    assert os.geteuid() == 0, "runs the reader as nobody: needs root"
    proc = subprocess.run(["runuser", "-u", "nobody", "--", sys.executable, "-c", code, str(secret)],
                          capture_output=True, text=True, timeout=60, cwd="/",
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "backup.postgres.password" in proc.stdout and str(secret) in proc.stdout and "not readable" in proc.stdout
    assert "hidden-value" not in proc.stdout + proc.stderr
    assert Path(secret).read_text() == "hidden-value-91e3\n"
