"""Integration fixtures: a real Docker engine, the offline images, the API image, a real stack.

Everything created here carries the label iosops.test=1 and is removed by name/label at the end.
"""
import shutil
import subprocess
import uuid
from contextlib import contextmanager

import pytest

from iosops import dockerx
from iosops.config import load_env
from iosops.runner import Runner
from tests.conftest import ROOT, TEST_STATE, free_port
from tests.integration.netns_fixtures import netns_hosts  # noqa: F401 - registers the session fixture

TEST_LABELS = {"iosops.test": "1"}


@pytest.fixture(scope="session")
def docker_api():
    env = load_env("local", environ={})
    # No skip: CI must have the engine (scripts/bootstrap.sh starts it); a missing engine is a failure.
    return dockerx.client(env.cfg.docker.host).api


@pytest.fixture(scope="session")
def offline_images(docker_api):
    from iosops.images.offline import build_offline

    env = load_env("local", environ={"IOSOPS_STATE_DIR": str(TEST_STATE)})
    return build_offline(env, Runner(), ("python", "postgres", "redis", "sshd"))


@pytest.fixture(scope="session")
def build_cas():
    """The extra CA certificates the API image is built with: this machine's (build.extra_ca_dir of the local
    env, often none in CI) plus a throwaway test CA, so the build always stages one and the tests can prove
    it reached the builder stage and nothing of it the image. The test CA is made once per machine (its
    key is never kept) so the pip layer stays cached between runs."""
    from iosops.images.image import staged_ca_files

    test_ca = TEST_STATE / "build-ca" / THROWAWAY_CA
    if not test_ca.exists():
        test_ca.parent.mkdir(parents=True, exist_ok=True)
        test_ca.write_bytes(throwaway_ca_pem())
    d = TEST_STATE / "build-ca-dir"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    certs = [*staged_ca_files(load_env("local", environ={})), test_ca]
    for c in certs:
        shutil.copyfile(c, d / c.name)
    return {"dir": d, "certs": sorted(d.glob("*.crt")), "test_ca": d / THROWAWAY_CA}


THROWAWAY_CA = "iosops-throwaway-test-ca.crt"


def throwaway_ca_pem() -> bytes:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"iosops throwaway test CA {uuid.uuid4().hex[:8]}")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def api_image(offline_images, docker_api, build_cas):
    from iosops.images.image import build_image

    env = load_env("local", environ={"IOSOPS_STATE_DIR": str(TEST_STATE),
                                     "IOSOPS_BUILD__EXTRA_CA_DIR": str(build_cas["dir"])})
    tag = f"itest-{uuid.uuid4().hex[:8]}"
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        if not line.startswith("      "):  # the build's own output (verbose) is kept, not printed
            print(line)

    runner = Runner(say=say)
    result = build_image(env, runner, tag=tag, verbose=True)
    # what the build did and the step ids of its intermediate images (tests/integration/test_api_image.py)
    result.build_actions, result.build_log = [a.text for a in runner.actions], said
    yield result
    docker_api.remove_image(result.image, noprune=True)
    if result.ops_image:  # built beside it with the same tag
        docker_api.remove_image(result.ops_image, noprune=True)


@pytest.fixture(scope="session")
def stack_env():
    name = f"iosops-itest-{uuid.uuid4().hex[:6]}"
    return load_env("local", environ={"IOSOPS_STATE_DIR": str(TEST_STATE)}, overrides={
        "stack": {"name": name, "api_port": free_port(), "labels": TEST_LABELS}})


@pytest.fixture(scope="session")
def stack(stack_env, api_image):
    from iosops.stack.local import down, up

    runner = Runner()
    try:
        yield up(stack_env, runner, api_image.image)
    finally:
        down(stack_env, Runner(), volumes=True)


def docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/bin/docker", *args], capture_output=True, text=True, timeout=300)


