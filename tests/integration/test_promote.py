"""`inv images.promote` between two real Distribution registries (Debian's docker-registry) on 127.0.0.1:
"staging" open, "prod" behind htpasswd (Basic auth with the env's password reference). Releases are
pushed into staging over the registry API itself (config + layer blobs + manifest, also a two-platform
OCI index), so no Docker engine is needed; promotion must put the same digests into prod, read back.
A third registry runs with token auth (Bearer): its token service is a few lines of this test that sign
JWTs the real registry verifies."""
import gzip
import hashlib
import io
import json
import subprocess
import tarfile
import time

import bcrypt
import pytest
import requests
import yaml

from iosops.images import promote as pr
from tests.conftest import ROOT, free_port, run_inv

PROD_USER, PROD_PASSWORD = "ci", "promote-sentinel-pw-4711"  # pragma: allowlist secret - a test sentinel


def _start_registry(tmp_path, name, htpasswd=None, auth_block=""):
    port = free_port()
    auth = auth_block
    if htpasswd:
        (tmp_path / f"{name}.htpasswd").write_text(htpasswd)
        auth = f"auth:\n  htpasswd:\n    realm: {name}\n    path: {tmp_path}/{name}.htpasswd\n"
    cfg = tmp_path / f"{name}.yml"
    cfg.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/{name}\n"
                   f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}")
    proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code in (200, 401):
                return proc, f"127.0.0.1:{port}"
        except requests.RequestException:
            time.sleep(0.2)
    proc.terminate()
    pytest.fail(f"docker-registry {name} did not start")


