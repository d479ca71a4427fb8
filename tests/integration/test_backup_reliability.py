"""Reliability with real processes: SIGKILL mid-backup at many points, S3 over HTTP (moto_server),
a store answering 500s or gone, encryption with the wrong key, a dead webhook."""
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from iosops.backup.catalog import entries, prune, verify
from iosops.backup.run import run_backup
from iosops.backup.store import open_store
from iosops.errors import BadInput, OperationFailed
from tests.conftest import INV, ROOT, free_port, run_inv
from tests.integration.backup_lab import QUIET, destroy_lab, make_lab


@pytest.fixture(scope="module")
def lab():
    lab = make_lab("reliab")
    # enough data that a backup takes a while: many kill points land mid-stream
    lab.sql("CREATE TABLE bulk AS SELECT i, md5(i::text) || repeat(md5(random()::text), 8) AS payload "
            "FROM generate_series(1, 150000) i")
    yield lab
    destroy_lab(lab)


def test_sigkill_at_many_points_leaves_nothing_restorable_and_prune_sweeps_debris(lab):
    cli = {**lab.cli_env(), "IOSOPS_STATE_DIR": str(lab.ws / "state")}
    store = open_store(lab.env())
    # how long a backup takes here, to spread the kill points over its whole life
    t0 = time.monotonic()
    assert run_inv("backup", "--env", "local", env=cli).returncode == 0
    duration = time.monotonic() - t0
    good_before = {e.id for e in entries(lab.env(), store) if e.complete}
    points = [duration * (0.02 + 0.05 * k) for k in range(16)]  # spread over 2-77 % of a run
    killed_midway = 0
    for delay in points:
        proc = subprocess.Popen([*INV, "backup", "--env", "local"], cwd=ROOT, env={**os.environ, **cli},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(delay)
        if proc.poll() is None:
            killed_midway += 1
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the job and every child it started (pg_basebackup, zstd)
        except ProcessLookupError:
            pass
        proc.wait()
        listed = entries(lab.env(), store)
        for e in listed:
            if e.complete:  # anything listed as restorable is whole: its manifest names existing artifacts
                assert all(store.exists(a.key) for a in e.manifest.artifacts)
    assert killed_midway >= 10
    after = entries(lab.env(), store)
    debris = [e.id for e in after if not e.complete]
    assert debris, "the kills left no partial backup: the points missed the upload"
    # the next backup succeeds (the stale lock of a killed run is detected and removed)
    nxt = run_inv("backup", "--env", "local", "--json", env=cli)
    assert nxt.returncode == 0, nxt.stderr
    plan = prune(lab.env(), QUIET)
    assert sorted(plan.debris) == sorted(debris)
    final = entries(lab.env(), store)
    assert not [e for e in final if not e.complete]
    assert good_before <= {e.id for e in final}  # nothing good was lost
    assert not list(Path(lab.ws / "store").rglob("*.partial"))


# -- S3 over real HTTP (moto_server) ---------------------------------------------------------------
@pytest.fixture(scope="module")
def moto():
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=0.5)
            break
        except requests.RequestException:
            time.sleep(0.1)
    import boto3

    boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="itest-key-7f3a",
                 aws_secret_access_key="itest-secret-91c2").create_bucket(Bucket="ios-backups")  # pragma: allowlist secret - moto's dummy credential for a loopback fake S3
    yield url
    proc.terminate()
    proc.wait(10)


def s3_overrides(url, **extra):
    return {"backup": {"store": {"kind": "s3", "bucket": "ios-backups", "prefix": "itest", "endpoint_url": url,
                                 "access_key_id": {"env": "ITEST_S3_KEY"}, "secret_access_key": {"env": "ITEST_S3_SECRET"},
                                 "max_attempts": 3, "connect_timeout_s": 1, "multipart_chunk_mb": 5, **extra}}}


def test_s3_backup_verify_and_restore_through_plain_boto3(lab, moto, monkeypatch):
    monkeypatch.setenv("ITEST_S3_KEY", "itest-key-7f3a")
    monkeypatch.setenv("ITEST_S3_SECRET", "itest-secret-91c2")
    env = lab.env(**s3_overrides(moto))
    man = run_backup(env, QUIET, only="postgres,redis")
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1", aws_access_key_id="itest-key-7f3a",
                      aws_secret_access_key="itest-secret-91c2")  # pragma: allowlist secret - moto's dummy credential for a loopback fake S3
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="ios-backups", Prefix="itest/")["Contents"]}
    assert f"itest/backups/{man.id}/manifest.json" in keys
    assert verify(env, QUIET, man.id)[0]["ok"]


