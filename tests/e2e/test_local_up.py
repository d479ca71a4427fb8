"""The quick API-only stack (README Tasks: `up`), end to end: `inv up` builds what is missing and serves a ready
API (the quick profile of docker/compose.yml); a second `inv up` changes nothing; `inv down --volumes` removes
everything it made (by label)."""
import json
import uuid

import requests

from tests.conftest import free_port, run_inv
from tests.integration.conftest import docker


def test_up_twice_then_down(tmp_path):
    name = f"iosops-e2e-{uuid.uuid4().hex[:6]}"
    port = free_port()
    env = {"IOSOPS_STACK__NAME": name, "IOSOPS_STACK__API_PORT": str(port),
           "IOSOPS_STACK__LABELS": '{"iosops.test": "1"}'}
    try:
        first = run_inv("up", "--env", "local", "--json", env=env)
        assert first.returncode == 0, first.stderr[-2000:]
        result = json.loads(first.stdout)
        assert result["url"] == f"http://127.0.0.1:{port}"
        assert result["changed"] == ["postgres", "redis", "api"]
        assert result["migrations"] == "migrations applied: 0001_create_items"
        assert requests.get(f"{result['url']}/ready", timeout=5).json()["status"] == "ready"
        item = requests.post(f"{result['url']}/items", json={"name": "e2e"}, timeout=5).json()

        second = run_inv("up", "--env", "local", "--json", env=env)
        assert second.returncode == 0, second.stderr[-2000:]
        assert json.loads(second.stdout)["changed"] == []
        assert "no change: " in second.stderr
        assert requests.get(f"{result['url']}/items/{item['id']}", timeout=5).status_code == 200

        audit = run_inv("lock.audit", "--env", "local", "--json", "--lines", "2", env=env)
        assert [r["outcome"] for r in json.loads(audit.stdout)] == ["ok", "ok"]
    finally:
        down = run_inv("down", "--env", "local", "--volumes", "--yes", env=env)
    assert down.returncode == 0, down.stderr
    for kind in ("ps", "network ls", "volume ls"):
        left = docker(*kind.split(), "--quiet", *(["--all"] if kind == "ps" else []), "--filter",
                      f"label=iosops.stack={name}")
        assert left.stdout.strip() == "", f"{kind} left behind"


def test_up_dry_run_plans_without_touching_docker_state():
    name = f"iosops-e2e-dry-{uuid.uuid4().hex[:6]}"
    proc = run_inv("up", "--env", "local", "--tag", "dry", "--dry-run", "--json",
                   env={"IOSOPS_STACK__NAME": name, "IOSOPS_STACK__LABELS": '{"iosops.test": "1"}'})
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)["plan"]
    compose = [p for p in plan if p.startswith("docker-compose ") or p.startswith("/usr/bin/docker compose ")]
    assert all(f"--project-name {name} " in p and "--profile quick" in p for p in compose)
    assert compose[0].endswith(" up --detach --no-deps --no-build postgres redis")
    assert any(" run --rm " in p and "iosapi.migrate" in p for p in compose)
    assert compose[-1].endswith(" up --detach --no-deps --no-build api")
    assert docker("network", "inspect", f"{name}_data").returncode != 0
    assert docker("ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={name}").stdout == ""