@pytest.fixture
def registries(tmp_path):
    """(staging host, prod host); both stopped by PID."""
    hashed = bcrypt.hashpw(PROD_PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    procs = []
    try:
        p1, staging = _start_registry(tmp_path, "staging")
        procs.append(p1)
        p2, prod = _start_registry(tmp_path, "prod", f"{PROD_USER}:{hashed}\n")
        procs.append(p2)
        yield staging, prod
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


@pytest.fixture
def envs_dir(tmp_path, registries):
    """The repository's envs with build.registry pointing at the two test registries."""
    return make_envs(tmp_path / "envs", *registries)


def make_envs(d, staging, prod):
    d.mkdir()
    for f in (ROOT / "envs").glob("*.yaml"):
        data = yaml.safe_load(f.read_text()) or {}
        if f.stem in ("staging", "prod"):
            data["build"]["registry"] = staging if f.stem == "staging" else prod
        if f.stem == "staging":
            data["build"].pop("registry_password")  # the staging test registry is open
        (d / f.name).write_text(yaml.safe_dump(data))
    return d


# -- a Distribution registry with token auth (Bearer), its token service a few lines of this test ---------
def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def token_registry(tmp_path):
    """Distribution with `auth: token`: a 401 names a realm; the realm (here) checks the user and password
    and signs an RS256 JWT granting the requested scopes, which the registry verifies with the test CA."""
    import datetime as dt
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "iosops-test-token-signer")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "token-ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    x5c = __import__("base64").b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    issued = []

    class Tokens(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            import base64

            want = "Basic " + base64.b64encode(f"{PROD_USER}:{PROD_PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != want:
                self.send_response(401)
                self.end_headers()
                return
            q = parse_qs(urlparse(self.path).query)
            access = []
            for scope in q.get("scope", []):
                kind, repo, actions = scope.split(":")
                access.append({"type": kind, "name": repo, "actions": actions.split(",")})
            issued.append(q.get("scope", []))
            t0 = int(time.time())
            header = {"alg": "RS256", "typ": "JWT", "x5c": [x5c]}
            claims = {"iss": "iosops-test", "sub": PROD_USER, "aud": "iosops-test-registry", "exp": t0 + 300,
                      "nbf": t0 - 10, "iat": t0, "jti": str(t0) + str(len(issued)), "access": access}
            signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
            sig = key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
            body = json.dumps({"token": f"{signing}.{_b64url(sig)}"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Tokens)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    realm = f"http://127.0.0.1:{server.server_address[1]}/token"
    auth = (f"auth:\n  token:\n    realm: {realm}\n    service: iosops-test-registry\n    issuer: iosops-test\n"
            f"    rootcertbundle: {tmp_path}/token-ca.pem\n")
    try:
        proc, host = _start_registry(tmp_path, "prod-token", auth_block=auth)
        try:
            yield host, issued
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    finally:
        server.shutdown()


def test_promote_to_a_registry_with_token_auth(tmp_path, token_registry):
    prod, issued = token_registry
    proc, staging = _start_registry(tmp_path, "staging-open")
    try:
        api = push_image(staging, "iosops/api", "rel-t", "api-rel-t")[0]
        ops = push_image(staging, "iosops/ops", "rel-t", "ops-rel-t")[0]
        envs = make_envs(tmp_path / "envs", staging, prod)
        out = promote_cli(envs, "--tag", "rel-t", "--to-env", "prod")
        assert out.returncode == 0, out.stderr
        assert {"repository:iosops/api:pull,push", "repository:iosops/ops:pull,push"} <= {s for q in issued for s in q}
        # read back through the token service again: prod holds the same digests
        again = promote_cli(envs, "--tag", "rel-t", "--to-env", "prod")
        assert again.returncode == 0, again.stderr
        assert again.stdout.splitlines()[:2] == [f"no change: {prod}/iosops/ops:rel-t is already {ops}",
                                                 f"no change: {prod}/iosops/api:rel-t is already {api}"]
        # without the right password the token service refuses: one line, exit 2
        bad = promote_cli(envs, "--tag", "rel-t", "--to-env", "prod", password="wrong-token-sentinel-77")
        assert bad.returncode == 2 and "refused prod.build.registry_username/registry_password" in bad.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _upload_blob(host, repo, data: bytes, auth=None) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = requests.post(f"http://{host}/v2/{repo}/blobs/uploads/", auth=auth, timeout=10)
    assert start.status_code == 202, start.text
    loc = start.headers["Location"]
    loc = loc if loc.startswith("http") else f"http://{host}{loc}"
    resp = requests.put(f"{loc}{'&' if '?' in loc else '?'}digest={digest}", data=data, auth=auth, timeout=10,
                        headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 201, resp.text
    return {"digest": digest, "size": len(data)}


def _layer(files: dict) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


def push_image(host, repo, tag, marker: str, media=pr.DOCKER_MANIFEST, auth=None) -> tuple[str, bytes]:
    """A small real image (config + 2 layers) under REPO:TAG; returns (digest, manifest bytes)."""
    layers = [_upload_blob(host, repo, _layer({"etc/release": marker.encode()}), auth),
              _upload_blob(host, repo, _layer({"app/main.py": f"print({marker!r})\n".encode()}), auth)]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"marker": marker}},
                         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{'0' * 64}"] * 2}}).encode()
    cfg = _upload_blob(host, repo, config, auth)
    layer_type = ("application/vnd.docker.image.rootfs.diff.tar.gzip" if media == pr.DOCKER_MANIFEST
                  else "application/vnd.oci.image.layer.v1.tar+gzip")
    cfg_type = ("application/vnd.docker.container.image.v1+json" if media == pr.DOCKER_MANIFEST
                else "application/vnd.oci.image.config.v1+json")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": media, "config": {"mediaType": cfg_type, **cfg},
                           "layers": [{"mediaType": layer_type, **lay} for lay in layers]}, indent=3).encode()
    resp = requests.put(f"http://{host}/v2/{repo}/manifests/{tag}", data=manifest, auth=auth, timeout=10,
                        headers={"Content-Type": media})
    assert resp.status_code == 201, resp.text
    return resp.headers["Docker-Content-Digest"], manifest


def push_index(host, repo, tag, marker) -> str:
    """A two-platform OCI index (as buildx makes) under REPO:TAG; returns its digest."""
    children = []
    for arch in ("amd64", "arm64"):
        digest, raw = push_image(host, repo, f"{tag}-{arch}", f"{marker}-{arch}", media=pr.OCI_MANIFEST)
        children.append({"mediaType": pr.OCI_MANIFEST, "digest": digest, "size": len(raw),
                         "platform": {"architecture": arch, "os": "linux"}})
    index = json.dumps({"schemaVersion": 2, "mediaType": pr.OCI_INDEX, "manifests": children}).encode()
    resp = requests.put(f"http://{host}/v2/{repo}/manifests/{tag}", data=index, timeout=10,
                        headers={"Content-Type": pr.OCI_INDEX})
    assert resp.status_code == 201, resp.text
    return resp.headers["Docker-Content-Digest"]


def registry_digest(host, repo, ref, auth=None):
    resp = requests.head(f"http://{host}/v2/{repo}/manifests/{ref}", auth=auth, timeout=10,
                         headers={"Accept": pr.ACCEPT})
    return resp.headers.get("Docker-Content-Digest") if resp.status_code == 200 else None


