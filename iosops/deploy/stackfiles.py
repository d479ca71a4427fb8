"""The files a deploy renders into a host's project directory: the compose file and its overrides
(labels; what a host of one role runs and how it reaches the other role), stack.env (no secrets), the
secrets as files, nginx and monitoring configs."""
from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from ..commands import host as hc
from ..config import Env
from ..errors import BadInput
from .target import Target, tls_paths

def ops_image_for(env: Env, api_image: str) -> str:
    """The ops image built with `api_image` (same registry and tag, build.ops_repository)."""
    from ..images.image import image_ref

    return image_ref(env, api_image.rpartition(":")[2], env.cfg.build.ops_repository)


def stack_env(env: Env, images: dict[str, str], t: Target, ops_image: str = "") -> str:
    from ..backup.stack import store_dir

    s, dcfg, img = env.cfg.stack, env.cfg.deploy, env.cfg.images
    cert, _ = tls_paths(t)
    values = {
        "OPS_IMAGE": ops_image or "iosops/ops:none",
        "PG_MAX_SLOT_WAL_KEEP_SIZE": env.cfg.backup.walstream.max_slot_wal_keep_size,
        "BACKUP_STORE_DIR": (store_dir(env) if not t.remote else None) or "./backups",
        "IOSOPS_STACK": s.name, "IOSOPS_ENV": env.name,
        "API_IMAGE_BLUE": images.get("blue") or "iosops/api:none",
        "API_IMAGE_GREEN": images.get("green") or "iosops/api:none",
        # The one API of `inv up` (profile quick, published on stack.api_port without nginx).
        "API_IMAGE": images.get("quick") or "iosops/api:none", "API_PORT": str(s.api_port),
        "POSTGRES_IMAGE": img.postgres, "REDIS_IMAGE": img.redis, "NGINX_IMAGE": img.nginx,
        "PROMETHEUS_IMAGE": img.prometheus, "ALERTMANAGER_IMAGE": img.alertmanager,
        "POSTGRES_EXPORTER_IMAGE": img.postgres_exporter, "REDIS_EXPORTER_IMAGE": img.redis_exporter,
        "NODE_EXPORTER_IMAGE": img.node_exporter,
        # The monitoring profile's Prometheus keeps what the env configures (monitoring.*), as monitoring.up does.
        "PROMETHEUS_RETENTION_TIME": env.cfg.monitoring.retention_time,
        "PROMETHEUS_RETENTION_SIZE": env.cfg.monitoring.retention_size,
        # Published on loopback only (an unauthenticated UI): the env's publish_host when that is loopback.
        "MONITORING_PUBLISH_HOST": s.publish_host if s.publish_host.startswith("127.") else "127.0.0.1",
        "PROMETHEUS_PORT": str(env.cfg.monitoring.prometheus_port),
        "ALERTMANAGER_PORT": str(env.cfg.monitoring.alertmanager_port),
        # node-exporter's textfile folder: backup.metrics_file's folder on this machine.
        "METRICS_DIR": str(env.path(env.cfg.backup.metrics_file).parent) if not t.remote else "./metrics",
        "POSTGRES_DB": s.postgres_db, "POSTGRES_USER": s.postgres_user, "API_WORKERS": str(s.api_workers),
        "ELASTICSEARCH_URL": s.elasticsearch_url, "PUBLISH_HOST": s.publish_host,
        "HTTP_PORT": str(dcfg.http_port), "HTTPS_PORT": str(dcfg.https_port), "TLS_DIR": str(cert.parent),
        **datastore_addresses(env, t),
    }
    return "# written by inv deploy; no secrets here (they are files under secrets/)\n" + \
        "".join(f"{k}={v}\n" for k, v in values.items())


def datastore_addresses(env: Env, t: Target) -> dict[str, str]:
    """How the API reaches the datastores: by service name on the host's data network, or (a web host of
    a split env) on the data host's private address; where a data host publishes them."""
    h = env.cfg.hosts
    if t.split and t.web:
        addr = h.data_host().private
        return {"POSTGRES_HOST": addr, "POSTGRES_PORT": str(h.postgres_port),
                "REDIS_URL": f"redis://{addr}:{h.redis_port}/0"}
    out = {"POSTGRES_HOST": "postgres", "POSTGRES_PORT": "5432", "REDIS_URL": "redis://redis:6379/0"}
    if t.split and t.data:
        out.update(DATA_BIND=h.data_host().private, PG_PUBLISH_PORT=str(h.postgres_port),
                   REDIS_PUBLISH_PORT=str(h.redis_port))
    return out


ROLES_FILE = "compose.roles.yml"


