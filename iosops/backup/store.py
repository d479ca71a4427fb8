"""Object stores for recovery points: a local directory (embedded default) and S3 via boto3.

Both expose the same small interface over keys like `backups/<id>/postgres.base.tar.zst`:
put_stream (atomic: a key is visible only once complete), open_read, list, delete, exists, put_bytes.
S3 uses boto3's TransferManager (multipart for large objects) with botocore's standard retry mode
(bounded attempts, exponential backoff with jitter); a local write goes to a temp file then rename.
"""
from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

from ..config import Env, StoreCfg
from ..errors import BadInput, OperationFailed


@dataclass
class ObjectInfo:
    key: str
    size: int


class StoreUnavailable(OperationFailed):
    """The object store did not answer (or kept failing) after bounded retries."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs(path: Path) -> None:
    """mkdir -p, fsyncing each new directory's parent so its entry is durable (a WAL segment acknowledged
    to PostgreSQL must not vanish with its directory after a power loss)."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:  # a concurrent writer (WAL push beside a backup) made it first
            pass
        _fsync_dir(d.parent)


class LocalStore:
    def __init__(self, root: Path):
        self.root = root
        self.url = f"file://{root}"

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if not str(p).startswith(str(self.root.resolve())):
            raise BadInput(f"store key {key!r} escapes the store root")
        return p

    def put_stream(self, key: str, stream: BinaryIO) -> None:
        dest = self._path(key)
        _makedirs(dest.parent)
        tmp = dest.with_name(f".{dest.name}.partial")
        try:
            with open(tmp, "wb") as fh:
                shutil.copyfileobj(stream, fh, 1 << 20)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)  # the rename itself must survive a crash before success is reported
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        self.put_stream(key, io.BytesIO(data))

    def open_read(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise OperationFailed(f"object {key} is missing from {self.url}") from None

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as fh:
            return fh.read()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self.root / prefix
        if not base.exists():
            return
        for p in sorted(base.rglob("*")):
            try:
                if p.is_file():
                    yield ObjectInfo(p.relative_to(self.root).as_posix(), p.stat().st_size)
            except FileNotFoundError:
                continue  # renamed or deleted by a concurrent writer (WAL archiving's .partial) since the listing

    def delete(self, key: str) -> None:
        p = self._path(key)
        p.unlink(missing_ok=True)
        parent = p.parent
        while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


class S3Store:
    def __init__(self, cfg: StoreCfg, access_key: Optional[str], secret_key: Optional[str]):
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = cfg.bucket
        self.prefix = cfg.prefix.strip("/")
        self.url = f"s3://{cfg.bucket}/{self.prefix}" + (f" at {cfg.endpoint_url}" if cfg.endpoint_url else "")
        self.client = boto3.client(
            "s3", endpoint_url=cfg.endpoint_url or None, region_name=cfg.region,
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
            config=Config(retries={"max_attempts": cfg.max_attempts, "mode": "standard"},
                          connect_timeout=cfg.connect_timeout_s, read_timeout=60))
        chunk = cfg.multipart_chunk_mb * 1024 * 1024
        self.transfer = TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk, max_concurrency=4,
                                       use_threads=True)
        # Server-side encryption asked for on every upload (empty: the bucket's default encryption applies).
        self.sse = {"ServerSideEncryption": cfg.sse} if cfg.sse else {}
        if cfg.sse_kms_key_id:
            self.sse["SSEKMSKeyId"] = cfg.sse_kms_key_id

    def _k(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, what: str, exc: Exception) -> StoreUnavailable:
        from ..secretref import redact

        return StoreUnavailable(f"object store {self.url}: {what} failed after retries "
                                f"({type(exc).__name__}: {redact(str(exc))[:200]})")

    def put_stream(self, key: str, stream: BinaryIO) -> None:
        # Multipart uploads become visible only on CompleteMultipartUpload: atomic by construction.
        try:
            self.client.upload_fileobj(stream, self.bucket, self._k(key), ExtraArgs=self.sse or None,
                                       Config=self.transfer)
        except Exception as exc:
            if isinstance(exc, OperationFailed):
                raise
            raise self._fail(f"upload of {key}", exc) from None

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data, **self.sse)
        except Exception as exc:
            raise self._fail(f"upload of {key}", exc) from None

    def open_read(self, key: str) -> BinaryIO:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._k(key))["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise OperationFailed(f"object {key} is missing from {self.url}") from None
            raise self._fail(f"download of {key}", exc) from None
        except Exception as exc:
            raise self._fail(f"download of {key}", exc) from None

    def get_bytes(self, key: str) -> bytes:
        return self.open_read(key).read()

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._k(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._fail(f"lookup of {key}", exc) from None
        except Exception as exc:
            raise self._fail(f"lookup of {key}", exc) from None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._k(prefix))
            strip = len(self.prefix) + 1 if self.prefix else 0
            for page in pages:
                for obj in page.get("Contents", []):
                    yield ObjectInfo(obj["Key"][strip:], obj["Size"])
        except Exception as exc:
            raise self._fail("listing", exc) from None

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._k(key))
        except Exception as exc:
            raise self._fail(f"delete of {key}", exc) from None


def check_local_root(env: Env, root: Path) -> None:
    """The store path must be a directory, or not exist yet below one: a file there made listing say
    "no backups" and a backup fail midway with a traceback."""
    there = root
    while not there.exists() and there != there.parent:  # exists() is False below a file, too
        there = there.parent
    if not there.is_dir():
        where = "" if there == root else f" ({there} is not a directory)"
        raise BadInput(f"env {env.name}: backup.store.path {root} is not a directory{where}; point "
                       "backup.store.path at a directory (it is created if missing) and retry")


def local_path(env: Env) -> Path:
    """A local store's directory: backup.store.path, or <state_dir>/backups (each checkout, test run and
    drill with its own state dir gets its own store)."""
    cfg = env.cfg.backup.store
    return env.path(cfg.path) if cfg.path else env.state_dir / "backups"


def open_store(env: Env):
    cfg = env.cfg.backup.store
    if cfg.kind == "local":
        check_local_root(env, local_path(env))
        return LocalStore(local_path(env))
    if not cfg.bucket:
        raise BadInput(f"env {env.name}: backup.store.bucket is empty; set it for the s3 store")
    key = cfg.access_key_id.reveal("backup.store.access_key_id", env.root).get() if cfg.access_key_id else None
    secret = (cfg.secret_access_key.reveal("backup.store.secret_access_key", env.root).get()
              if cfg.secret_access_key else None)
    return S3Store(cfg, key, secret)
