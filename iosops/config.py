"""Environment config: pydantic defaults -> envs/defaults.yaml -> envs/<env>.yaml -> IOSOPS_* -> flags.

Every layer is deep-merged (mappings merge, everything else replaces) and the result is validated by
the pydantic models below, which forbid unknown keys so a typo is an error, not a silent default.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from . import REPO_ROOT
from .errors import BadInput
from .secretref import MASK, Secret, SecretRef

ENV_PREFIX = "IOSOPS_"
NESTED = "__"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DockerCfg(Strict):
    host: str = "unix:///var/run/docker.sock"
    timeout_s: PositiveInt = 300


class BuildCfg(Strict):
    dockerfile: str = "docker/Dockerfile"
    context: str = "."
    repository: str = "iosops/api"
    # The ops image (backups, restores, walstream): built beside the API image with the same tag.
    ops_repository: str = "iosops/ops"
    ops_dockerfile: str = "docker/ops/Dockerfile"
    max_ops_image_mb: PositiveInt = 400
    registry: str = ""
    base_image: str = ""  # empty: images.python
    max_image_mb: PositiveInt = 250
    # Directory of *.crt files trusted only inside the builder stage (TLS-intercepting proxies).
    extra_ca_dir: str = ""
    registry_username: str = ""
    registry_password: Optional[SecretRef] = None


class ImagesCfg(Strict):
    base: str = "iosops/debian:bookworm"
    python: str = "iosops/python:3.11-bookworm"
    postgres: str = "iosops/postgres:15-bookworm"
    redis: str = "iosops/redis:7-bookworm"
    nginx: str = "iosops/nginx:1.22-bookworm"
    prometheus: str = "iosops/prometheus:2-bookworm"
    alertmanager: str = "iosops/alertmanager:0.25-bookworm"
    postgres_exporter: str = "iosops/postgres-exporter:bookworm"
    redis_exporter: str = "iosops/redis-exporter:bookworm"
    node_exporter: str = "iosops/node-exporter:bookworm"
    sshd: str = "iosops/sshd-host:bookworm"


class OfflineCfg(Strict):
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    # <suite>-security lives in its own archive (same host on deb.debian.org); <suite>-updates in `mirror`.
    security_mirror: str = "http://deb.debian.org/debian-security"
    # Verifies the archive's InRelease files when `inv images.stale` / `--refresh` read what it offers.
    keyring: str = "/usr/share/keyrings/debian-archive-keyring.gpg"
    # Extra labels on every offline image built (tests add iosops.test=1); not part of any fingerprint.
    labels: dict[str, str] = {}
    dockerfiles: str = "docker/offline"
    workdir: str = "/var/tmp/iosops-offline"  # nosec B108 # default scratch dir for offline image builds (a config value, cleaned by the build)


class StackCfg(Strict):
    name: str = "iosops-local"
    publish_host: str = "127.0.0.1"
    api_port: int = Field(8080, ge=1, le=65535)
    api_workers: PositiveInt = 2
    postgres_db: str = "ios"
    postgres_user: str = "ios"
    elasticsearch_url: str = ""
    ready_timeout_s: PositiveInt = 90
    # Extra labels on every container/network/volume of the stack (tests add iosops.test=1).
    labels: dict[str, str] = {}


class StoreCfg(Strict):
    """Where recovery points live: a local directory (embedded default) or S3 (any S3 API)."""
    kind: Literal["local", "s3"] = "local"
    path: str = ""  # local: directory; empty: <state_dir>/backups
    bucket: str = ""
    prefix: str = "iosops"
    endpoint_url: str = ""  # empty: AWS; set for MinIO/moto/...
    region: str = "us-east-1"
    access_key_id: Optional[SecretRef] = None
    secret_access_key: Optional[SecretRef] = None
    # S3 server-side encryption asked for on every upload: "" leaves it to the bucket's default encryption,
    # AES256 is SSE-S3, aws:kms is SSE-KMS with sse_kms_key_id (empty: the account's aws/s3 key).
    sse: Literal["", "AES256", "aws:kms"] = ""
    sse_kms_key_id: str = ""
    max_attempts: PositiveInt = 5
    connect_timeout_s: PositiveInt = 5
    multipart_chunk_mb: PositiveInt = 16


class PostgresSource(Strict):
    host: str = "127.0.0.1"
    port: int = Field(5432, ge=1, le=65535)
    user: str = "ios"
    dbname: str = "ios"
    password: Optional[SecretRef] = None
    bin_dir: str = "/usr/lib/postgresql/15/bin"
    # Also a logical dump (pg_dump -Fc, streamed) for restores into another major version.
    logical_dump: bool = False
    # A cluster this tool manages on this host (drills, local restores): data dir and OS user.
    data_dir: str = ""
    os_user: str = "postgres"


class RedisSource(Strict):
    host: str = "127.0.0.1"
    port: int = Field(6379, ge=1, le=65535)
    # An ACL user (Redis 6+; empty: the default user, e.g. requirepass) and its password.
    user: str = ""
    password: Optional[SecretRef] = None
    # The RDB is copied from here after BGSAVE (empty: CONFIG GET dir/dbfilename, same host).
    rdb_path: str = ""
    # Where the server's files are not mounted (Kubernetes: its volume is the Redis pod's alone): no BGSAVE,
    # the RDB is fetched over the network into this file instead (`redis-cli --rdb`, a replica's full sync;
    # an ACL user needs +replconf and +sync), checked, uploaded and removed. Empty: BGSAVE, then rdb_path.
    rdb_fetch_path: str = ""
    # Restore by writing dump.rdb into this directory while the server is stopped (a deployed stack's
    # Redis volume, mounted into the ops container); empty: resync the live server from a loader.
    restore_dir: str = ""


class RetentionCfg(Strict):
    """Grandfather-father-son: everything younger than keep_days, plus the newest of each of the
    last `daily` days, `weekly` ISO weeks and `monthly` months."""
    keep_days: PositiveInt = 30
    daily: int = Field(7, ge=0)
    weekly: int = Field(4, ge=0)
    monthly: int = Field(6, ge=0)


class MaintenanceCfg(Strict):
    """Argv run on this host around a restore's downtime: `on` before anything live is replaced (the app
    stops taking writes: a maintenance flag, scaling the API to zero ...), `off` afterwards, on success
    and after a rollback alike. Empty: the restore only ends PostgreSQL client sessions."""
    on: list[str] = []
    off: list[str] = []


class WalstreamCfg(Strict):
    """The always-on WAL streamer of a deployed stack (compose service `walstream`, Kubernetes Deployment
    `ios-walstream`): pg_receivewal on a physical replication slot; every completed segment, and the
    segment being written every `partial_interval_s`, goes to the store (bounds the RPO)."""
    slot: str = Field("iosops", pattern=r"^[a-z0-9_]{1,63}$")
    partial_interval_s: float = Field(2.0, gt=0, le=60)
    metrics_port: int = Field(9898, ge=1, le=65535)
    spool_dir: str = "/var/lib/iosops/walspool"
    # The primary keeps at most this much WAL for the slot (max_slot_wal_keep_size): a dead stream can
    # never fill the database's disk; past it the slot is invalidated and the walstream_* alerts fire.
    max_slot_wal_keep_size: str = Field("2GB", pattern=r"^[0-9]+(MB|GB|TB)$")


class EsRepositoryCfg(Strict):
    """The snapshot repository a backup registers (PUT _snapshot/<elasticsearch_repository>): `fs` (a
    directory under every node's path.repo: compose/local) or `s3` (repository-s3, built into
    Elasticsearch 8: settings bucket, base_path, client). Empty settings with fs: {location: <name>}."""
    type: str = "fs"
    settings: dict[str, Any] = {}


class BackupCfg(Strict):
    # stack: the engine runs in the ops image next to the deployed stack (compose service `ops` on the
    # env's data host; Jobs on Kubernetes) and WAL comes from its `walstream` service. host: this process
    # runs it against datastores reachable from here (backup.postgres.*; clusters this tool manages).
    runs_on: Literal["stack", "host"] = "stack"
    components: list[Literal["postgres", "redis", "elasticsearch"]] = ["postgres", "redis"]
    store: StoreCfg = StoreCfg()
    postgres: PostgresSource = PostgresSource()
    redis: RedisSource = RedisSource()
    elasticsearch_url: str = ""
    elasticsearch_repository: str = "iosops"
    elasticsearch_repository_settings: EsRepositoryCfg = EsRepositoryCfg()
    zstd_level: int = Field(3, ge=1, le=19)
    zstd_threads: int = Field(0, ge=0)  # 0: one per core
    # age public key ("age1..."): artifacts and WAL are encrypted to it; hosts that only back up never
    # hold the private key. encryption_key is the matching age identity (secret), needed to verify/restore.
    encryption_recipient: str = ""
    encryption_key: Optional[SecretRef] = None
    # Backup messages only, to another channel than notify.webhook_url (empty: notify.webhook_url).
    webhook_url: Optional[SecretRef] = None
    metrics_file: str = ".iosops/metrics/iosops_backup.prom"
    retention: RetentionCfg = RetentionCfg()
    rto_target_s: PositiveInt = 45
    rpo_target_s: PositiveInt = 5
    maintenance: MaintenanceCfg = MaintenanceCfg()
    walstream: WalstreamCfg = WalstreamCfg()


class K8sCfg(Strict):
    """The Kubernetes target (inv k8s.*): which overlay, which cluster, how long to wait."""

    overlay: str = ""  # k8s/overlays/<overlay>; empty: this env has no Kubernetes target
    context: str = ""  # the kubectl context the deploy insists on (else exit 2)
    namespace: str = ""  # must equal the overlay's namespace
    kubectl: str = "kubectl"
    ops_repository: str = "iosops/ops"  # image of the backup CronJob (same registry and tag as the API)
    rollout_timeout_s: PositiveInt = 600
    smoke_timeout_s: PositiveInt = 30
    rollback_window_s: PositiveInt = 3600  # the old colour stays scaled this long after a switch
    validate_versions: list[str] = ["1.29", "1.31", "1.33"]
    # Secrets the deploy creates from this env's references: "<Secret>/<key>": <name in secrets:>.
    # Secrets made in-cluster by an ExternalSecret of the overlay are not listed here.
    secrets: dict[str, str] = {}
DURATION = r"^[0-9]+(ms|s|m|h|d|w|y)$"


class MonitoringCfg(Strict):
    """Prometheus/Alertmanager run by `inv monitoring.up` next to the stack (monitoring/ holds the configs)."""
    scrape_interval: str = Field("15s", pattern=DURATION)
    evaluation_interval: str = Field("15s", pattern=DURATION)
    retention_time: str = Field("15d", pattern=DURATION)
    retention_size: str = Field("10GB", pattern=r"^[0-9]+(B|KB|MB|GB|TB)$")
    prometheus_port: int = Field(9090, ge=1, le=65535)
    alertmanager_port: int = Field(9093, ge=1, le=65535)
    # Scrape targets (host:port) by job, written to file_sd files; a job not listed here gets the
    # containers `inv monitoring.up` runs on the stack network (ios-api, postgres, redis, node,
    # alertmanager) or no targets (nginx, elasticsearch, pushgateway, blackbox-tls, walstream).
    targets: dict[str, list[str]] = {}
    # The entry of `secrets:` holding the Slack webhook URL (mounted as a file, never rendered).
    slack_webhook_secret: str = "slack_webhook_url"
    # false (local): run without a webhook when the secret is missing; notifications then fail visibly.
    require_slack: bool = True
class TlsCfg(Strict):
    # Paths on the host that runs nginx. Relative paths are under the stack's project directory.
    cert: str = "nginx/certs/fullchain.pem"
    key: str = "nginx/certs/privkey.pem"
    # Local only: make a self-signed certificate (openssl) when none exists or it expired.
    self_signed: bool = False
    self_signed_days: PositiveInt = 30


class DeployCfg(Strict):
    """Blue-green deploys of the compose stack (docker/compose.yml) behind nginx."""
    compose_file: str = "docker/compose.yml"
    # Where the rendered stack (compose file, nginx config, certs, secrets, state) lives on a host;
    # empty: <state_dir>/stacks/<stack.name> on this machine, /srv/iosops/<stack.name> on SSH hosts.
    project_dir: str = ""
    replicas: PositiveInt = 2
    http_port: int = Field(80, ge=1, le=65535)
    https_port: int = Field(443, ge=1, le=65535)
    server_name: str = "_"
    tls: TlsCfg = TlsCfg()
    rate_limit_rps: PositiveInt = 20
    rate_limit_burst: PositiveInt = 40
    client_max_body_size: str = "1m"
    health_timeout_s: PositiveInt = 120
    # After Docker says healthy (liveness), every replica's /ready must answer 200 within this.
    ready_timeout_s: PositiveInt = 30
    smoke_paths: list[str] = ["/health", "/ready", "/version", "/items?limit=1"]
    # After the switch: the new colour's 5xx share in nginx's log over this window decides rollback.
    error_window_s: float = Field(5.0, ge=0)
    max_error_rate: float = Field(0.01, ge=0, le=1)
    # The gate never passes on silence: during the window every web host gets `gate_probes` synthetic
    # GETs of gate_path through its nginx (before the switch too, for the old colour's latency); the
    # new colour's p95 may be at most max(ratio × old p95, old p95 + slack) — in at least one half of the
    # window (a regression must last; a cold worker's first answers do not roll a release back).
    gate_probes: int = Field(30, ge=1, le=200)
    gate_path: str = "/ready"
    gate_max_latency_ratio: float = Field(3.0, ge=1)
    gate_latency_slack_ms: float = Field(250.0, ge=0)
    drain_timeout_s: PositiveInt = 30
    # Compose profiles to start as well (monitoring, search); the core stack is always started.
    profiles: list[str] = []
    # Run testinfra checks of the hosts and the stack before traffic switches (and after provision).
    verify_hosts: bool = True


class HostCfg(Strict):
    address: str
    port: int = Field(22, ge=1, le=65535)
    user: str = "root"
    key_file: str = ""
    # What the host runs (Kamal's roles + accessories): `web` = nginx and the API colours, `data` = the
    # datastores (PostgreSQL, Redis, Elasticsearch with the `search` profile) and the backup services.
    # Empty: both when the env has one host; with several hosts every host must say.
    roles: list[Literal["web", "data"]] = []
    # The address the web hosts reach this host's datastores on (the private network); default: address.
    private_address: str = ""

    @property
    def private(self) -> str:
        return self.private_address or self.address

    def has(self, role: str) -> bool:
        return role in self.roles


class HostsCfg(Strict):
    """SSH hosts of a compose env, and what `inv provision` makes true on each."""
    hosts: list[HostCfg] = []
    deploy_user: str = "deploy"
    deploy_uid: int = Field(1500, ge=100)
    authorized_key_file: str = ""  # public key given to the deploy user
    base_dir: str = "/srv/iosops"
    log_dir: str = "/var/log/iosops"
    packages: list[str] = ["docker.io", "docker-compose", "nftables", "logrotate", "openssl", "python3"]
    sysctl: dict[str, str] = {"net.core.somaxconn": "4096", "net.ipv4.ip_local_port_range": "10240 65000",
                              "net.ipv4.tcp_fin_timeout": "15", "vm.max_map_count": "262144"}
    # Containers cannot change kernel parameters (/proc/sys is read-only): test hosts persist the
    # file and say it is not applied; real hosts apply and verify the live values.
    sysctl_live: bool = True
    nofile_limit: PositiveInt = 65536
    allowed_tcp_ports: list[int] = [22, 80, 443]
    # A real host runs the Docker engine; a test host (a container) cannot (no privileged containers):
    # then only the docker CLI and package are provisioned/verified, and the report says so.
    require_engine: bool = True
    connect_timeout_s: PositiveInt = 10
    # The hosts' SSH keys (OpenSSH known_hosts format, committed): every connection is checked against it,
    # an unknown or changed key is refused. Written by `inv hosts.trust`. Empty: envs/<env>.known_hosts.
    known_hosts_file: str = ""
    # The data host's datastore ports, published on its private address, open only to the web hosts.
    postgres_port: int = Field(5432, ge=1, le=65535)
    redis_port: int = Field(6379, ge=1, le=65535)

    def data_host(self) -> HostCfg:
        """The one host holding the datastores (checked at load: exactly one)."""
        return next(h for h in self.hosts if h.has("data"))

    def web_hosts(self) -> list[HostCfg]:
        return [h for h in self.hosts if h.has("web")]


class NotifyCfg(Strict):
    """Slack-compatible webhook messages on deploy start/success/failure/rollback, `inv rollback` and
    backups (iosops.notify). A dead, slow or failing webhook never fails or blocks the operation."""
    webhook_url: Optional[SecretRef] = None  # empty: no messages
    # false (local): a webhook secret that is not available means "no messages", without a warning.
    required: bool = True
    timeout_s: float = Field(3.0, gt=0, le=30)  # per attempt (connect is capped at 2 s)
    attempts: int = Field(3, ge=1, le=10)
    max_total_s: float = Field(10.0, gt=0, le=60)  # hard bound per message, retries and backoff included


class EnvConfig(Strict):
    name: str
    description: str = ""
    target: Literal["local", "compose", "kubernetes"] = "local"
    state_dir: str = ".iosops"
    docker: DockerCfg = DockerCfg()
    build: BuildCfg = BuildCfg()
    images: ImagesCfg = ImagesCfg()
    offline: OfflineCfg = OfflineCfg()
    stack: StackCfg = StackCfg()
    backup: BackupCfg = BackupCfg()
    k8s: K8sCfg = K8sCfg()
    monitoring: MonitoringCfg = MonitoringCfg()
    deploy: DeployCfg = DeployCfg()
    hosts: HostsCfg = HostsCfg()
    notify: NotifyCfg = NotifyCfg()
    secrets: dict[str, SecretRef] = {}


class Env:
    """A loaded, validated environment plus the paths it is relative to."""

    def __init__(self, cfg: EnvConfig, root: Path, overrides: Optional[dict] = None):
        self.cfg = cfg
        self.root = root
        # IOSOPS_* and flag layers, so processes started without our environment (PostgreSQL's
        # archive_command) can be given the same config (see iosops.backup.wal.command_line).
        self.overrides = overrides or {}

    @property
    def name(self) -> str:
        return self.cfg.name

    def path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    @property
    def state_dir(self) -> Path:
        return self.path(self.cfg.state_dir)

    @property
    def known_hosts_path(self) -> Path:
        """The env's known_hosts file (hosts.known_hosts_file, relative to the checkout; default beside
        the env's YAML: envs/<env>.known_hosts)."""
        f = self.cfg.hosts.known_hosts_file
        return self.path(os.path.expanduser(f)) if f else envs_dir(self.root) / f"{self.name}.known_hosts"

    @property
    def base_image(self) -> str:
        return self.cfg.build.base_image or self.cfg.images.python

    def secret(self, name: str) -> Secret:
        ref = self.cfg.secrets.get(name)
        if ref is None:
            raise BadInput(f"env {self.name}: no secret named {name!r} in config; add secrets.{name}: "
                           f"{{env: VAR}} or {{file: PATH}} to envs/{self.name}.yaml")
        return ref.reveal(f"secrets.{name}", self.root)

    def redacted(self) -> dict[str, Any]:
        """The merged config as plain data; every secret (wherever it sits) appears as its reference
        and *** only."""
        def walk(value: Any) -> Any:
            if isinstance(value, SecretRef):
                ref = {k: v for k, v in value.model_dump().items() if v}
                return {**ref, "value": MASK if value.available(self.root) else f"{MASK} (missing)"}
            if isinstance(value, BaseModel):
                return {name: walk(getattr(value, name)) for name in type(value).model_fields}
            if isinstance(value, dict):
                return {k: walk(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [walk(v) for v in value]
            return value

        return walk(self.cfg)


def envs_dir(root: Path = REPO_ROOT) -> Path:
    """envs/ of the checkout, or IOSOPS_ENVS_DIR (a team's own env files kept elsewhere)."""
    return Path(os.environ.get("IOSOPS_ENVS_DIR") or root / "envs")


def known_envs(root: Path = REPO_ROOT) -> list[str]:
    return sorted(p.stem for p in envs_dir(root).glob("*.yaml") if p.stem != "defaults")


def deep_merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path, root: Path) -> dict:
    rel = path.relative_to(root) if path.is_relative_to(root) else path
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{rel}:{mark.line + 1}" if mark else str(rel)
        raise BadInput(f"{where}: malformed YAML ({exc.problem}); fix that line and retry") from None
    except yaml.YAMLError as exc:
        raise BadInput(f"{rel}: malformed YAML ({exc}); fix the file and retry") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"{rel}:1: expected a mapping of settings at the top level, got "
                       f"{type(data).__name__}; fix the file and retry")
    return data


