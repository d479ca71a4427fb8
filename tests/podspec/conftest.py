"""The pod-spec run's machinery: podman (rootful, its own storage root per run), the rendered staging overlay
translated by iosops/k8s/podspec.py, random secrets, moto S3 on the podman network's gateway.

Own storage root (`--root/--runroot` under the run's directory): the run's pods, secrets, volumes and
loaded images can collide with nothing else on the machine (the pods keep the overlay's names, which the
Service DNS names need), and nothing outside it is touched. Only the network lives in podman's global
config (netavark allocates bridges there): it gets the run's unique name. Everything is removed by the
names this run gave it.
"""
from __future__ import annotations

import json
import os
import secrets as pysecrets
import shutil
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from iosops.config import load_env
from iosops.k8s import podspec
from iosops.k8s.render import render
from iosops.runner import Runner
from tests.integration.conftest import api_image, build_cas, docker_api, offline_images  # noqa: F401  pytest fixtures, re-exported for this tier

HERE = Path(__file__).resolve().parent
PODMAN = shutil.which("podman") or "/usr/bin/podman"
DOCKER = "/usr/bin/docker"
ES_IMAGE = "docker.elastic.co/elasticsearch/elasticsearch"  # no registry here: its StatefulSet cannot run
PLAY_TIMEOUT_S = 180


class Podman:
    def __init__(self, base: Path):
        self.base = base
        self.env = {**os.environ, "CONTAINERS_CONF": str(HERE / "containers.conf"), "TMPDIR": str(base / "tmp")}

    def argv(self, *args: str) -> list[str]:
        return [PODMAN, "--root", str(self.base / "root"), "--runroot", str(self.base / "runroot"), *args]

    def run(self, *args: str, check: bool = True, timeout: float = 300, stdin=None,
            data: bytes | None = None) -> subprocess.CompletedProcess:
        binary = stdin is not None or data is not None
        res = subprocess.run(self.argv(*args), capture_output=True, text=not binary, env=self.env, timeout=timeout,
                             stdin=stdin, input=data)
        if check and res.returncode != 0:
            err = res.stderr if isinstance(res.stderr, str) else res.stderr.decode(errors="replace")
            raise AssertionError(f"podman {' '.join(args[:3])} exited {res.returncode}: {err[-1500:]}")
        return res

    def json(self, *args: str):
        return json.loads(self.run(*args).stdout or "null")


def retry(seconds: float, every: float = 1.0) -> Retrying:
    return Retrying(stop=stop_after_delay(seconds), wait=wait_fixed(every), reraise=True,
                    retry=retry_if_exception_type(AssertionError))


@dataclass
class Run:
    prefix: str
    base: Path
    podman: Podman
    network: str
    gateway: str
    moto_url: str
    tr: podspec.Translation
    values: dict[tuple[str, str], str]
    objects: list[dict]
    bucket: str
    s3_keys: tuple[str, str]
    pods: list[str] = field(default_factory=list)

    def containers(self) -> list[dict]:
        return self.podman.json("ps", "--all", "--pod", "--format", "json")

    def container(self, pod: str, name: str) -> dict:
        found = [c for c in self.containers() if c.get("PodName") == pod and not c.get("IsInfra")
                 and c["Names"][0].endswith(f"-{name}")]
        assert len(found) == 1, f"container {name} of pod {pod}: {[c['Names'] for c in found]}"
        return found[0]

    def pod_ip(self, pod: str) -> str:
        infra = self.podman.json("pod", "inspect", pod)["InfraContainerID"]
        nets = self.podman.json("inspect", infra)[0]["NetworkSettings"]["Networks"]
        return nets[self.network]["IPAddress"]

    def log_tail(self, container: str, chars: int = 1500) -> str:
        """The container's last output, with every secret value of this run redacted."""
        res = self.podman.run("logs", container, check=False)
        text = (res.stdout + res.stderr)[-chars:]
        for value in self.values.values():
            text = text.replace(value, "***")
        return text

    def exec(self, container: str, *argv: str, check: bool = False) -> subprocess.CompletedProcess:
        return self.podman.run("exec", container, *argv, check=check, timeout=60)


def free_port_on(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def es_standin(image: str) -> dict:
    """A FAKE Elasticsearch (no Elasticsearch exists here): answers GET /_cluster/health green, under the same
    restricted securityContext as the real pods, so the API's /ready (which checks ELASTICSEARCH_URL) can
    pass. It proves nothing about the Elasticsearch StatefulSet, which is skipped."""
    script = ("import http.server,json\n"
              "class H(http.server.BaseHTTPRequestHandler):\n"
              "  def do_GET(self):\n"
              "    ok=self.path.startswith('/_cluster/health'); b=json.dumps({'status':'green'} if ok else {}).encode()\n"
              "    self.send_response(200 if ok else 404); self.send_header('Content-Length',str(len(b))); self.end_headers(); self.wfile.write(b)\n"
              "  def log_message(self,*a): pass\n"
              "http.server.ThreadingHTTPServer(('0.0.0.0',9200),H).serve_forever()\n")
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "ios-elasticsearch", "labels": {"iosops.io/podspec": "fake-elasticsearch"}},
            "spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001},
                     "containers": [{"name": "fake-elasticsearch", "image": image, "imagePullPolicy": "IfNotPresent",
                                     "command": ["python", "-c", script],
                                     "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                                         "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}}]}}