def image_layer_hits(docker_api, image: str, needles: list[bytes], max_file_bytes: int = 5_000_000) -> list[tuple]:
    """Every file of every layer of `image` (docker save), searched for each needle: (where, needle) for
    each file holding one. Also searches the image config and history (env, labels, build args)."""
    import json
    import tarfile
    import tempfile
    from pathlib import Path

    hits: list[tuple] = []
    with tempfile.TemporaryDirectory() as tmp:
        tar_path = Path(tmp) / "image.tar"
        with open(tar_path, "wb") as fh:
            for chunk in docker_api.get_image(image):
                fh.write(chunk)
        with tarfile.open(tar_path) as outer:
            for member in outer.getmembers():
                if not member.isfile():
                    continue
                data = outer.extractfile(member).read()
                if member.name.endswith(".json"):  # config (env, labels, history), manifest
                    hits += [(member.name, n) for n in needles if n in data]
                    continue
                try:
                    layer = tarfile.open(fileobj=__import__("io").BytesIO(data))
                except tarfile.TarError:
                    hits += [(member.name, n) for n in needles if n in data]
                    continue
                with layer:
                    for f in layer.getmembers():
                        if f.isfile() and f.size < max_file_bytes:
                            content = layer.extractfile(f).read()
                            hits += [(f"{member.name}:{f.name}", n) for n in needles if n in content]
    history = json.dumps(docker_api.history(image)).encode()
    hits += [("history", n) for n in needles if n in history]
    return hits


def ops_of(api_ref: str) -> str:
    """The ops image that goes with an API image (same tag): `inv deploy` runs both."""
    return f"iosops/ops:{api_ref.rsplit(':', 1)[1]}"


def tag_release(src_api_ref: str, new_api_ref: str) -> None:
    """A test release made by retagging (or deriving) the API image gets the ops image of its source under
    the same tag, as `inv build` would have built it."""
    assert docker("tag", ops_of(src_api_ref), ops_of(new_api_ref)).returncode == 0


def remove_release(api_ref: str) -> None:
    docker("rmi", api_ref)
    docker("rmi", ops_of(api_ref))


def fault_image(api_ref: str, suffix: str = "faults") -> str:
    """An image FROM `api_ref` that serves the same app plus GET /_test/fail, which always raises
    (tests/integration/iosapi_faults.py): unhandled errors on demand, with no test hook in the shipped image.
    Labelled iosops.test=1; the caller removes it (remove_release when it was tagged as a release)."""
    import shutil
    import tempfile
    from pathlib import Path

    ref = f"{api_ref.rsplit(':', 1)[0]}:{suffix}-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as ctx:
        shutil.copy(ROOT / "tests/integration/iosapi_faults.py", Path(ctx) / "iosapi_faults.py")
        (Path(ctx) / "Dockerfile").write_text(
            f"FROM {api_ref}\nCOPY iosapi_faults.py /app/iosapi_faults.py\n"
            'CMD ["gunicorn", "--config", "/app/gunicorn.conf.py", "iosapi_faults:app"]\n')
        built = docker("build", "--force-rm", "--label", "iosops.test=1", "--tag", ref, ctx)
    assert built.returncode == 0, built.stderr[-2000:]
    return ref


@contextmanager
def deployed_stack(api_image, tmp_path_factory, prefix: str, **extra: str):
    """A compose stack deployed with `inv deploy` for one test module: its own project name, ports, state
    dir (so its own store and lock), one API replica, label iosops.test=1; removed with its volumes."""
    import shutil

    from iosops.images.offline import build_offline
    from iosops.deploy import bluegreen as bg
    from iosops.deploy.target import targets
    from tests.conftest import free_port, run_inv

    name = f"iosops-itest-{prefix}-{uuid.uuid4().hex[:6]}"
    state = tmp_path_factory.mktemp(f"{prefix}-state")
    vars_ = {"IOSOPS_STACK__NAME": name, "IOSOPS_DEPLOY__HTTP_PORT": str(free_port()),
             "IOSOPS_DEPLOY__HTTPS_PORT": str(free_port()), "IOSOPS_STACK__LABELS": '{"iosops.test": "1"}',
             "IOSOPS_STATE_DIR": str(state), "IOSOPS_DEPLOY__VERIFY_HOSTS": "false", "IOSOPS_DEPLOY__REPLICAS": "1",
             **extra}
    env = load_env("local", environ=vars_)
    build_offline(env, Runner(), ("nginx",))
    try:
        first = run_inv("deploy", "--env", "local", "--tag", api_image.image.rsplit(":", 1)[1], env=vars_)
        assert first.returncode == 0, first.stderr[-3000:]
        yield {"env": env, "vars": vars_, "https": env.cfg.deploy.https_port, "name": name, "store": state / "backups",
               "t": targets(env, Runner(say=lambda line: None))[0]}
    finally:
        bg.destroy(env, Runner(), volumes=True)
        shutil.rmtree(targets(env, Runner())[0].dir, ignore_errors=True)
