"""`inv monitoring.up`: the `monitoring` profile of docker/compose.yml (Prometheus, Alertmanager, the
PostgreSQL/Redis/node exporters) in the same compose project as `inv up` (iosops.stack.local), which it
starts first. A deploy with `monitoring` in deploy.profiles runs the same services from the same file,
with configs rendered by the same code (`write_config`, called by iosops.deploy.stackfiles).

Configs are rendered into the project directory (monitoring/prometheus: prometheus.yml with the env's
intervals, rules/, targets/<job>.yml; monitoring/alertmanager); compose recreates a service only when its
definition changed, so a changed config is applied with Prometheus' and Alertmanager's reload endpoint.
The Slack webhook URL is written to secrets/slack_webhook_url (from the env's secret reference), a compose
secret mounted at /run/secrets/slack_webhook_url, which alertmanager.yml names in api_url_file: no config
file, argv, label or log line ever holds it.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import yaml

from .. import wait
from ..commands import compose as cc
from ..commands import docker as d
from ..config import Env
from ..errors import BadInput, OperationFailed
from ..runner import Runner
from ..secretref import Secret
from ..stack.local import QUICK, QuickTarget
from . import ALERTMANAGER_DIR, PROMETHEUS_DIR, RULES_DIR

if TYPE_CHECKING:
    from ..deploy.target import Target

JOBS = ("alertmanager", "ios-api", "nginx", "postgres", "redis", "elasticsearch", "node", "pushgateway",
        "blackbox-tls", "walstream")
# What monitoring.up runs (compose service names on the project's networks) and the API's own port.
LOCAL_TARGETS = {"ios-api": ["api:8000"], "postgres": ["postgres-exporter:9187"],
                 "redis": ["redis-exporter:9121"], "node": ["node-exporter:9100"],
                 "alertmanager": ["alertmanager:9093"]}
SLACK_IN_CONTAINER = "/run/secrets/slack_webhook_url"
QUERIES_IN_CONTAINER = "/etc/postgres-exporter/queries.yaml"


@dataclass
class MonUpResult:
    stack: str
    prometheus_url: str
    alertmanager_url: str
    config_dir: str
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    slack: str = ""
    seconds: float = 0.0


def targets(env: Env) -> dict[str, list[str]]:
    unknown = sorted(set(env.cfg.monitoring.targets) - set(JOBS))
    if unknown:
        raise BadInput(f"envs/{env.name}.yaml: monitoring.targets: unknown job(s) {', '.join(unknown)}; "
                       f"jobs are {', '.join(JOBS)}")
    return {job: list(env.cfg.monitoring.targets.get(job, LOCAL_TARGETS.get(job, []))) for job in JOBS}


def seconds(duration: str) -> float:
    """A Prometheus duration of one unit ("15s", "1m", "500ms") in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    num = duration.rstrip("smhdwy")
    unit = duration[len(num):]
    return float(num) * units[unit]


def render_prometheus(env: Env) -> dict[str, str]:
    """Relative path -> content of the Prometheus config dir mounted at /etc/prometheus."""
    m = env.cfg.monitoring
    cfg = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    cfg["global"]["scrape_interval"] = m.scrape_interval
    cfg["global"]["evaluation_interval"] = m.evaluation_interval
    # Prometheus refuses a scrape timeout longer than the interval (the live check scrapes every 5s).
    if seconds(m.scrape_interval) < seconds(str(cfg["global"].get("scrape_timeout", "10s"))):
        cfg["global"]["scrape_timeout"] = m.scrape_interval
    head = (f"# Rendered by `inv monitoring.up --env {env.name}` from monitoring/prometheus/prometheus.yml "
            f"(intervals from monitoring.*); edit the source, not this file.\n")
    files = {"prometheus.yml": head + yaml.safe_dump(cfg, sort_keys=False)}
    for path in sorted(RULES_DIR.glob("*.yml")):
        files[f"rules/{path.name}"] = path.read_text()
    for job, hosts in targets(env).items():
        groups = [{"targets": hosts, "labels": {"env": env.name}}] if hosts else []
        files[f"targets/{job}.yml"] = yaml.safe_dump(groups, sort_keys=False)
    return files


def render_alertmanager() -> dict[str, str]:
    files = {"alertmanager.yml": (ALERTMANAGER_DIR / "alertmanager.yml").read_text()}
    for path in sorted((ALERTMANAGER_DIR / "templates").glob("*.tmpl")):
        files[f"templates/{path.name}"] = path.read_text()
    return files


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def slack_secret(env: Env) -> tuple[Optional[Secret], str]:
    """(value, how it was found). Missing + require_slack -> BadInput naming the reference, not a value."""
    m = env.cfg.monitoring
    ref = env.cfg.secrets.get(m.slack_webhook_secret)
    if ref is not None and ref.available(env.root):
        return env.secret(m.slack_webhook_secret), f"from secrets.{m.slack_webhook_secret} ({ref.describe()})"
    if m.require_slack:
        where = ref.describe() if ref else "no reference"
        raise BadInput(f"env {env.name}: the Slack webhook secret secrets.{m.slack_webhook_secret} is not "
                       f"available ({where}); set it, or set monitoring.require_slack: false")
    return None, (f"none: secrets.{m.slack_webhook_secret} is not set, so Slack notifications will fail "
                  f"(AlertmanagerNotificationsFailing); put a webhook URL in it to enable them")