def promote_cli(envs_dir, *args, password=PROD_PASSWORD):
    return run_inv("images.promote", *args, env={"IOSOPS_ENVS_DIR": str(envs_dir),
                                                 "IOS_PROD_REGISTRY_PASSWORD": password})


def test_promote_copies_api_and_ops_by_digest_and_reads_them_back(registries, envs_dir):
    staging, prod = registries
    api = push_image(staging, "iosops/api", "rel-1", "api-rel-1")[0]
    ops = push_image(staging, "iosops/ops", "rel-1", "ops-rel-1")[0]
    proc = promote_cli(envs_dir, "--tag", "rel-1", "--to-env", "prod", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["from_env"], out["to_env"], out["tag"]) == ("staging", "prod", "rel-1")
    by_kind = {i["kind"]: i for i in out["images"]}
    assert by_kind["api"]["digest"] == api and by_kind["ops"]["digest"] == ops
    assert by_kind["api"]["dest"] == f"{prod}/iosops/api:rel-1" and by_kind["api"]["action"] == "copied"
    assert by_kind["api"]["blobs_copied"] == 3 and by_kind["api"]["bytes_copied"] > 0
    # the prod registry (behind auth) now serves the very same digests
    auth = (PROD_USER, PROD_PASSWORD)
    assert registry_digest(prod, "iosops/api", "rel-1", auth) == api
    assert registry_digest(prod, "iosops/ops", "rel-1", auth) == ops
    assert PROD_PASSWORD not in proc.stdout + proc.stderr
    # a re-run is "no change", and says so
    again = promote_cli(envs_dir, "--tag", "rel-1", "--to-env", "prod")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"no change: {prod}/iosops/ops:rel-1 is already {ops}",
                                         f"no change: {prod}/iosops/api:rel-1 is already {api}",
                                         "rel-1 is already in prod's registry with the same digests: nothing to do"]


def test_a_multi_platform_index_keeps_its_digest_and_children(registries, envs_dir):
    staging, prod = registries
    index = push_index(staging, "iosops/api", "rel-2", "api")
    ops = push_image(staging, "iosops/ops", "rel-2", "ops-rel-2")[0]
    proc = promote_cli(envs_dir, "--tag", "rel-2", "--to-env", "prod")
    assert proc.returncode == 0, proc.stderr
    auth = (PROD_USER, PROD_PASSWORD)
    assert registry_digest(prod, "iosops/api", "rel-2", auth) == index
    assert registry_digest(prod, "iosops/ops", "rel-2", auth) == ops
    children = json.loads(requests.get(f"http://{prod}/v2/iosops/api/manifests/rel-2", auth=auth, timeout=10,
                                       headers={"Accept": pr.ACCEPT}).content)["manifests"]
    assert all(registry_digest(prod, "iosops/api", c["digest"], auth) == c["digest"] for c in children)


