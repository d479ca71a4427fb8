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
import urllib.request
import uuid

import pytest

from iosops.config import load_env
from iosops.deploy.loadgen import Load
from tests.conftest import run_inv
from tests.integration.conftest import docker, ops_of, remove_release, tag_release

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE  # the stack's own self-signed certificate


def offline_images() -> dict[str, str]:
    """The images this machine can build (inv images.offline), by config key."""
    img = load_env("local", environ={}).cfg.images
    return {"postgres": img.postgres, "redis": img.redis, "nginx": img.nginx}


@pytest.fixture(scope="module")
def multi(netns_hosts, api_image, tmp_path_factory):
    """staging pointed at the three hosts (web, web, data): its own state dir, known_hosts, a local
    registry-less image name, self-signed TLS, offline images; secrets as env vars of test values."""
    from iosops.build.offline import build_offline
    from iosops.runner import Runner

    build_offline(load_env("local", environ={}), Runner(), ("nginx",))
    state = tmp_path_factory.mktemp("multihost")
    release = f"iosops/api:mh-{uuid.uuid4().hex[:6]}"
    assert docker("tag", api_image.image, release).returncode == 0
    tag_release(api_image.image, release)
    webs, data = list(netns_hosts)[:-1], netns_hosts[len(netns_hosts) - 1]
    imgs = offline_images()
    netns_hosts.load_images([release, imgs["nginx"]], only=webs)
    netns_hosts.load_images([ops_of(release), imgs["postgres"], imgs["redis"]], only=[data])
    vars_ = {**netns_hosts.iosops_env(), "IOSOPS_STATE_DIR": str(state),
             "IOSOPS_HOSTS__KNOWN_HOSTS_FILE": str(state / "staging.known_hosts"),
             "IOSOPS_BUILD__REGISTRY": "", "IOSOPS_STACK__API_WORKERS": "1",
             "IOSOPS_DEPLOY__TLS__SELF_SIGNED": "true", "IOSOPS_DEPLOY__TLS__CERT": "nginx/certs/fullchain.pem",
             "IOSOPS_DEPLOY__TLS__KEY": "nginx/certs/privkey.pem", "IOSOPS_DEPLOY__SERVER_NAME": "localhost",
             "IOSOPS_DEPLOY__RATE_LIMIT_RPS": "1000", "IOSOPS_DEPLOY__RATE_LIMIT_BURST": "2000",
             "IOSOPS_NOTIFY__REQUIRED": "false",
             # A local store directory on the data host stands in for S3 here (S3 is proven elsewhere):
             # the config refuses `local` for SSH hosts, so the store is an S3 endpoint nobody serves and
             # the WAL streamer's uploads are not under test in this module.
             "IOS_STAGING_POSTGRES_PASSWORD": "mh-" + uuid.uuid4().hex, "IOS_STAGING_BACKUP_PASSWORD": "mb-" + uuid.uuid4().hex,  # pragma: allowlist secret - random per-run test passwords
             "IOS_STAGING_BACKUP_S3_ACCESS_KEY_ID": "test", "IOS_STAGING_BACKUP_S3_SECRET_ACCESS_KEY": "test",
             "IOS_STAGING_BACKUP_AGE_IDENTITY": "AGE-SECRET-KEY-1" + "Q" * 58,
             "IOSOPS_BACKUP__STORE__ENDPOINT_URL": f"http://{netns_hosts.gateway}:9",
             **{f"IOSOPS_IMAGES__{k.upper()}": v for k, v in imgs.items()}}
    yield {"hosts": netns_hosts, "webs": webs, "data": data, "vars": vars_, "release": release, "state": state}
    remove_release(release)


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
        multi["hosts"].load_images([second], only=webs)
        multi["hosts"].load_images([ops_of(second)], only=[multi["data"]])
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
