"""`inv` as users run it: one-line errors with exit 2 for bad input, dry-runs that change nothing,
and `inv --list` with one-line help. Runs `inv` in a subprocess; needs no Docker engine."""
import json
import time

import pytest

from tests.conftest import ROOT, run_inv


def one_line_error(proc, code):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture
def bad_envs(tmp_path):
    d = tmp_path / "envs"
    d.mkdir()
    (d / "defaults.yaml").write_text((ROOT / "envs/defaults.yaml").read_text())
    return d


def test_list_shows_tasks_with_help_fast():
    start = time.monotonic()
    proc = run_inv("--list")
    assert proc.returncode == 0
    for name in ("build", "up", "down", "config.show", "images.offline", "lock.status", "ci.test"):
        assert f"  {name} " in proc.stdout
    assert time.monotonic() - start < 5  # generous here; benchmarks/image.py measures the < 1 s figure


def test_unknown_env_is_exit_2_and_lists_known():
    line = one_line_error(run_inv("config.show", "--env", "qa"), 2)
    assert "unknown env 'qa'; known envs: local, prod, staging" in line


def test_malformed_yaml_is_exit_2_with_file_and_line(bad_envs):
    (bad_envs / "local.yaml").write_text("stack:\n  api_port: 80\n   bad_indent: 1\n")
    line = one_line_error(run_inv("build", "--env", "local", "--dry-run", env={"IOSOPS_ENVS_DIR": str(bad_envs)}), 2)
    assert "local.yaml:3: malformed YAML" in line


def test_wrong_type_is_exit_2_with_field_path(bad_envs):
    (bad_envs / "local.yaml").write_text("stack:\n  api_workers: many\n")
    line = one_line_error(run_inv("config.show", "--env", "local", env={"IOSOPS_ENVS_DIR": str(bad_envs)}), 2)
    assert "stack.api_workers" in line and "integer" in line


def test_missing_secret_is_exit_2_naming_reference_not_value():
    proc = run_inv("up", "--env", "staging", "--tag", "x", env={"IOS_STAGING_POSTGRES_PASSWORD": ""})
    line = one_line_error(proc, 2)
    assert "IOS_STAGING_POSTGRES_PASSWORD is not set" in line


def test_local_backup_store_for_kubernetes_is_exit_2():
    line = one_line_error(run_inv("config.show", "--env", "prod", env={"IOSOPS_BACKUP__STORE__KIND": "local"}), 2)
    assert "backup.store.kind: 'local' keeps recovery points on one machine" in line and "fix it and retry" in line


def test_docker_unreachable_is_exit_2_with_fix():
    proc = run_inv("build", "--tag", "unit-x", env={"IOSOPS_DOCKER__HOST": "unix:///nonexistent/docker.sock"})
    line = one_line_error(proc, 2)
    assert "Docker engine unreachable at unix:///nonexistent/docker.sock" in line and "bootstrap.sh" in line


def test_bad_tag_is_exit_2():
    line = one_line_error(run_inv("build", "--tag", "-bad tag", "--dry-run"), 2)
    assert "is not a valid image tag" in line


def test_build_dry_run_prints_plan_and_changes_nothing(tmp_path):
    state = tmp_path / "state"
    proc = run_inv("build", "--tag", "dry-1", "--dry-run", "--json",
                   env={"IOSOPS_STATE_DIR": str(state), "IOSOPS_DOCKER__HOST": "unix:///nonexistent/docker.sock"})
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)["plan"]
    assert any(p.startswith("docker-sdk build ") and "tag=iosops/api:dry-1" in p for p in plan)
    assert not state.exists()  # no lock, no audit line: a dry-run changes nothing


def test_config_show_json_is_redacted(tmp_path):
    sentinel = "prod-sentinel-value-991"
    proc = run_inv("config.show", "--env", "prod", "--json", env={"IOS_PROD_POSTGRES_PASSWORD": sentinel})
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert data["secrets"]["postgres_password"] == {"env": "IOS_PROD_POSTGRES_PASSWORD", "value": "***"}
    assert sentinel not in proc.stdout + proc.stderr


@pytest.mark.parametrize("task", ["images.offline", "images.stale"])
def test_unknown_image_key_is_exit_2_before_any_engine_or_archive_contact(task, tmp_path):
    state = tmp_path / "state"
    proc = run_inv(task, "--only", "base,pythn", env={"IOSOPS_STATE_DIR": str(state),
                                                       "IOSOPS_DOCKER__HOST": "unix:///nonexistent/docker.sock"})
    line = one_line_error(proc, 2)
    assert "--only: unknown image(s) pythn; known: base, python," in line
    assert not state.exists()  # no lock taken, no audit line


@pytest.mark.parametrize("task", [["down", "--env", "local", "--volumes"], ["restore", "--env", "local", "--latest"]])
def test_a_destructive_task_without_a_terminal_or_yes_refuses_and_changes_nothing(task, tmp_path):
    """No terminal to type the env name at, no --yes: exit 2, one line, nothing touched (the Docker engine is
    pointed nowhere, so reaching it would fail differently)."""
    state = tmp_path / "state"
    proc = run_inv(*task, env={"IOSOPS_STATE_DIR": str(state), "IOSOPS_STACK__NAME": "iosops-test-confirm",
                               "IOSOPS_DOCKER__HOST": "unix:///nonexistent/docker.sock"})
    line = one_line_error(proc, 2)
    assert "needs a typed confirmation; run it in a terminal, or pass --yes; nothing was changed" in line