def test_dry_run_reads_both_registries_and_copies_nothing(registries, envs_dir):
    staging, prod = registries
    api = push_image(staging, "iosops/api", "rel-3", "api-rel-3")[0]
    push_image(staging, "iosops/ops", "rel-3", "ops-rel-3")
    proc = promote_cli(envs_dir, "--tag", "rel-3", "--to-env", "prod", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    plan = out["plan"]
    assert sum(p.startswith("registry copy blob sha256:") for p in plan) == 6  # 3 blobs x 2 images
    assert f"registry PUT manifest {prod}/iosops/api:rel-3 ({api}, {pr.DOCKER_MANIFEST})" in plan
    assert plan[-1] == f"registry verify {prod}/iosops/api:rel-3 is {api}"
    assert registry_digest(prod, "iosops/api", "rel-3", (PROD_USER, PROD_PASSWORD)) is None


def test_a_tag_that_holds_another_image_in_prod_is_never_overwritten(registries, envs_dir):
    staging, prod = registries
    auth = (PROD_USER, PROD_PASSWORD)
    push_image(staging, "iosops/api", "rel-4", "api-rel-4")
    push_image(staging, "iosops/ops", "rel-4", "ops-rel-4")
    other = push_image(prod, "iosops/api", "rel-4", "something-else", auth=auth)[0]
    proc = promote_cli(envs_dir, "--tag", "rel-4", "--to-env", "prod")
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{prod}/iosops/api:rel-4 already exists as {other}" in lines[0]
    assert "never overwritten; nothing was copied" in lines[0]
    # looked before acting: not even the ops image (checked first, absent in prod) was copied
    assert registry_digest(prod, "iosops/ops", "rel-4", auth) is None
    assert registry_digest(prod, "iosops/api", "rel-4", auth) == other


def test_missing_release_and_wrong_password_are_one_line_exit_2(registries, envs_dir):
    staging, _ = registries
    proc = promote_cli(envs_dir, "--tag", "never-built", "--to-env", "prod")
    assert proc.returncode == 2 and "iosops/ops:never-built does not exist" in proc.stderr, proc.stderr
    push_image(staging, "iosops/api", "rel-5", "api-rel-5")
    push_image(staging, "iosops/ops", "rel-5", "ops-rel-5")
    wrong = "wrong-sentinel-pw-0815"  # pragma: allowlist secret - a test sentinel
    proc = promote_cli(envs_dir, "--tag", "rel-5", "--to-env", "prod", password=wrong)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "refused prod.build.registry_username/registry_password (HTTP 401)" in lines[0]
    assert wrong not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


def test_a_digest_mismatch_on_read_back_fails_the_run(registries, envs_dir, monkeypatch):
    """The verification is real: a destination that answers another digest than the source's fails."""
    from iosops.config import load_env
    from iosops.errors import OperationFailed
    from iosops.runner import Runner

    staging, prod = registries
    push_image(staging, "iosops/api", "rel-6", "api-rel-6")
    push_image(staging, "iosops/ops", "rel-6", "ops-rel-6")
    monkeypatch.setenv("IOSOPS_ENVS_DIR", str(envs_dir))
    monkeypatch.setenv("IOS_PROD_REGISTRY_PASSWORD", PROD_PASSWORD)
    src, dst = load_env("staging"), load_env("prod")
    real = pr.Registry.manifest_digest
    calls = {"n": 0}

    def lying(self, repo, reference, scope=""):
        calls["n"] += 1
        got = real(self, repo, reference, scope)
        return "sha256:" + "f" * 64 if self.host == prod and calls["n"] > 2 else got  # after the look phase

    monkeypatch.setattr(pr.Registry, "manifest_digest", lying)
    with pytest.raises(OperationFailed, match="digest mismatch after the copy"):
        pr.promote(src, dst, Runner(say=lambda _line: None), "rel-6")


def test_a_release_the_docker_engine_pushed_is_promoted_and_pulls_as_the_same_image(api_image, docker_api,
                                                                                    registries, envs_dir):
    """The real thing end to end: the API and ops images `inv build` made, pushed by the engine into
    staging, promoted, then pulled from prod (with its credentials) as the very same image."""
    staging, prod = registries
    tag, auth = api_image.tag, {"username": PROD_USER, "password": PROD_PASSWORD}
    repos = [img.rsplit(":", 1)[0] for img in (api_image.image, api_image.ops_image)]
    for local, repo in zip((api_image.image, api_image.ops_image), repos, strict=True):
        docker_api.tag(local, f"{staging}/{repo}", tag)
        try:
            for chunk in docker_api.push(f"{staging}/{repo}", tag=tag, stream=True, decode=True):
                assert "error" not in chunk, chunk
        finally:
            docker_api.remove_image(f"{staging}/{repo}:{tag}", noprune=True)
    proc = promote_cli(envs_dir, "--tag", tag, "--to-env", "prod", "--json")
    assert proc.returncode == 0, proc.stderr
    for repo in repos:
        assert registry_digest(prod, repo, tag, (PROD_USER, PROD_PASSWORD)) == registry_digest(staging, repo, tag)
    pulled = f"{prod}/{repos[0]}:{tag}"
    docker_api.pull(f"{prod}/{repos[0]}", tag=tag, auth_config=auth)
    try:
        assert docker_api.inspect_image(pulled)["Id"] == api_image.image_id
    finally:
        docker_api.remove_image(pulled, noprune=True)


@pytest.mark.parametrize("host,url", [("127.0.0.1:5000", "http://127.0.0.1:5000"), ("localhost:5000", "http://localhost:5000"),
                                      ("registry.ios.internal", "https://registry.ios.internal"),
                                      ("registry.staging.ios.internal:5000", "https://registry.staging.ios.internal:5000"),
                                      ("[::1]:5000", "http://[::1]:5000")])
def test_loopback_registries_are_plain_http_others_https(host, url):
    assert pr.registry_url(host) == url


def test_bearer_challenge_is_parsed():
    assert pr.parse_challenge('Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"') == (
        "bearer", {"realm": "https://auth.example/token", "service": "reg", "scope": "repository:a/b:pull"})
