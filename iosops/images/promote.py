"""`inv images.promote`: put the release one env tested into another env's registry, as the very same bytes.

A release is the API image and the ops image of one tag (build.repository, build.ops_repository). Both are
copied registry to registry over the Distribution/OCI HTTP API, like `skopeo copy`: every blob and every
manifest is moved byte for byte, so the destination's digest is the source's digest by construction
(`docker pull`/`tag`/`push` re-compresses layers on push and may produce another digest). Then each tag
is read back from the destination and its digest compared with the source's; a mismatch fails the run.

Look, then act: both images are read first (source manifests, the destination's current digest, which
blobs it already has); a destination tag holding another digest is refused before anything is copied (a
tag names one release, it is never overwritten); a destination already holding the same digest is "no
change". Blobs of both images go first (invisible without a manifest), then the ops manifest, then the
API manifest, so a release never appears in the destination without its blobs.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Optional
from urllib.parse import urljoin

from ..config import Env
from ..errors import BadInput, OperationFailed
from ..runner import Runner
from ..secretref import Secret
from .image import TAG_RE

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEXES = (DOCKER_LIST, OCI_INDEX)
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK = 1 << 20
SPOOL = 32 << 20  # blobs up to this size stay in memory on their way through


# -- pure helpers ----------------------------------------------------------------------------------------
def registry_url(host: str) -> str:
    """https, except for loopback registries (Docker's own rule: localhost and 127.0.0.0/8 may be plain HTTP)."""
    name = host[1:host.index("]")] if host.startswith("[") else host.split(":")[0] if host.count(":") == 1 else host
    try:
        loopback = ipaddress.ip_address(name).is_loopback
    except ValueError:
        loopback = name == "localhost"
    return f"{'http' if loopback else 'https'}://{host}"


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="https://auth/token",service="reg",scope="repository:a:pull"` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blobs_of(manifest: dict) -> list[dict]:
    """The blobs an image manifest needs: its config and layers (foreign layers with `urls` are not stored)."""
    return [d for d in [manifest.get("config"), *manifest.get("layers", [])] if d and not d.get("urls")]


def refuse_overwrite(dest_ref: str, dest_digest: Optional[str], source_digest: str) -> bool:
    """True when DEST already is the release (no change); raises when the tag holds another image."""
    if dest_digest is None:
        return False
    if dest_digest == source_digest:
        return True
    raise OperationFailed(f"{dest_ref} already exists as {dest_digest}, not {source_digest}: a tag names one release "
                          "and is never overwritten; nothing was copied. Build and promote a new tag")


# -- the registry client ---------------------------------------------------------------------------------
class Registry:
    """Just enough of the Distribution v2 API to copy by digest: Basic and Bearer-token auth, manifests,
    blob HEAD/GET and monolithic blob upload. The password is a Secret; it only goes into auth headers."""

    def __init__(self, host: str, username: str = "", password: Optional[Secret] = None, *, env_name: str = "",
                 timeout: float = 30.0):
        import requests

        self.host, self.base, self.env_name, self.timeout = host, registry_url(host), env_name, timeout
        self.username, self.password = username, password
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "iosops-promote"
        self._auth: dict[str, str] = {}  # scope -> Authorization header value

    def _creds(self) -> Optional[tuple[str, str]]:
        return (self.username, self.password.get()) if self.password is not None else None

    def _token(self, params: dict[str, str], scope: str) -> str:
        query: dict[str, Any] = {"service": params["service"]} if params.get("service") else {}
        # our scope (pull,push on the destination), plus the challenge's when it names another: a token for
        # the challenge's `pull` alone would fail the later PUTs
        query["scope"] = [scope] + ([params["scope"]] if params.get("scope") not in (None, "", scope) else [])
        resp = self._send("GET", params["realm"], params=query, auth=self._creds(), authorize=False)
        if resp.status_code in (401, 403):
            raise self._refused(resp.status_code)
        if not resp.ok:
            raise OperationFailed(f"registry {self.host}: token endpoint answered HTTP {resp.status_code}")
        body = resp.json()
        return body.get("token") or body.get("access_token") or ""

    def _refused(self, status: int) -> BadInput:
        who = f"{self.env_name}.build.registry_username/registry_password" if self.env_name else "the credentials"
        return BadInput(f"registry {self.host} refused {who} (HTTP {status}): check the user and its password "
                        "reference (and that the user may pull, or push for the destination)")

    def _send(self, method: str, url: str, *, authorize: bool = True, scope: str = "", **kwargs: Any):
        import requests

        headers = dict(kwargs.pop("headers", None) or {})
        if authorize and scope in self._auth:
            headers["Authorization"] = self._auth[scope]
        try:
            return self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise OperationFailed(f"registry {self.host} unreachable ({type(exc).__name__}): check the address in "
                                  f"{self.env_name or 'the env'}'s build.registry and the network") from None

    def request(self, method: str, path: str, scope: str, *, ok: tuple[int, ...] = (200,),
                allow: tuple[int, ...] = (), **kwargs: Any):
        """One call, authenticating on a 401 challenge (Basic or Bearer) and retrying once."""
        url = path if path.startswith(("http://", "https://")) else f"{self.base}{path}"
        data = kwargs.get("data")
        resp = self._send(method, url, scope=scope, **kwargs)
        if resp.status_code == 401 and scope not in self._auth:
            scheme, params = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            if scheme == "basic":
                creds = self._creds()
                if creds is None:
                    raise self._refused(401)
                self._auth[scope] = "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            elif scheme == "bearer" and params.get("realm"):
                self._auth[scope] = f"Bearer {self._token(params, scope)}"
            else:
                raise self._refused(401)
            if hasattr(data, "seek"):
                data.seek(0)
            resp = self._send(method, url, scope=scope, **kwargs)
        if resp.status_code in (401, 403):
            raise self._refused(resp.status_code)
        if resp.status_code not in ok + allow:
            detail = resp.text.strip().replace("\n", " ")[:200]
            raise OperationFailed(f"registry {self.host}: {method} {path} answered HTTP {resp.status_code}: {detail}")
        return resp

    # -- manifests ---------------------------------------------------------------------------------------
    def manifest(self, repo: str, reference: str) -> Optional[tuple[bytes, str, str]]:
        """(raw bytes, media type, digest) of REPO:REFERENCE, or None when the registry has no such manifest."""
        resp = self.request("GET", f"/v2/{repo}/manifests/{reference}", f"repository:{repo}:pull",
                            allow=(404,), headers={"Accept": ACCEPT})
        if resp.status_code == 404:
            return None
        raw = resp.content
        digest = sha256_digest(raw)
        said = resp.headers.get("Docker-Content-Digest")
        if (said and said != digest) or (DIGEST_RE.match(reference) and reference != digest):
            raise OperationFailed(f"registry {self.host}: {repo}@{reference} does not hash to its digest "
                                  f"({digest}); refusing to copy a corrupted manifest")
        media = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return raw, (media or _media_type(raw)), digest

    def manifest_digest(self, repo: str, reference: str, scope: str = "") -> Optional[str]:
        """The digest REPO:REFERENCE resolves to here (HEAD, falling back to GET), or None."""
        scope = scope or f"repository:{repo}:pull"
        resp = self.request("HEAD", f"/v2/{repo}/manifests/{reference}", scope, allow=(404,),
                            headers={"Accept": ACCEPT})
        if resp.status_code == 404:
            return None
        said = resp.headers.get("Docker-Content-Digest")
        if said:
            return said
        got = self.request("GET", f"/v2/{repo}/manifests/{reference}", scope, headers={"Accept": ACCEPT})
        return sha256_digest(got.content)

    def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> str:
        resp = self.request("PUT", f"/v2/{repo}/manifests/{reference}", f"repository:{repo}:pull,push", ok=(201,),
                            data=raw, headers={"Content-Type": media_type})
        return resp.headers.get("Docker-Content-Digest") or sha256_digest(raw)

    # -- blobs -------------------------------------------------------------------------------------------
    def has_blob(self, repo: str, digest: str, scope: str = "") -> bool:
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope or f"repository:{repo}:pull", allow=(404,))
        return resp.status_code == 200

    def fetch_blob(self, repo: str, digest: str) -> tuple[IO[bytes], int]:
        """The blob in a spooled temp file (rewound), checked against its digest on the way in."""
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", f"repository:{repo}:pull", stream=True)
        out = tempfile.SpooledTemporaryFile(max_size=SPOOL)  # the caller closes it
        h, size = hashlib.sha256(), 0
        try:
            for chunk in resp.iter_content(CHUNK):
                h.update(chunk)
                size += len(chunk)
                out.write(chunk)
        except Exception:
            out.close()
            raise OperationFailed(f"registry {self.host}: reading blob {digest} of {repo} broke off") from None
        if "sha256:" + h.hexdigest() != digest:
            out.close()
            raise OperationFailed(f"registry {self.host}: blob {digest} of {repo} does not hash to its digest; "
                                  "refusing to copy it")
        out.seek(0)
        return out, size

    def upload_blob(self, repo: str, digest: str, data: IO[bytes], size: int) -> None:
        scope = f"repository:{repo}:pull,push"
        start = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope, ok=(202,))
        location = urljoin(self.base + "/", start.headers.get("Location", ""))
        sep = "&" if "?" in location else "?"
        self.request("PUT", f"{location}{sep}digest={digest}", scope, ok=(201,), data=data,
                     headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})


def _media_type(raw: bytes) -> str:
    try:
        return json.loads(raw).get("mediaType", "") or OCI_MANIFEST
    except ValueError:
        return OCI_MANIFEST


# -- what a release is, and how it is copied -------------------------------------------------------------
@dataclass
class ManifestCopy:
    """One manifest to put at the destination (children of an index by digest, the image by tag)."""

    reference: str
    raw: bytes
    media_type: str
    digest: str


@dataclass
class ImageCopy:
    kind: str  # api | ops
    source: str  # registry/repo:tag
    dest: str
    source_repo: str
    dest_repo: str
    digest: str = ""
    media_type: str = ""
    action: str = ""  # copied | unchanged | planned
    blobs: list[dict] = field(default_factory=list)  # {digest, size} the destination lacks
    blobs_present: int = 0
    bytes_copied: int = 0
    manifests: list[ManifestCopy] = field(default_factory=list)  # children first, the tagged one last

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("manifests")
        d["blobs_copied"] = len(d.pop("blobs")) if self.action == "copied" else 0
        return d


@dataclass
class PromoteResult:
    tag: str
    from_env: str
    to_env: str
    images: list[ImageCopy]
    seconds: float = 0.0
    dry_run: bool = False

    def as_dict(self) -> dict:
        return {"tag": self.tag, "from_env": self.from_env, "to_env": self.to_env, "seconds": self.seconds,
                "dry_run": self.dry_run, "images": [i.as_dict() for i in self.images]}


def check_request(tag: str, to_env: str, from_env: str) -> None:
    """The flags alone, before any env is locked or registry asked."""
    usage = "inv images.promote --tag T --to-env prod [--from-env staging]"
    if not tag:
        raise BadInput(f"--tag is required (the release `inv build --push` made): {usage}")
    if not TAG_RE.match(tag):
        raise BadInput(f"--tag {tag!r} is not a valid image tag (letters, digits, _ . -; max 128, "
                       "not starting with . or -); pick another")
    if not to_env:
        raise BadInput(f"--to-env is required (the env whose registry receives the release): {usage}")
    if to_env == from_env:
        raise BadInput(f"--from-env and --to-env are both {from_env}: promotion copies between two envs")


def registry_for(env: Env, role: str) -> Registry:
    cfg = env.cfg.build
    host = cfg.registry.strip().rstrip("/")
    if not host:
        raise BadInput(f"env {env.name} has no build.registry, so it cannot be the promotion's {role}; set it in "
                       f"envs/{env.name}.yaml")
    if "/" in host:
        raise BadInput(f"env {env.name}: build.registry {host!r} has a path; promotion needs a registry host[:port] "
                       "(the repository comes from build.repository / build.ops_repository)")
    password = cfg.registry_password.reveal("build.registry_password", env.root) if cfg.registry_password else None
    return Registry(host, cfg.registry_username, password, env_name=env.name)


def _look(runner: Runner, src: Registry, dst: Registry, img: ImageCopy, tag: str) -> None:
    """Read the source image (and children of an index) and what the destination already has."""
    got = runner.call(f"registry GET manifest {img.source}", src.manifest, img.source_repo, tag, mutating=False).value
    if got is None:
        raise BadInput(f"{img.source} does not exist: promote a tag the source env's registry has "
                       "(the one `inv build --push` made)")
    raw, media, digest = got
    img.digest, img.media_type = digest, media
    current = runner.call(f"registry HEAD manifest {img.dest}", dst.manifest_digest, img.dest_repo, tag,
                          f"repository:{img.dest_repo}:pull,push", mutating=False).value
    if refuse_overwrite(img.dest, current, digest):
        img.action = "unchanged"
        return
    images = []
    if media in INDEXES:
        for child in json.loads(raw).get("manifests", []):
            c = runner.call(f"registry GET manifest {img.source_repo}@{child['digest']}", src.manifest,
                            img.source_repo, child["digest"], mutating=False).value
            if c is None:
                raise OperationFailed(f"{img.source} lists {child['digest']}, which its registry does not have")
            img.manifests.append(ManifestCopy(child["digest"], c[0], c[1], c[2]))
            images.append(json.loads(c[0]))
    else:
        images.append(json.loads(raw))
    img.manifests.append(ManifestCopy(tag, raw, media, digest))
    seen: set[str] = set()
    for manifest in images:
        for blob in blobs_of(manifest):
            if blob["digest"] in seen:
                continue
            seen.add(blob["digest"])
            present = runner.call(f"registry HEAD blob {dst.host}/{img.dest_repo}@{blob['digest']}", dst.has_blob,
                                  img.dest_repo, blob["digest"], f"repository:{img.dest_repo}:pull,push",
                                  mutating=False).value
            if present:
                img.blobs_present += 1
            else:
                img.blobs.append({"digest": blob["digest"], "size": int(blob.get("size", 0))})


def _copy_blob(src: Registry, dst: Registry, img: ImageCopy, digest: str) -> int:
    data, size = src.fetch_blob(img.source_repo, digest)
    with data:
        dst.upload_blob(img.dest_repo, digest, data, size)
    return size


def _verify(dst: Registry, img: ImageCopy, tag: str) -> None:
    got = dst.manifest_digest(img.dest_repo, tag, f"repository:{img.dest_repo}:pull,push")
    if got != img.digest:
        raise OperationFailed(f"digest mismatch after the copy: {img.dest} is {got}, {img.source} is {img.digest}; "
                              "do not deploy this tag to the destination env until a re-run verifies it")


def promote(src_env: Env, dst_env: Env, runner: Runner, tag: str) -> PromoteResult:
    """Copy the API and ops images of TAG from SRC_ENV's registry to DST_ENV's by digest; verify the digests."""
    check_request(tag, dst_env.name, src_env.name)
    src, dst = registry_for(src_env, "source"), registry_for(dst_env, "destination")
    pairs = [("ops", src_env.cfg.build.ops_repository, dst_env.cfg.build.ops_repository),
             ("api", src_env.cfg.build.repository, dst_env.cfg.build.repository)]
    if src.host == dst.host and all(s == d for _, s, d in pairs):
        raise BadInput(f"{src_env.name} and {dst_env.name} use the same registry ({src.host}) and repositories: "
                       "the release is already there, nothing to promote")
    start = time.monotonic()
    images = [ImageCopy(kind, f"{src.host}/{s}:{tag}", f"{dst.host}/{d}:{tag}", s, d) for kind, s, d in pairs]
    result = PromoteResult(tag, src_env.name, dst_env.name, images, dry_run=runner.dry_run)
    # look: both images before any change, so a refused tag leaves the destination untouched
    for img in images:
        _look(runner, src, dst, img, tag)
    todo = [i for i in images if i.action != "unchanged"]
    # act: blobs of every image first (invisible without a manifest), then manifests, ops before api
    for img in todo:
        for blob in img.blobs:
            out = runner.call(f"registry copy blob {blob['digest']} ({blob['size']} bytes) {img.source_repo} "
                              f"{src.host} -> {dst.host}", _copy_blob, src, dst, img, blob["digest"])
            img.bytes_copied += out.value or 0
    done: list[str] = []
    try:
        for img in todo:
            for m in img.manifests:
                runner.call(f"registry PUT manifest {dst.host}/{img.dest_repo}:{m.reference} ({m.digest}, "
                            f"{m.media_type})" if m.reference == tag else
                            f"registry PUT manifest {dst.host}/{img.dest_repo}@{m.digest} ({m.media_type})",
                            dst.put_manifest, img.dest_repo, m.reference, m.raw, m.media_type)
            done.append(img.dest)
    except OperationFailed as exc:
        if done:
            raise OperationFailed(f"{exc}; {', '.join(done)} promoted, the rest not: no deploy can use this tag "
                                  "in the destination env until a re-run of the same command completes it "
                                  "(it is idempotent)") from None
        raise
    # verify: read each tag back from the destination; its digest must be the source's (in a dry-run there
    # is nothing to read back yet, so the check is only planned)
    for img in todo:
        runner.call(f"registry verify {img.dest} is {img.digest}", _verify, dst, img, tag, mutating=runner.dry_run)
        img.action = "planned" if runner.dry_run else "copied"
    result.seconds = round(time.monotonic() - start, 1)
    return result


def summary(result: PromoteResult) -> list[str]:
    lines = []
    for img in result.images:
        if img.action == "unchanged":
            lines.append(f"no change: {img.dest} is already {img.digest}")
            continue
        verb = "would copy" if img.action == "planned" else "copied"
        size = sum(b["size"] for b in img.blobs)
        lines.append(f"{verb} {img.source} -> {img.dest} {img.digest}: {len(img.blobs)} blob(s) ({size} bytes), "
                     f"{img.blobs_present} already there" + ("; digest verified" if img.action == "copied" else ""))
    if all(i.action == "unchanged" for i in result.images):
        lines.append(f"{result.tag} is already in {result.to_env}'s registry with the same digests: nothing to do")
    elif not result.dry_run:
        lines.append(f"promoted {result.tag} from {result.from_env} to {result.to_env} in {result.seconds}s")
    return lines