def roles_override(env: Env, t: Target) -> str:
    """A host of one role: the data host publishes PostgreSQL and Redis on its private address (the
    provisioned firewall opens them to the web hosts only); a web host's API gets a route out of its
    internal networks to reach them. A host of both roles needs no override (service names)."""
    labels = {"iosops.stack": env.cfg.stack.name, "iosops.env": env.name, **env.cfg.stack.labels}
    if t.data:
        services = {"postgres": {"networks": ["data", "datapub"], "ports": ["${DATA_BIND}:${PG_PUBLISH_PORT}:5432"]},
                    "redis": {"networks": ["data", "datapub"], "ports": ["${DATA_BIND}:${REDIS_PUBLISH_PORT}:6379"]}}
        nets = {"datapub": {"labels": labels}}
    else:
        services = {svc: {"networks": ["app", "data", "datalink"]} for svc in ("api-blue", "api-green")}
        nets = {"datalink": {"labels": labels}}
    return (f"# written by inv deploy: this host's role ({', '.join(sorted(t.roles))}) in a split env\n"
            + yaml.safe_dump({"services": services, "networks": nets}, sort_keys=True))


def labels_override(env: Env, compose_text: str) -> str:
    """Extra labels (e.g. iosops.test=1) on every service, network and volume of the stack."""
    spec = yaml.safe_load(compose_text)
    extra = dict(env.cfg.stack.labels)
    # docker-compose 1.29 replaces (does not merge) a network's or volume's definition from an
    # override file: repeat the whole definition (e.g. `internal: true`) with the labels added.
    def top(kind: str) -> dict:
        return {k: {**(v or {}), "labels": {**((v or {}).get("labels") or {}), **extra}}
                for k, v in (spec.get(kind) or {}).items()}
    out: dict[str, Any] = {"services": {k: {"labels": extra} for k in spec.get("services", {})},
                           "networks": top("networks"), "volumes": top("volumes")}
    return "# written by inv deploy: stack.labels on everything\n" + yaml.safe_dump(out, sort_keys=True)


def write_stack_files(t: Target, images: dict[str, str], ops_image: str = "") -> None:
    from ..backup.stack import prepare_host

    env = t.env
    compose_text = env.path(env.cfg.deploy.compose_file).read_text()
    t.runner.run(hc.mkdir_p(str(t.dir / "nginx" / "conf.d"), str(t.dir / "secrets")))
    t.runner.run(hc.chmod(0o700, str(t.dir / "secrets")))
    t.put("compose.yml", compose_text)
    if env.cfg.stack.labels:
        t.put("compose.labels.yml", labels_override(env, compose_text))
    if t.split:
        t.put(ROLES_FILE, roles_override(env, t))
    t.put("stack.env", stack_env(env, images, t, ops_image), 0o600)
    # The datastores' passwords this host needs (the superuser's on the data host only, the roles' and users'
    # of iosops/deploy/dbusers.py) and the data host's Redis ACL file. Each file is readable by the
    # containers' users (the API runs as 10001, PostgreSQL as 999); the directory (0700, owned by the deploy
    # user) keeps it from everyone else on the host.
    from .dbusers import write_files

    write_files(t)
    if t.data:
        prepare_host(t, env)  # the ops containers' config, the backup secrets, the local store directory
    else:
        # A web host runs no backup service: its backup secrets are empty files (compose wants them).
        from ..backup.stack import SECRET_FILES

        for name in SECRET_FILES:
            t.put(f"secrets/{name}", "", 0o644)
    from ..monitoring.stack import slack_value, write_config

    if "monitoring" in env.cfg.deploy.profiles:
        for rel in ("monitoring/prometheus/prometheus.yml", "monitoring/alertmanager/alertmanager.yml"):
            if not env.path(rel).exists():
                raise BadInput(f"profile monitoring needs {rel} (owned by monitoring/); it is missing")
        write_config(t)  # as `inv monitoring.up` renders it: prometheus.yml, rules, targets, alertmanager, Slack
    else:
        # Compose wants the file of every declared secret; the same value monitoring.up writes (or empty).
        t.put("secrets/slack_webhook_url", slack_value(env) + "\n", 0o644)


def datastores_fingerprint(t: Target, images: dict[str, str]) -> str:
    """What decides the datastores' containers: the compose file, labels and every non-API setting."""
    env_lines = [l for l in stack_env(t.env, images, t).splitlines()
                 if not l.startswith(("API_IMAGE", "API_PORT=", "OPS_IMAGE=", "PROMETHEUS_", "ALERTMANAGER_PORT=",
                                        "MONITORING_PUBLISH_HOST=", "METRICS_DIR="))]
    text = "\n".join([t.env.path(t.env.cfg.deploy.compose_file).read_text(), json.dumps(t.env.cfg.stack.labels,
                      sort_keys=True), *env_lines, ",".join(t.env.cfg.deploy.profiles),
                      roles_override(t.env, t) if t.split else ""])
    return hashlib.sha256(text.encode()).hexdigest()[:16]