def env_var_layer(environ: Mapping[str, str]) -> dict:
    """IOSOPS_BUILD__MAX_IMAGE_MB=300 -> {"build": {"max_image_mb": 300}} (values parsed as YAML)."""
    layer: dict = {}
    top = set(EnvConfig.model_fields)
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        parts = key[len(ENV_PREFIX):].lower().split(NESTED)
        if parts[0] not in top or parts[0] == "name":
            continue  # not a config override (e.g. IOSOPS_ENV)
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        node = layer
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return layer


def _lookup(data: Mapping, loc: tuple) -> bool:
    node: Any = data
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def load_env(name: Optional[str], root: Path = REPO_ROOT, environ: Optional[Mapping[str, str]] = None,
             overrides: Optional[Mapping] = None) -> Env:
    environ = os.environ if environ is None else environ
    name = name or environ.get("IOSOPS_ENV") or "local"
    known = known_envs(root)
    if name not in known:
        raise BadInput(f"unknown env {name!r}; known envs: {', '.join(known)} (files in envs/)")
    layers: list[tuple[str, dict]] = []
    defaults = envs_dir(root) / "defaults.yaml"
    if defaults.exists():
        layers.append(("envs/defaults.yaml", _read_yaml(defaults, root)))
    layers.append((f"envs/{name}.yaml", _read_yaml(envs_dir(root) / f"{name}.yaml", root)))
    layers.append(("IOSOPS_* environment variables", env_var_layer(environ)))
    if overrides:
        layers.append(("command-line flags", dict(overrides)))
    merged: dict = {}
    for _, layer in layers:
        merged = deep_merge(merged, layer)
    merged["name"] = name
    try:
        cfg = EnvConfig.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(str(p) for p in err["loc"])
        source = next((src for src, layer in reversed(layers) if _lookup(layer, loc)), f"envs/{name}.yaml")
        # Never echo what was given under a secret-ish key: it may be a pasted value.
        secretish = any(w in ".".join(loc) for w in ("secret", "password", "token", "key"))
        got = "" if (secretish or err["type"] == "extra_forbidden" or isinstance(
            err.get("input"), (dict, list))) else f" (got {err['input']!r})"
        msg = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
        raise BadInput(f"{source}: {'.'.join(loc)}: {msg}{got}; fix it and retry") from None
    _check_store(cfg, layers, f"envs/{name}.yaml")
    _check_roles(cfg, f"envs/{name}.yaml")
    return Env(cfg, root, deep_merge(env_var_layer(environ), overrides or {}))