def test_missing_s3_credentials_are_bad_input(lab, moto, monkeypatch):
    monkeypatch.delenv("ITEST_S3_KEY", raising=False)
    with pytest.raises(BadInput, match="ITEST_S3_KEY is not set"):
        run_backup(lab.env(**s3_overrides(moto)), QUIET)


class Always500(http.server.BaseHTTPRequestHandler):
    hits = 0

    def _answer(self):
        type(self).hits += 1
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

    def log_message(self, *a):
        pass


def test_store_answering_500s_fails_after_bounded_retries_and_prune_deletes_nothing(lab, monkeypatch):
    monkeypatch.setenv("ITEST_S3_KEY", "itest-key-7f3a")
    monkeypatch.setenv("ITEST_S3_SECRET", "itest-secret-91c2")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Always500)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        env = lab.env(**s3_overrides(f"http://127.0.0.1:{srv.server_address[1]}"))
        with pytest.raises(OperationFailed, match=r"object store .* failed after retries"):
            run_backup(env, QUIET, only="redis")
        assert 0 < Always500.hits <= 20  # bounded
        Always500.hits = 0
        with pytest.raises(OperationFailed, match="failed after retries"):
            prune(env, QUIET, force=True)
    finally:
        srv.shutdown()


def test_unreachable_store_is_exit_1_with_a_clear_line(lab):
    cli = {**lab.cli_env(), "IOSOPS_BACKUP__STORE": json.dumps(s3_overrides(f"http://127.0.0.1:{free_port()}")["backup"]["store"]),
           "ITEST_S3_KEY": "itest-key-7f3a", "ITEST_S3_SECRET": "itest-secret-91c2"}  # pragma: allowlist secret - moto's dummy credential
    proc = run_inv("backup", "--env", "local", "--only", "redis", env=cli)
    lines = [l for l in proc.stderr.splitlines() if l.strip() and not l.startswith("backup ")]
    assert proc.returncode == 1 and "failed after retries" in lines[-1]


# -- encryption ------------------------------------------------------------------------------------
def test_encrypted_backup_verifies_with_the_key_and_fails_clearly_with_the_wrong_one(lab, tmp_path):
    def keypair(name):
        key = tmp_path / name
        subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
        pub = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True, text=True).stdout.strip()
        return key, pub

    right, pub = keypair("right.key")
    wrong, _ = keypair("wrong.key")
    env = lab.env(backup={"encryption_recipient": pub, "encryption_key": {"file": str(right)}})
    man = run_backup(env, QUIET, only="redis")
    assert all(a.encryption == "age" and a.key.endswith(".age") for a in man.artifacts)
    assert verify(env, QUIET, man.id)[0]["ok"]
    bad = lab.env(backup={"encryption_recipient": pub, "encryption_key": {"file": str(wrong)}})
    with pytest.raises(OperationFailed, match=r"age -d .*error: no identity matched"):
        verify(bad, QUIET, man.id)
    secret_text = right.read_text()
    assert "AGE-SECRET-KEY" in secret_text
    for obj in open_store(env).list(f"backups/{man.id}/"):
        assert b"AGE-SECRET-KEY" not in open_store(env).get_bytes(obj.key)


# -- webhook ---------------------------------------------------------------------------------------
class Receiver(http.server.BaseHTTPRequestHandler):
    got: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a):
        pass


def test_webhook_gets_a_message_and_a_dead_one_never_fails_the_backup(lab, tmp_path):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hook = tmp_path / "hook"
    hook.write_text(f"http://127.0.0.1:{srv.server_address[1]}/services/T000/B000/sentinel")
    try:
        man = run_backup(lab.env(backup={"webhook_url": {"file": str(hook)}}), QUIET, only="redis")
        assert Receiver.got and man.id in Receiver.got[-1]["text"] and "OK" in Receiver.got[-1]["text"]
    finally:
        srv.shutdown()
    dead = tmp_path / "dead"
    dead.write_text(f"http://127.0.0.1:{free_port()}/hook")
    t0 = time.monotonic()
    assert run_backup(lab.env(backup={"webhook_url": {"file": str(dead)}}), QUIET, only="redis").id
    assert time.monotonic() - t0 < 30  # bounded retries, never blocking
