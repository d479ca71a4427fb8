"""Monitoring against real services: the live half of `inv monitoring.check` (real reference API,
PostgreSQL, Redis, postgres/redis/node exporters, Prometheus and Alertmanager containers from the offline
images; walstream and a backup from the ops image, run from docker/compose.yml's definitions), and a real Alertmanager (Debian binary on 127.0.0.1) proving inhibition, routing by severity and
Slack delivery from api_url_file. Slack itself is not reachable here: the webhook is a small HTTP
receiver on 127.0.0.1 that records what Alertmanager posts (a fake Slack, named so)."""
import json
import secrets
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import requests
import yaml

from iosops.config import load_env
from iosops.monitoring import ALERTMANAGER_DIR, dashboards, live
from iosops.monitoring import stack as mstack
from iosops.runner import Runner
from iosops.stack.local import container, project_dir
from tests.conftest import TEST_STATE, free_port, run_inv
from tests.integration.conftest import TEST_LABELS, docker

MON_IMAGES = ("prometheus", "alertmanager", "postgres_exporter", "redis_exporter", "node_exporter")


@pytest.fixture(scope="module")
def monitoring_images(offline_images):
    from iosops.images.offline import build_offline

    env = load_env("local", environ={"IOSOPS_STATE_DIR": str(TEST_STATE)})
    return build_offline(env, Runner(), MON_IMAGES)


def test_live_check_every_api_postgres_redis_query_returns_data(api_image, monitoring_images, tmp_path):
    token = secrets.token_hex(16)
    hook = tmp_path / "slack_webhook_url"
    hook.write_text(f"http://127.0.0.1:9/services/T0/B0/{token}\n")
    base = load_env("local", environ={"IOSOPS_STATE_DIR": str(TEST_STATE)}, overrides={"stack": {"labels": TEST_LABELS}})
    env = live.check_env(base, {"secrets": {"slack_webhook_url": {"file": str(hook)}},
                                "monitoring": {"require_slack": True}})
    name = env.cfg.stack.name
    try:
        report = live.live_check(base, Runner(), api_image.image, keep=True, env=env, ops_image=api_image.ops_image)
        assert report.ok, "\n".join(live.lines(report))
        for uid in dashboards.LIVE_REQUIRED:
            rs = [r for r in report.results if r.dashboard == uid]
            assert rs and all(r.series > 0 for r in rs), uid
        # The platform dashboard's backup panels have data (the drill panels excepted, each with its reason),
        # and it came from the walstream target: backup, verify and WAL archive metrics of this stack.
        backups = [r for r in report.results if r.dashboard == "ios-platform" and r.required]
        assert len(backups) == 7 and all(r.series > 0 or r.excused for r in backups)
        assert sum(1 for r in backups if r.excused) == 2
        assert report.backup_id and report.verified and report.walstream
        assert report.flows["a WAL segment archived by walstream"]
        assert report.flows and all(report.flows.values())
        assert report.alertmanagers == 1 and report.rules_evaluated >= 46 and not report.rule_errors
        assert {k.split()[0] for k, v in report.targets.items() if v == "up"} >= set(live.REQUIRED_JOBS)

        # Every container carries the stack and test labels; the webhook is only in the mounted file.
        ids = docker("ps", "-aq", "--filter", f"label=iosops.stack={name}").stdout.split()
        assert len(ids) == 9  # API, PostgreSQL, Redis, walstream, 3 exporters, Prometheus, Alertmanager
        inspected = docker("inspect", *ids).stdout
        assert all(c["Config"]["Labels"].get("iosops.test") == "1" for c in json.loads(inspected))
        assert token not in inspected
        am = container(env, Runner(), "alertmanager")
        assert token in docker("exec", am, "cat", mstack.SLACK_IN_CONTAINER).stdout
        cdir = mstack.config_dir(env)
        assert not any(token in p.read_text() for p in (cdir / "alertmanager").rglob("*") if p.is_file())
        assert token not in docker("logs", am).stdout + docker("logs", am).stderr
        # The backup role's password reached no argv, label or environment either (a compose secret file).
        bpw = env.secret("backup_password").get()
        assert bpw not in inspected

        # Look, then act: a second monitoring.up changes nothing.
        again = mstack.up(env, Runner())
        assert again.changed == [] and len(again.unchanged) == 5
    finally:
        gone = live.LiveReport()
        live.teardown(env, Runner(), gone)  # what `inv down --volumes` does, retried once
        shutil.rmtree(project_dir(env), ignore_errors=True)
    assert gone.problems == []
    for kind in ("ps -aq", "network ls -q", "volume ls -q"):
        assert docker(*kind.split(), "--filter", f"label=iosops.stack={name}").stdout.strip() == "", kind