def _check_roles(cfg: EnvConfig, source: str) -> None:
    """One data host (the datastores run once), at least one web host; a lone host holds both."""
    hosts = cfg.hosts.hosts
    if not hosts:
        return
    if len(hosts) == 1 and not hosts[0].roles:
        hosts[0].roles = ["web", "data"]
    unsaid = [h.address for h in hosts if not h.roles]
    if unsaid:
        raise BadInput(f"{source}: hosts.hosts: {', '.join(unsaid)} say no roles; with several hosts each "
                       "must say `roles: [web]`, `[data]` or `[web, data]` (the datastores run on exactly "
                       "one data host); fix it and retry")
    data = [h.address for h in hosts if h.has("data")]
    if len(data) != 1:
        raise BadInput(f"{source}: hosts.hosts: {len(data)} hosts have role data ({', '.join(data) or 'none'}); "
                       "exactly one host holds the datastores; fix it and retry")
    if not any(h.has("web") for h in hosts):
        raise BadInput(f"{source}: hosts.hosts: no host has role web (nginx and the API); fix it and retry")
    if cfg.stack.publish_host in ("127.0.0.1", "localhost", "::1"):
        raise BadInput(f"{source}: stack.publish_host is {cfg.stack.publish_host} but the env runs on SSH hosts: "
                       "nginx would answer only on each host's loopback; set it to 0.0.0.0 (or the address clients "
                       "use); fix it and retry")
    seen: set[tuple[str, int]] = set()
    for h in hosts:
        if (h.address, h.port) in seen:
            raise BadInput(f"{source}: hosts.hosts: {h.address}:{h.port} is listed twice; fix it and retry")
        seen.add((h.address, h.port))


def _check_store(cfg: EnvConfig, layers: list[tuple[str, dict]], default_source: str) -> None:
    """Rules across settings that pydantic checks one field at a time."""
    store = cfg.backup.store

    def source(*loc: str) -> str:
        return next((src for src, layer in reversed(layers) if _lookup(layer, loc)), default_source)

    # A local store is a directory on the machine that runs `inv backup`: for an env on SSH hosts or a
    # cluster that is one data host (or a pod's disk), lost with the data it should protect.
    where = ("Kubernetes" if cfg.target == "kubernetes"
             else "SSH hosts" if cfg.target == "compose" and cfg.hosts.hosts else "")
    if store.kind == "local" and where:
        raise BadInput(f"{source('backup', 'store', 'kind')}: backup.store.kind: 'local' keeps recovery points "
                       f"on one machine, but env {cfg.name} runs on {where} (target {cfg.target}); use kind s3 "
                       f"with bucket, prefix and credentials; fix it and retry")
    if store.sse_kms_key_id and store.sse != "aws:kms":
        raise BadInput(f"{source('backup', 'store', 'sse_kms_key_id')}: backup.store.sse_kms_key_id is set but "
                       f"backup.store.sse is {store.sse!r}, not 'aws:kms'; fix it and retry")
