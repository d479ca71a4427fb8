"""Streaming an artifact into the store and back: source | zstd -T0 [| age -r R] -> sha256 -> store.

The sha256 and size are computed while the bytes flow (HashingReader), so no full-size temporary
copy exists anywhere; the store makes the object visible only once it is complete.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Sequence

from ..commands import compress as cz
from ..commands import host as hc
from ..config import Env
from ..errors import BadInput, OperationFailed
from ..runner import Arg, Runner
from .manifest import Artifact


class HashingReader:
    """File-like wrapper: everything read through it is hashed and counted (and shown, if asked)."""

    def __init__(self, raw: BinaryIO, on_read=None):
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0
        self.on_read = on_read

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        if self.on_read:
            self.on_read(len(data))
        return data

    def readinto(self, buf) -> int:  # boto3 may use it
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)


class CountingReader(HashingReader):
    """Counts the raw bytes the source produces (before compression)."""


def upload(env: Env, runner: Runner, store, source_argv: Sequence[Arg], key: str, *, component: str, kind: str,
           source_env=None, source_stdin: Optional[BinaryIO] = None) -> tuple[Artifact, str]:
    """Run source | zstd [| age] into store[key]. Returns the artifact and the source's stderr."""
    b = env.cfg.backup
    stages = [list(source_argv), cz.zstd_compress(b.zstd_level, b.zstd_threads)]
    if b.encryption_recipient:
        stages.append(cz.age_encrypt(b.encryption_recipient))
    art = Artifact(component=component, kind=kind, key=key, encryption="age" if b.encryption_recipient else None)

    def sink(stdout: BinaryIO) -> HashingReader:
        from rich.console import Console
        from rich.progress import DownloadColumn, Progress, SpinnerColumn, TextColumn, TransferSpeedColumn

        # A live bar on a terminal (stderr); nothing at all in logs and CI, where it would be noise.
        with Progress(SpinnerColumn(), TextColumn(f"{component} -> store"), DownloadColumn(), TransferSpeedColumn(),
                      console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("upload", total=None)
            reader = HashingReader(stdout, on_read=lambda n: bar.advance(task, n))
            store.put_stream(key, reader)
        return reader

    res = runner.stream(*stages, source=source_stdin, sink=sink, target=f"{store.url}/{key}", env=source_env)
    if res.dry_run:
        return art, ""
    reader: HashingReader = res.value
    art.size, art.sha256 = reader.size, reader.sha.hexdigest()
    return art, res.stderr


@contextmanager
def identity_file(env: Env) -> Iterator[Optional[str]]:
    """The age identity in a private 0600 file for the life of one decrypt (age reads it from a path)."""
    ref = env.cfg.backup.encryption_key
    if ref is None:
        yield None
        return
    value = ref.reveal("backup.encryption_key", env.root)
    d = tempfile.mkdtemp(prefix="iosops-age-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)  # nosec B108 # mkdtemp makes a private 0700 dir; /dev/shm keeps the key off disk
    path = Path(d) / "identity"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value.get() + "\n")
        yield str(path)
    finally:
        path.unlink(missing_ok=True)
        os.rmdir(d)


def decode_stages(art: Artifact, identity: Optional[str]) -> list[list[str]]:
    stages: list[list[str]] = []
    if art.encryption == "age":
        if not identity:
            raise BadInput(f"{art.key} is encrypted but backup.encryption_key is not set; point it at the age "
                           "identity (secret reference) and retry")
        stages.append(cz.age_decrypt(identity))
    if art.compression == "zstd":
        stages.append(cz.zstd_decompress())
    return stages


def download(env: Env, runner: Runner, store, art: Artifact, consumer_argv: Optional[Sequence[str]] = None,
             stdout_path: Optional[Path] = None, mutating: bool = True) -> str:
    """Stream store[key] -> (check sha256 as it flows) -> age -d -> zstd -d -> consumer or file.

    The checksum is compared after the stream ends; callers must treat their output as garbage when
    this raises (restore extracts into a fresh directory and discards it on failure)."""
    with identity_file(env) as ident:
        stages = decode_stages(art, ident)
        if consumer_argv:
            stages.append(list(consumer_argv))
        if not stages:
            stages = [hc.passthrough()]
        raw = None if runner.skip(mutating) else store.open_read(art.key)
        reader = HashingReader(raw) if raw is not None else None
        try:
            runner.stream(*stages, source=reader if reader else _Named(f"{store.url}/{art.key}"),
                          stdout_path=stdout_path, mutating=mutating)
        except OperationFailed:
            # A damaged object usually breaks zstd/age first: say so when the bytes prove it.
            if reader is not None:
                _check(art, _drain(reader), reader.size)
            raise
        if reader is None:
            return ""
        digest = _drain(reader)
    _check(art, digest, reader.size)
    return digest


class CorruptArtifact(OperationFailed):
    """The stored bytes are not the bytes the manifest recorded."""


def _drain(reader: HashingReader) -> str:
    while reader.read(1 << 20):  # the consumer may stop before EOF (tar); hash everything
        pass
    return reader.sha.hexdigest()


def _check(art: Artifact, digest: str, size: int) -> None:
    if digest != art.sha256 or size != art.size:
        raise CorruptArtifact(f"artifact {art.key} is corrupt: sha256 {digest[:12]}… size {size} does not "
                              f"match the manifest ({art.sha256[:12]}… size {art.size})") from None


class _Named:
    def __init__(self, name: str):
        self.name = name

    def read(self, n: int = -1) -> bytes:
        return b""