class FakeSlack(BaseHTTPRequestHandler):
    """Records what Alertmanager posts to the webhook (stands in for Slack, which is not reachable)."""
    posts: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        FakeSlack.posts.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def alertmanager(tmp_path):
    """Real Alertmanager 0.25 (Debian) with the repo's config; only the webhook file path and the
    grouping waits are changed, so the test does not wait 30s."""
    token = secrets.token_hex(16)
    FakeSlack.posts = []
    slack = HTTPServer(("127.0.0.1", 0), FakeSlack)
    threading.Thread(target=slack.serve_forever, daemon=True).start()
    hook = tmp_path / "slack_webhook_url"
    hook.write_text(f"http://127.0.0.1:{slack.server_port}/services/T0/B0/{token}\n")
    cfg = yaml.safe_load((ALERTMANAGER_DIR / "alertmanager.yml").read_text())
    for r in cfg["receivers"]:
        for sc in r.get("slack_configs", []):
            sc["api_url_file"] = str(hook)
    for route in [cfg["route"], *cfg["route"]["routes"]]:
        route.update({"group_wait": "1s", "group_interval": "1s"})
    shutil.copytree(ALERTMANAGER_DIR / "templates", tmp_path / "templates")
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(cfg))
    port = free_port()
    proc = subprocess.Popen(["prometheus-alertmanager", f"--config.file={tmp_path / 'alertmanager.yml'}",
                             f"--storage.path={tmp_path / 'data'}", "--cluster.listen-address=",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        yield url, token
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        slack.shutdown()


def alert(name, severity, **labels):
    return {"labels": {"alertname": name, "severity": severity, **labels},
            "annotations": {"summary": f"{name} summary", "description": "d", "runbook_url": f"docs/runbooks/{name}.md"}}


def test_api_down_inhibits_latency_and_slack_gets_the_right_channel(alertmanager):
    url, token = alertmanager
    resp = requests.post(f"{url}/api/v2/alerts", json=[
        alert("IosApiDown", "critical", job="ios-api", instance="api:8000"),
        alert("IosApiHighLatency", "warning", job="ios-api"),
        alert("RedisEvictions", "warning", job="redis", instance="redis-exporter:9121")], timeout=10)
    assert resp.status_code == 200

    deadline, state = time.monotonic() + 30, {}
    while time.monotonic() < deadline:
        got = requests.get(f"{url}/api/v2/alerts", timeout=10).json()
        state = {a["labels"]["alertname"]: a["status"] for a in got}
        channels = {p[1].get("channel") for p in FakeSlack.posts}
        if state.get("IosApiHighLatency", {}).get("state") == "suppressed" and {"#ios-oncall", "#ios-alerts"} <= channels:
            break
        time.sleep(0.5)
    assert state["IosApiHighLatency"]["state"] == "suppressed" and state["IosApiHighLatency"]["inhibitedBy"]
    assert state["IosApiDown"]["state"] == "active" and state["RedisEvictions"]["state"] == "active"

    by_channel = {}
    for path, body in FakeSlack.posts:
        assert path == f"/services/T0/B0/{token}"  # the URL came from the file
        text = json.dumps(body)
        by_channel.setdefault(body["channel"], []).append(text)
    assert any("IosApiDown" in t and "docs/runbooks/IosApiDown.md" in t for t in by_channel["#ios-oncall"])
    assert any("RedisEvictions" in t for t in by_channel["#ios-alerts"])
    assert not any("IosApiHighLatency" in t for ts in by_channel.values() for t in ts)
    status = requests.get(f"{url}/api/v2/status", timeout=10).json()
    assert token not in json.dumps(status)


def test_cli_static_check_and_up_dry_run():
    r = run_inv("monitoring.check", "--static-only", "--json", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)["static"]
    assert data["ok"] and data["alerts"] >= 25 and data["dashboards"] == 5
    assert data["firing_cases"] >= data["alerts"] and data["quiet_cases"] >= data["alerts"]
    r = run_inv("monitoring.up", "--env", "local", "--dry-run", "--tag", "dryrun", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "--project-name iosops-local " in r.stdout and "--profile monitoring" in r.stdout
    assert r.stdout.count(" up --detach --no-deps --no-build ") == 3  # datastores, api, the monitoring services
    assert " alertmanager prometheus" in r.stdout
    assert "[dry-run]" in r.stdout