def slack_value(env: Env) -> str:
    """The webhook URL when the env's reference has one, else "" (no require_slack check: see slack_secret)."""
    ref = env.cfg.secrets.get(env.cfg.monitoring.slack_webhook_secret)
    return env.secret(env.cfg.monitoring.slack_webhook_secret).get() if ref is not None and ref.available(env.root) else ""


def write_config(t: "Target") -> str:
    """Render the monitoring profile's files into the project directory of `t` (a deploy target or the
    `inv up` project); returns how the Slack webhook was found. Files of rules deleted upstream go too."""
    env, runner = t.env, t.runner
    slack, note = slack_secret(env)
    queries = (PROMETHEUS_DIR / "postgres-exporter-queries.yaml").read_text()
    files = {**{f"prometheus/{k}": v for k, v in render_prometheus(env).items()},
             "prometheus/postgres-exporter-queries.yaml": queries,
             **{f"alertmanager/{k}": v for k, v in render_alertmanager().items()}}
    cdir = Path(t.dir / "monitoring")
    if not t.remote:
        stale = [p for p in cdir.rglob("*") if p.is_file() and str(p.relative_to(cdir)) not in files]
        if stale:
            runner.call(f"remove {len(stale)} stale file(s) from {cdir}", lambda st=stale: [p.unlink() for p in st])
    for rel, text in files.items():
        t.put(f"monitoring/{rel}", text)
    # 0644 inside the 0700 secrets dir: the container's non-root user reads the bind-mounted file.
    t.put("secrets/slack_webhook_url", (slack.get() if slack else "") + "\n", 0o644)
    return note


MON_SERVICES = ["postgres-exporter", "redis-exporter", "node-exporter", "alertmanager", "prometheus"]


def config_dir(env: Env) -> Path:
    """Where monitoring.up renders the configs: the monitoring/ folder of the env's local compose project."""
    from ..stack.local import project_dir

    return Path(project_dir(env)) / "monitoring"


def wait_http_ok(runner: Runner, url: str, timeout: float) -> None:
    def check() -> tuple[bool, str]:
        import requests

        resp = requests.get(url, timeout=3)
        return resp.status_code == 200, f"HTTP {resp.status_code}"

    def poll() -> None:
        import requests

        wait.until(f"GET {url} to answer 200", check, timeout=timeout, interval=0.5,
                   retry_on=(requests.RequestException,))

    runner.call(f"wait until GET {url} answers 200 (timeout {timeout:.0f}s)", poll)


def up(env: Env, runner: Runner, stack: Optional[QuickTarget] = None) -> MonUpResult:
    """The monitoring profile's services of the env's local compose project (`inv up` ran first: the
    datastores and their roles exist). Look, then act: compose leaves an unchanged service alone; when only
    a config file changed, Prometheus and Alertmanager reload it."""
    start = time.monotonic()
    s, m = env.cfg.stack, env.cfg.monitoring
    t = stack or QuickTarget(env, runner, (QUICK, "monitoring"))
    if not t.containers("postgres") and not runner.dry_run:
        raise BadInput(f"stack {s.name} is not running (no postgres in compose project {t.project}); start it "
                       f"with `inv monitoring.up --env {env.name}` (or `inv up --env {env.name}` first)")
    host = "127.0.0.1" if not s.publish_host.startswith("127.") else s.publish_host
    result = MonUpResult(stack=s.name, prometheus_url=f"http://{host}:{m.prometheus_port}",
                         alertmanager_url=f"http://{host}:{m.alertmanager_port}", config_dir=str(config_dir(env)))
    for img in {env.cfg.images.prometheus, env.cfg.images.alertmanager, env.cfg.images.postgres_exporter,
                env.cfg.images.redis_exporter, env.cfg.images.node_exporter}:
        if runner.probe(d.inspect_format(img, "{{.Id}}"), check=False).rc != 0 and not runner.dry_run:
            raise BadInput(f"image {img} is missing; build it with `inv images.offline`")
    before_fp = _tree_fingerprint(Path(t.dir / "monitoring"))
    result.slack = write_config(t)
    before = {svc: t.containers(svc) for svc in MON_SERVICES}
    runner.run(cc.up(t.base(), MON_SERVICES))
    timeout = s.ready_timeout_s
    wait_http_ok(runner, f"{result.prometheus_url}/-/ready", timeout)
    wait_http_ok(runner, f"{result.alertmanager_url}/-/ready", timeout)
    after = {svc: t.containers(svc) for svc in MON_SERVICES}
    configs_changed = before_fp != _tree_fingerprint(Path(t.dir / "monitoring"))
    for svc in MON_SERVICES:
        if after[svc] and after[svc] == before[svc]:
            if configs_changed and svc in ("prometheus", "alertmanager"):
                url = result.prometheus_url if svc == "prometheus" else result.alertmanager_url
                runner.call(f"POST {url}/-/reload (config changed)", _reload, url)
                result.changed.append(svc)
                continue
            result.unchanged.append(svc)
            runner.info(f"no change: {svc} of {s.name} runs the same definition and config")
        else:
            result.changed.append(svc)
    result.seconds = round(time.monotonic() - start, 1)
    return result


def _tree_fingerprint(cdir: Path) -> str:
    files = sorted(p for p in cdir.rglob("*") if p.is_file()) if cdir.is_dir() else []
    return fingerprint(*[(str(p.relative_to(cdir)), p.read_text()) for p in files])


def _reload(url: str) -> None:
    import requests

    resp = requests.post(f"{url}/-/reload", timeout=10)
    if resp.status_code != 200:
        raise OperationFailed(f"POST {url}/-/reload answered HTTP {resp.status_code}: {resp.text[:200]}")
