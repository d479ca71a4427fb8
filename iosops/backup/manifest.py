"""The recovery point's manifest: the ONLY thing that makes a backup visible. Written last."""
from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import Any, Optional

from pydantic import BaseModel

BACKUPS = "backups"
WAL = "wal"
MANIFEST = "manifest.json"
FORMAT = 1


class Artifact(BaseModel):
    component: str  # postgres | redis | elasticsearch
    kind: str  # base-tar | rdb | snapshot | logical-dump
    key: str
    size: int = 0  # bytes stored (after compression/encryption)
    sha256: str = ""  # of the stored bytes
    compression: Optional[str] = "zstd"
    encryption: Optional[str] = None  # "age" or None


class PostgresInfo(BaseModel):
    start_lsn: str = ""
    stop_lsn: str = ""
    timeline: int = 0
    start_wal: str = ""  # first WAL segment this base backup needs
    server_version: str = ""


class Manifest(BaseModel):
    format: int = FORMAT
    id: str
    env: str
    started_at: str
    completed_at: str = ""
    components: list[str] = []
    artifacts: list[Artifact] = []
    fingerprints: dict[str, Any] = {}
    postgres: Optional[PostgresInfo] = None
    tool_versions: dict[str, str] = {}
    duration_s: float = 0.0
    verified_at: str = ""
    verified_ok: Optional[bool] = None

    @property
    def started(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.started_at)

    @property
    def completed(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.completed_at)

    def total_size(self) -> int:
        return sum(a.size for a in self.artifacts)

    def dumps(self) -> bytes:
        return json.dumps(self.model_dump(), indent=2, sort_keys=True).encode()


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_id(at: dt.datetime) -> str:
    """Sortable by time, unique across hosts: 20261127T214501Z-3f9a."""
    return at.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def manifest_key(backup_id: str) -> str:
    return f"{BACKUPS}/{backup_id}/{MANIFEST}"


def artifact_key(backup_id: str, name: str) -> str:
    return f"{BACKUPS}/{backup_id}/{name}"


def verify_key(backup_id: str) -> str:
    return f"{BACKUPS}/{backup_id}/verify.json"


def load(store, backup_id: str) -> Manifest:
    return Manifest.model_validate_json(store.get_bytes(manifest_key(backup_id)))


def list_ids(store) -> tuple[list[str], list[str]]:
    """(complete ids with a manifest, incomplete ids without one), oldest first."""
    seen: dict[str, bool] = {}
    for obj in store.list(BACKUPS + "/"):
        parts = obj.key.split("/")
        if len(parts) >= 3:
            seen[parts[1]] = seen.get(parts[1], False) or parts[2] == MANIFEST
    complete = sorted(k for k, v in seen.items() if v)
    incomplete = sorted(k for k, v in seen.items() if not v)
    return complete, incomplete
