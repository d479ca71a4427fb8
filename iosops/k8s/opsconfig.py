"""The env's config as the ops containers (backup CronJob, WAL streamer, restore/list/verify/prune Jobs)
see it: ConfigMap `ios-ops-config` holding `<env>.yaml`, mounted at /etc/iosops/envs (IOSOPS_ENVS_DIR).

Pure functions of the env's config, made at render time. Inside the cluster the datastores are the
Services of k8s/base, PostgreSQL is read by the backup role `iosops_backup`, and every secret is a
`{file: /run/secrets/iosops/<key>}` reference to a key of the Secret `ios-backup`: the ConfigMap never
holds a value, and a secret reference the ops containers do not need is left out (not rewritten).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from pydantic import BaseModel

from ..config import Env, EnvConfig
from ..secretref import SecretRef

CONFIGMAP = "ios-ops-config"
ENVS_DIR = "/etc/iosops/envs"
SECRET = "ios-backup"  # nosec B105 # pragma: allowlist secret - a Secret's name, not its value
SECRETS_DIR = "/run/secrets/iosops"
STATE_DIR = "/tmp/iosops"  # nosec B108 # an emptyDir mounted at /tmp in every ops pod (read-only root)
BACKUP_ROLE = "iosops_backup"
POSTGRES_SERVICE = "ios-postgres"
REDIS_SERVICE = "ios-redis"
ELASTICSEARCH_URL = "http://ios-elasticsearch:9200"
# The ops pods whose `ops-secrets` volume lists the keys they need (render fills the items in).
OPS_WORKLOADS = (("CronJob", "ios-backup"), ("Deployment", "ios-walstream"))
SECRET_VOLUME = "ops-secrets"  # nosec B105 # pragma: allowlist secret - a volume's name, not a value
REDIS_RDB_FETCH = f"{STATE_DIR}/redis/dump.rdb"  # the backup's fetched snapshot, removed after its upload
WALSPOOL = "/var/lib/iosops/walspool"  # the ios-walstream-spool PVC's mount
METRICS_PORT = 9898


@dataclass(frozen=True)
class OpsSecret:
    key: str  # key in Secret ios-backup = file name under /run/secrets/iosops
    source: str  # where the deploy takes the value from (an env reference), for messages
    ref: Optional[SecretRef]
    restore_only: bool = False  # needed only by verify/restore Jobs (the age identity)

    @property
    def path(self) -> str:
        return f"{SECRETS_DIR}/{self.key}"


def ops_secrets(env: Env) -> list[OpsSecret]:
    """The keys of Secret ios-backup this env's ops containers read, with their sources (pure)."""
    b = env.cfg.backup
    out = [OpsSecret("backup-password", "secrets.backup_password", env.cfg.secrets.get("backup_password"))]
    if b.store.kind == "s3" and b.store.access_key_id:
        out.append(OpsSecret("s3-access-key-id", "backup.store.access_key_id", b.store.access_key_id))
    if b.store.kind == "s3" and b.store.secret_access_key:
        out.append(OpsSecret("s3-secret-access-key", "backup.store.secret_access_key", b.store.secret_access_key))
    if b.redis.password:
        out.append(OpsSecret("redis-password", "backup.redis.password", b.redis.password))
    if b.encryption_key:
        out.append(OpsSecret("age-identity", "backup.encryption_key", b.encryption_key, restore_only=True))
    return out


def secret_items(env: Env, restore: bool = False) -> list[dict[str, str]]:
    """The `items` of an ops pod's secret volume: only what that pod needs (least privilege)."""
    return [{"key": s.key, "path": s.key} for s in ops_secrets(env) if restore or not s.restore_only]


def _drop_secret_refs(model: BaseModel) -> None:
    """Every SecretRef anywhere in the config -> None: host-side references mean nothing in a pod."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretRef):
            setattr(model, name, None)
        elif isinstance(value, BaseModel):
            _drop_secret_refs(value)


def es_repository(env: Env) -> dict[str, Any]:
    """The snapshot repository on Kubernetes: the configured one, unless it is still the fs default
    and the store is S3, then an s3 repository on the backup bucket under <prefix>/elasticsearch (a
    per-pod directory would not be shared by the nodes nor survive them)."""
    b = env.cfg.backup
    repo = b.elasticsearch_repository_settings
    if repo.type == "fs" and not repo.settings and b.store.kind == "s3":
        return {"type": "s3", "settings": {"bucket": b.store.bucket, "client": "default",
                                           "base_path": f"{b.store.prefix.strip('/')}/elasticsearch".lstrip("/")}}
    return repo.model_dump()


def ops_config(env: Env) -> dict[str, Any]:
    """The complete, merged config of the env as seen inside the cluster (plain data, no values)."""
    cfg: EnvConfig = env.cfg.model_copy(deep=True)
    _drop_secret_refs(cfg)
    cfg.secrets = {}
    cfg.state_dir = STATE_DIR
    b = cfg.backup
    b.metrics_file = f"{STATE_DIR}/metrics/iosops_backup.prom"
    b.postgres.host, b.postgres.port, b.postgres.user = POSTGRES_SERVICE, 5432, BACKUP_ROLE
    b.postgres.data_dir, b.postgres.os_user = "", ""  # restore Jobs run as the cluster's uid: no runuser
    # The Redis volume is its pod's alone: the RDB comes over the network into the ops pod's /tmp emptyDir.
    b.redis.host, b.redis.port, b.redis.rdb_path, b.redis.rdb_fetch_path = REDIS_SERVICE, 6379, "", REDIS_RDB_FETCH
    b.elasticsearch_url = ELASTICSEARCH_URL
    b.walstream.spool_dir, b.walstream.metrics_port = WALSPOOL, METRICS_PORT  # as k8s/base/walstream.yaml
    b.maintenance.on, b.maintenance.off = [], []  # host commands; on Kubernetes the dispatcher scales
    data = cfg.model_dump(mode="json")
    data["backup"]["elasticsearch_repository_settings"] = es_repository(env)
    refs = {s.key: s for s in ops_secrets(env)}
    where = {"backup-password": ("postgres", "password"), "s3-access-key-id": ("store", "access_key_id"),
             "s3-secret-access-key": ("store", "secret_access_key"), "redis-password": ("redis", "password")}
    for key, (section, field) in where.items():
        if key in refs:
            data["backup"][section][field] = {"file": refs[key].path}
    if "age-identity" in refs:
        data["backup"]["encryption_key"] = {"file": refs["age-identity"].path}
    return _prune_none(data)


def _prune_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_none(v) for v in value]
    return value
