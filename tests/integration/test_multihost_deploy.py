"""Compose on SSH hosts, end to end: three test hosts (tests/netns_hosts.py), each a network namespace
with its own Docker engine, sshd, host key and private /srv — two web hosts and one data host, reached
over SSH with host keys checked — go through what an operator does: `inv hosts.trust`, `inv provision`,
`inv deploy` (first, then a blue-green deploy under load through both web hosts), `inv rollback` (under
load) and `inv verify-hosts`.

What it proves: the datastores run once, on the data host; both web hosts serve the same database;
the data host's datastore ports answer the web hosts and no one else; the switch loses no request.
Load goes only to the test hosts' addresses (10.213.0.0/16), bounded in count and time."""
import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from iosops.config import load_env
from iosops.deploy.loadgen import Load
from tests.conftest import run_inv
from tests.integration.conftest import docker, ops_of, remove_release, tag_release
from tests.netns_hosts import load_release, staging_vars

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE  # the stack's own self-signed certificate


def offline_images() -> dict[str, str]:
    """The images this machine can build (inv images.offline), by config key."""
    img = load_env("local", environ={}).cfg.images
    return {"postgres": img.postgres, "redis": img.redis, "nginx": img.nginx}


@pytest.fixture(scope="module")
def s3(netns_hosts, tmp_path_factory):
    """S3 over HTTP for the data host: moto_server on the test bridge's address (this machine's side),
    bucket ios-staging-backups; an age key pair for the backups' encryption."""
    import socket as so

    with so.socket() as s:
        s.bind((netns_hosts.gateway, 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", netns_hosts.gateway, "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://{netns_hosts.gateway}:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=0.5)  # nosec B310 - moto on the test bridge
            break
        except OSError:
            time.sleep(0.2)
    import boto3

    boto3.client("s3", endpoint_url=url, region_name="eu-central-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(  # pragma: allowlist secret - moto's dummy credential
        Bucket="ios-staging-backups", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    key = tmp_path_factory.mktemp("age") / "identity"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    pub = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True, text=True).stdout.strip()
    yield {"url": url, "identity": key.read_text().strip().splitlines()[-1], "recipient": pub}
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def multi(netns_hosts, api_image, s3, tmp_path_factory):
    """staging pointed at the three hosts (web, web, data) by tests.netns_hosts.staging_vars: its own state
    dir and known_hosts, images by local name, self-signed TLS, test secrets, S3 = moto on the bridge."""
    from iosops.images.offline import build_offline
    from iosops.runner import Runner

    build_offline(load_env("local", environ={}), Runner(), ("nginx",))
    state = tmp_path_factory.mktemp("multihost")
    release = f"iosops/api:mh-{uuid.uuid4().hex[:6]}"
    assert docker("tag", api_image.image, release).returncode == 0
    tag_release(api_image.image, release)
    imgs = offline_images()
    load_release(netns_hosts, release, ops_of(release), imgs)
    vars_ = staging_vars(netns_hosts, state, imgs, s3_url=s3["url"], age_identity=s3["identity"],
                         age_recipient=s3["recipient"])
    vars_.update(role_secret_vars())
    webs, data = list(netns_hosts)[:-1], netns_hosts[len(netns_hosts) - 1]
    yield {"hosts": netns_hosts, "webs": webs, "data": data, "vars": vars_, "release": release, "state": state}
    remove_release(release)


def role_secret_vars() -> dict[str, str]:
    """Test values for staging's datastore role and user passwords (iosops/deploy/dbusers.py)."""
    from iosops.deploy.dbusers import ROLE_SECRETS

    return {f"IOS_STAGING_{name.upper()}": f"mh-{uuid.uuid4().hex}" for name in ROLE_SECRETS}


def inv_ok(multi, *args: str, timeout: float = 900) -> str:
    proc = run_inv(*args, "--env", "staging", env=multi["vars"], timeout=timeout)
    assert proc.returncode == 0, f"inv {' '.join(args)}: {proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def containers(multi, host, service: str) -> list[str]:
    r = multi["hosts"].docker(host, "ps", "-q", "--filter", f"label=com.docker.compose.service={service}")
    return r.stdout.split()


def https(host, path: str, method: str = "GET", body: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(f"https://{host.address}:443{path}", method=method,
                                 data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json", "Host": "localhost"})
    try:
        with urllib.request.urlopen(req, context=TLS, timeout=10) as resp:  # nosec B310 - https to a test host
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_trust_then_provision_the_three_hosts(multi):
    out = inv_ok(multi, "hosts.trust")
    assert out.count("SHA256:") >= 3, out
    known = (multi["state"] / "staging.known_hosts").read_text()
    assert all(h.address in known for h in multi["hosts"])
    out = inv_ok(multi, "provision", timeout=1200)
    # The data host's firewall opens its datastore ports to the web hosts only; web hosts have no such rule.
    data_fw = multi["hosts"].enter(multi["data"], ["nft", "list", "table", "inet", "iosops"]).stdout
    assert "hook forward" in data_fw and all(w.address in data_fw for w in multi["webs"]), data_fw
    assert "hook forward" not in multi["hosts"].enter(multi["webs"][0], ["nft", "list", "table", "inet", "iosops"]).stdout


def test_first_deploy_runs_one_database_that_both_web_hosts_serve(multi):
    out = inv_ok(multi, "deploy", "--tag", multi["release"].rsplit(":", 1)[1])
    assert "verify-hosts: " in out and "FAILED" not in out, out[-3000:]
    data, webs = multi["data"], multi["webs"]
    assert len(containers(multi, data, "postgres")) == 1 and len(containers(multi, data, "redis")) == 1
    assert len(containers(multi, data, "walstream")) == 1 and not containers(multi, data, "api-blue")
    for w in webs:
        assert not containers(multi, w, "postgres") and not containers(multi, w, "redis"), w.name
        assert len(containers(multi, w, "api-blue")) == 2 and len(containers(multi, w, "nginx")) == 1
    # A row written through one web host is read through the other: one database.
    name = f"mh-{uuid.uuid4().hex[:8]}"
    status, body = https(webs[0], "/items", "POST", {"name": name, "data": {"via": webs[0].address}})
    assert status in (200, 201), body
    item = json.loads(body)["id"]
    status, body = https(webs[1], f"/items/{item}")
    assert status == 200 and json.loads(body)["name"] == name, body


def test_the_datastores_answer_the_web_hosts_and_no_one_else(multi):
    data, web = multi["data"], multi["webs"][0]
    probe = ("import socket,sys\ns=socket.socket(); s.settimeout(3)\n"
             "try:\n s.connect((sys.argv[1], int(sys.argv[2]))); print('open')\nexcept OSError as e: print(type(e).__name__)")
    for port in (5432, 6379):
        from_web = multi["hosts"].enter(web, ["python3", "-c", probe, data.address, str(port)]).stdout.strip()
        assert from_web == "open", (port, from_web)
        # This machine (10.213.K.1) is on the same network but not a web host: dropped by the data host.
        with socket.socket() as s:
            s.settimeout(3)
            with pytest.raises(OSError):
                s.connect((data.address, port))


def test_blue_green_deploy_and_rollback_under_load_through_both_web_hosts_lose_nothing(multi):
    webs = multi["webs"]
    second = f"{multi['release']}-b"
    assert docker("tag", multi["release"], second).returncode == 0
    tag_release(multi["release"], second)
    try:
        load_release(multi["hosts"], second, ops_of(second), {})
        loads = [Load(443, host=w.address, rate=20, min_count=200, max_seconds=240, workers=8).start() for w in webs]
        try:
            out = inv_ok(multi, "deploy", "--tag", second.rsplit(":", 1)[1])
        finally:
            results = [load.stop() for load in loads]
        assert "switched nginx to green on 2 host(s)" in out and "gate: " in out, out[-3000:]
        for r in results:
            assert r.sent >= 200 and r.failed == 0, r
        for w in webs:
            assert containers(multi, w, "api-green") and containers(multi, w, "api-blue")
        loads = [Load(443, host=w.address, rate=20, min_count=100, max_seconds=120, workers=8).start() for w in webs]
        try:
            out = inv_ok(multi, "rollback")
        finally:
            results = [load.stop() for load in loads]
        for r in results:
            assert r.sent >= 100 and r.failed == 0, r
        assert https(webs[0], "/ready")[0] == 200 and https(webs[1], "/ready")[0] == 200
        state = json.loads(multi["hosts"].enter(webs[1], ["cat", "/srv/iosops/iosops-staging/state.json"]).stdout)
        assert state["active"] == "blue" and state["previous"] == "green"
    finally:
        remove_release(second)


def test_verify_hosts_passes_on_every_host_with_its_role(multi):
    out = inv_ok(multi, "verify-hosts", "--colour", "blue")
    assert "FAILED" not in out and "3 host(s)" in out, out[-3000:]


def test_backup_verify_and_restore_of_the_data_host_over_ssh(multi):
    """#11 on SSH hosts: the ops container on the data host backs up to S3 (moto on the bridge), a row
    written after the backup comes back through the WAL stream, maintenance is on both web hosts."""
    webs = multi["webs"]
    before = f"mh-before-{uuid.uuid4().hex[:6]}"
    assert https(webs[0], "/items", "POST", {"name": before, "data": {}})[0] in (200, 201)
    out = inv_ok(multi, "backup")
    assert "iosops-staging" in out or "backup" in out.lower()
    status, body = https(webs[1], "/items", "POST", {"name": f"mh-after-{uuid.uuid4().hex[:6]}", "data": {}})
    assert status in (200, 201), body
    after_id = json.loads(body)["id"]
    time.sleep(6)  # the WAL streamer uploads the segment being written every 2 s
    inv_ok(multi, "backups.verify", "--all")
    # Everything written after the restore point is gone again after a restore to it... here --latest:
    # the restore must bring both rows back (nothing lost), through the other web host.
    out = inv_ok(multi, "restore", "--latest", "--yes", timeout=1200)
    status, body = https(webs[0], f"/items/{after_id}")
    assert status == 200, (status, body, out[-2000:])
    assert https(webs[1], "/ready")[0] == 200
    # The datastores' side ran on the data host only; the ops containers are gone again.
    assert not [c for w in webs for c in containers(multi, w, "ops")]
