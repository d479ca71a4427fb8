"""Docker SDK access: one client per run, a clear bad-input error when the engine is unreachable, and
a streaming build that turns the SDK's progress into lines (and its errors into OperationFailed)."""
from __future__ import annotations

import re
import time
from typing import Any, Callable, Optional

from .errors import BadInput, OperationFailed
from .secretref import redact

_clients: dict[str, Any] = {}


def client(host: str, timeout: int = 300):
    """docker.DockerClient for `host`, checked with a ping (cached per process)."""
    if host in _clients:
        return _clients[host]
    import docker
    from docker.errors import DockerException

    try:
        c = docker.DockerClient(base_url=host, timeout=timeout)
        c.ping()
    except (DockerException, OSError) as exc:
        raise BadInput(f"Docker engine unreachable at {host} ({type(exc).__name__}); start it with "
                       "`sudo scripts/bootstrap.sh` (starts dockerd) or point docker.host / "
                       "IOSOPS_DOCKER__HOST at a running engine") from None
    _clients[host] = c
    return c


STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)")


def stream_build(api, say: Callable[[str], None], *, verbose: bool = False, **kwargs: Any) -> str:
    """Run api.build(decode=True, ...) and stream progress. Returns the image id."""
    image_id: Optional[str] = None
    last_lines: list[str] = []
    start = time.monotonic()
    for chunk in api.build(decode=True, **kwargs):
        if "error" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            context = " | ".join(x.strip() for x in last_lines[-3:] if x.strip())
            raise OperationFailed(f"image build failed: {redact(detail.strip())}"
                                  + (f" (last output: {redact(context)[:300]})" if context else ""))
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
        text = chunk.get("stream", "")
        for line in text.splitlines():
            m = STEP.match(line)
            if m:
                say(f"  [{m.group(1)}/{m.group(2)} {time.monotonic() - start:5.1f}s] {redact(m.group(3))[:110]}")
            elif line.strip():
                last_lines.append(line)
                if verbose:
                    say("      " + redact(line))
            found = re.match(r"^Successfully built ([0-9a-f]+)", line)
            if found and not image_id:
                image_id = found.group(1)
    if not image_id:
        raise OperationFailed("image build ended without an image id; rerun with --verbose to see the output")
    return image_id


def image_size_mb(api, ref: str) -> float:
    return api.inspect_image(ref)["Size"] / 1e6


def read_image_file(api, image: str, path: str, labels: Optional[dict] = None) -> bytes:
    """One file of an image, without running it: create a container (never started), copy the file out,
    remove the container. Works for every image, whatever its entrypoint or user."""
    import io
    import tarfile

    from docker.errors import NotFound

    cid = api.create_container(image, command=["true"], labels=labels or {})["Id"]
    try:
        try:
            stream, _ = api.get_archive(cid, path)
        except NotFound:
            raise OperationFailed(f"{image}: no {path} in the image") from None
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.getmembers()[0]
            fh = tar.extractfile(member)
            if fh is None:
                raise OperationFailed(f"{image}: {path} is not a regular file")
            return fh.read()
    finally:
        api.remove_container(cid, force=True)