def unobtainable(obj: dict) -> str:
    """Why a workload cannot run here: Elasticsearch's image is in no reachable registry or package."""
    pod = (obj["spec"].get("template") or obj["spec"]["jobTemplate"]["spec"]["template"])["spec"]
    if any(c["image"].startswith(ES_IMAGE) for c in pod["containers"]):
        return "its image is not obtainable here (no registry, no Debian package); a FAKE stands in for the API's /ready"
    return ""


def start_moto(address: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", address, "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://{address}:{port}"
    for attempt in retry(20, 0.2):
        with attempt:
            try:
                requests.get(url, timeout=0.5)
            except requests.RequestException as exc:
                raise AssertionError(f"moto_server at {url} does not answer: {exc}") from None
    return proc


def load_images(pm: Podman, images: dict[str, str]) -> list[str]:
    """docker save | podman load for every image the translation names (its local name minus `localhost/`)."""
    loaded = []
    for local in sorted(set(images.values())):
        src = local.removeprefix("localhost/")
        save = subprocess.Popen([DOCKER, "save", src], stdout=subprocess.PIPE)
        try:
            pm.run("load", "--quiet", stdin=save.stdout, timeout=600)
        finally:
            save.stdout.close()
            assert save.wait(600) == 0, f"docker save {src} failed"
        loaded.append(local)
    return loaded


@pytest.fixture(scope="module")
def podspec_run(api_image, tmp_path_factory):  # noqa: F811  the imported fixture, injected by name
    import boto3

    assert Path(PODMAN).exists(), "podman is not installed: run scripts/bootstrap.sh"
    prefix = f"iosops-podspec-{uuid.uuid4().hex[:8]}"
    base = Path("/var/tmp") / prefix  # not /tmp: podman's overlay storage wants a real disk
    (base / "tmp").mkdir(parents=True, mode=0o700)
    pm = Podman(base)
    network = prefix
    moto = None
    played: list[Path] = []
    secret_names: list[str] = []
    loaded: list[str] = []
    net_created = False
    objects: list[dict] = []
    try:
        pm.run("network", "create", "--label", f"iosops.podspec={prefix}", network)
        net_created = True
        gateway = pm.json("network", "inspect", network)[0]["subnets"][0]["gateway"]
        moto_port = free_port_on("127.0.0.1")  # the bridge has no address until its first pod: checked here
        moto_url = f"http://{gateway}:{moto_port}"
        s3_keys = (f"podspec-{pysecrets.token_hex(6)}", pysecrets.token_urlsafe(24))
        bucket = "ios-staging-backups"
        # The staging overlay exactly as `inv k8s.render` makes it; the only config input changed is the
        # backup store's endpoint (moto on this network's gateway), which lands in ConfigMap ios-ops-config.
        env = load_env("staging", environ={}, overrides={"backup": {"store": {"endpoint_url": moto_url}}})
        tag = api_image.image.rsplit(":", 1)[1]
        objects = render(env, Runner(), tag).objects
        tr = podspec.translate(objects, str(base / "dirs"), skip=unobtainable)

        values = {sk: pysecrets.token_urlsafe(24) for sk in tr.secrets}
        values.update({(s, k): s3_keys[0] for s, k in tr.secrets if k == "s3-access-key-id"})
        values.update({(s, k): s3_keys[1] for s, k in tr.secrets if k == "s3-secret-access-key"})
        podspec.materialize(tr, lambda s, k: values[(s, k)])
        for name in sorted({s for s, _ in tr.secrets}):  # for secretKeyRef env (podman's own secrets)
            payload = podspec.podman_secret_json({k: v for (s, k), v in values.items() if s == name})
            pm.run("secret", "create", name, "-", data=payload)
            secret_names.append(name)

        loaded = load_images(pm, tr.images)
        # The FAKE Elasticsearch first: netavark makes the bridge (and its gateway address, where moto
        # listens) with the network's first pod.
        fake = base / "fake-elasticsearch.yaml"
        fake.write_text(podspec.dump([es_standin(next(v for k, v in tr.images.items() if "/iosops/ops:" in k))]))
        played.append(fake)
        pm.run("kube", "play", "--network", network, str(fake), timeout=PLAY_TIMEOUT_S)
        moto = start_moto(gateway, moto_port)
        boto3.client("s3", endpoint_url=moto_url, region_name="eu-central-1", aws_access_key_id=s3_keys[0],
                     aws_secret_access_key=s3_keys[1]).create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        play = base / "play.yaml"
        play.write_text(podspec.dump(tr.play))
        played.append(play)
        pm.run("kube", "play", "--network", network, str(play), timeout=PLAY_TIMEOUT_S)
        run = Run(prefix, base, pm, network, gateway, moto_url, tr, values, objects, bucket, s3_keys,
                  pods=tr.pod_names())
        yield run
    finally:
        for f in reversed(played + sorted(base.glob("job-*.yaml"))):
            pm.run("kube", "down", str(f), check=False)
        for name in secret_names:
            pm.run("secret", "rm", name, check=False)
        if (base / "root").exists():
            for name in [o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"]:  # kube play makes a volume per ConfigMap volume, named after it
                pm.run("volume", "rm", "--force", name, check=False)
            for image in loaded:
                pm.run("rmi", image, check=False)
        if net_created:
            pm.run("network", "rm", "--force", network, check=False)
        if moto is not None:
            moto.terminate()
            moto.wait(10)
        with open("/proc/mounts") as fh:  # nothing of this run may still be mounted before its dir goes
            mounts = [line.split()[1] for line in fh if line.split()[1].startswith(str(base))]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", m], check=False)
        shutil.rmtree(base, ignore_errors=True)
