"""Issue #14: docker/compose.yml is to be the one definition of the stack's containers. Everything that starts
or kills a stack container outside compose is listed here; the list may only shrink.

A grep over iosops/: `docker run`/`docker kill` argv, `run_detached`, the SDK's containers.run and
create_container. A new place that defines a container the compose file does not fails this test: add the
service (or a profile) to docker/compose.yml and run it with iosops.commands.compose instead."""
import re
from pathlib import Path

import yaml

from iosops.config import load_env
from iosops.deploy import stackfiles as sf
from iosops.deploy.target import targets
from iosops.runner import Runner

ROOT = Path(__file__).resolve().parents[2]
PATTERNS = re.compile(r'run_detached\(|DOCKER, "run"|DOCKER, "kill"|"docker", "run"|containers\.run\(|'
                      r'create_container\(')
# Where a match is allowed, and why. `inv up` (profile quick) and `inv monitoring.up` (profile monitoring)
# run docker/compose.yml too since issue #14: no stack container is defined anywhere else.
ALLOWED = {
    "iosops/dockerx.py": "a stopped container of an image to copy files out of; not a stack service",
}


def offenders() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in sorted((ROOT / "iosops").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        hits = [f"{i}: {line.strip()}" for i, line in enumerate(path.read_text().splitlines(), 1)
                if PATTERNS.search(line) and not line.lstrip().startswith("#")]
        if hits:
            out[rel] = hits
    return out


def test_no_container_is_defined_outside_compose_except_the_known_ones():
    found = offenders()
    unexpected = {k: v for k, v in found.items() if k not in ALLOWED}
    assert not unexpected, f"containers started outside docker/compose.yml: {unexpected}"


def test_the_known_list_only_shrinks():
    """An entry whose file no longer starts containers must leave ALLOWED (the ratchet)."""
    found = offenders()
    stale = [k for k in ALLOWED if k not in found]
    assert not stale, f"remove from ALLOWED (no container defined there any more): {stale}"


def test_the_drill_kills_and_removes_through_compose():
    text = (ROOT / "iosops/backup/drill.py").read_text()
    assert "cc.kill(t.base(), lost)" in text and "cc.rm(t.base(), lost)" in text
    assert not re.search(r'DOCKER, "(run|kill)"', text)


COMPOSE = yaml.safe_load((ROOT / "docker/compose.yml").read_text())


def test_prometheus_retention_and_memory_come_from_the_env():
    cmd = COMPOSE["services"]["prometheus"]["command"]
    assert "--storage.tsdb.retention.time=${PROMETHEUS_RETENTION_TIME:-15d}" in cmd
    assert "--storage.tsdb.retention.size=${PROMETHEUS_RETENTION_SIZE:-10GB}" in cmd
    assert not any(re.search(r"retention\.(time|size)=[0-9]", a) for a in cmd)  # no literal left
    env = load_env("local", environ={}, overrides={"monitoring": {"retention_time": "3d", "retention_size": "2GB"}})
    lines = sf.stack_env(env, {}, targets(env, Runner())[0]).splitlines()
    assert "PROMETHEUS_RETENTION_TIME=3d" in lines and "PROMETHEUS_RETENTION_SIZE=2GB" in lines


def test_retention_does_not_restart_the_datastores(tmp_path):
    """The datastores' fingerprint ignores the monitoring values (a retention change recreates nothing else)."""
    a = load_env("local", environ={"IOSOPS_STATE_DIR": str(tmp_path)})
    b = load_env("local", environ={"IOSOPS_STATE_DIR": str(tmp_path)}, overrides={"monitoring": {"retention_time": "3d"}})
    assert sf.datastores_fingerprint(targets(a, Runner())[0], {}) == sf.datastores_fingerprint(targets(b, Runner())[0], {})


def test_inv_up_runs_the_quick_profile_of_the_compose_file(tmp_path):
    """Dry-run of `inv up` (probes answered by an executor): compose up of the datastores, the migrations in
    a one-off `compose run` of the quick profile's `api` as the schema's owner, then compose up of `api`;
    the roles made as the deploy makes them; no plain `docker run` anywhere."""
    from iosops.runner import Result, by_argv
    from iosops.stack import local

    env = load_env("local", environ={"IOSOPS_STATE_DIR": str(tmp_path / "state")})
    runner = Runner(dry_run=True, executor=by_argv(lambda argv, **kw: Result(1, "", "No such object")),
                    say=lambda s: None)
    local.up(env, runner, "iosops/api:t1")
    plan = runner.plan()
    compose = [p for p in plan if p.startswith("docker-compose --project-name iosops-local ")]
    assert all("--profile quick" in p for p in compose)
    acts = [p.split(" --profile quick ", 1)[1].split(" ", 3)[:3] for p in compose]
    assert acts[0] == ["up", "--detach", "--no-deps"] and compose[0].endswith(" postgres redis")
    assert [a[:2] for a in acts[1:]] == [["exec", "-T"], ["exec", "-T"], ["run", "--rm"], ["up", "--detach"]]
    assert "pg-ensure-backup-role" in compose[1] and "ensure-roles psql" in compose[2]
    assert "-e POSTGRES_USER=ios_owner" in compose[3] and "schema_migrations" in compose[3]
    assert compose[4].endswith(" up --detach --no-deps --no-build api")
    assert not [p for p in plan if re.search(r"docker (run|create) ", p)]
    env_file = [p for p in plan if p.startswith("write ") and p.split()[1].endswith("/stack.env")]
    assert env_file  # API_IMAGE and API_PORT go to stack.env (the deploy's file, same renderer)


def test_quick_and_monitoring_profiles_in_the_compose_file():
    svcs = COMPOSE["services"]
    api = svcs["api"]
    assert api["profiles"] == ["quick"] and api["image"] == "${API_IMAGE:-iosops/api:none}"
    assert api["ports"] == ["${PUBLISH_HOST:-127.0.0.1}:${API_PORT:-8080}:8000"]
    assert api["environment"]["POSTGRES_USER"] == "ios_app"  # least privilege, as the colours
    # The offline images have no ENTRYPOINT: the binaries are named.
    assert svcs["prometheus"]["entrypoint"] == ["prometheus"]
    assert svcs["alertmanager"]["entrypoint"] == ["prometheus-alertmanager"]
    for svc in ("prometheus", "alertmanager"):
        assert svcs[svc]["ports"][0].startswith("${MONITORING_PUBLISH_HOST:-127.0.0.1}:")
    assert svcs["alertmanager"]["secrets"] == ["slack_webhook_url"]
    assert any("--extend.query-path=" in a for a in svcs["postgres-exporter"]["command"])
    assert "--collector.textfile.directory=/textfile" in svcs["node-exporter"]["command"]
    lines = sf.stack_env(load_env("local", environ={}), {"quick": "iosops/api:q"},
                         targets(load_env("local", environ={}), Runner())[0]).splitlines()
    assert "API_IMAGE=iosops/api:q" in lines and "API_PORT=8080" in lines and "MONITORING_PUBLISH_HOST=127.0.0.1" in lines


def test_inv_up_names_the_volume_of_the_docker_run_era_and_keeps_it(tmp_path):
    """An `inv up` of before kept PostgreSQL in `<stack>-pgdata`; compose's volume is `<stack>_pgdata`: one
    line says so (data not carried over, nothing deleted), and nothing in the plan touches the old volume."""
    from iosops.runner import Result, by_argv
    from iosops.stack import local

    env = load_env("local", environ={"IOSOPS_STATE_DIR": str(tmp_path / "state")})

    def executor(argv, **kw):
        return Result(0, "iosops-local-pgdata\n") if argv[-1] == "iosops-local-pgdata" else Result(1, "", "No such")

    said = []
    runner = Runner(dry_run=True, executor=by_argv(executor), say=said.append)
    result = local.up(env, runner, "iosops/api:t1")
    assert result.notice.startswith("notice: volume iosops-local-pgdata (PostgreSQL data of an earlier `inv up`) is "
                                    "kept untouched and no longer used: `inv up` now keeps its data in "
                                    "iosops-local_pgdata")
    assert any(result.notice in s for s in said)
    assert not [p for p in runner.plan() if "iosops-local-pgdata" in p and "# read" not in p]


def test_inv_down_takes_the_compose_project_then_what_an_older_up_left(tmp_path):
    from iosops.runner import Result, by_argv
    from iosops.stack import local

    env = load_env("local", environ={"IOSOPS_STATE_DIR": str(tmp_path / "state")})
    runner = Runner(executor=by_argv(lambda argv, **kw: Result(0, "c1\n") if "--quiet" in argv else Result(0, "")),
                    say=lambda s: None)
    removed = local.down(env, runner, volumes=True)
    acts = [a.text for a in runner.actions if a.mutating]
    assert "down --remove-orphans --volumes" in acts[0] and "--profile quick --profile monitoring" in acts[0]
    assert removed == ["1 container(s)", "1 network(s)", "1 volume(s)"]


def test_inv_up_refuses_while_the_docker_run_stack_of_before_runs(tmp_path):
    import pytest

    from iosops.errors import BadInput
    from iosops.runner import Result, by_argv
    from iosops.stack import local

    env = load_env("local", environ={"IOSOPS_STATE_DIR": str(tmp_path / "state")})
    runner = Runner(executor=by_argv(lambda argv, **kw: Result(0, "x\n") if argv[-1] == "iosops-local-api"
                                     else Result(1, "", "No such")), say=lambda s: None)
    with pytest.raises(BadInput, match=r"earlier `inv up` .*iosops-local-api.*`inv down --env local`.*nothing was changed"):
        local.up(env, runner, "iosops/api:t1")
    assert not [a for a in runner.actions if a.mutating]
