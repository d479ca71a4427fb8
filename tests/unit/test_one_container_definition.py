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
from iosops.monitoring import stack as mstack
from iosops.runner import Runner

ROOT = Path(__file__).resolve().parents[2]
PATTERNS = re.compile(r'run_detached\(|DOCKER, "run"|DOCKER, "kill"|"docker", "run"|containers\.run\(|'
                      r'create_container\(')
# Where a match is allowed, and why. The first two are the definitions issue #14 still has to fold into
# docker/compose.yml (`inv up` and `inv monitoring.up` run plain containers on `<stack>-net`).
ALLOWED = {
    "iosops/commands/docker.py": "the argv builder itself",
    "iosops/dockerx.py": "a stopped container of an image to copy files out of; not a stack service",
    "iosops/stack/local.py": "KNOWN (issue #14): `inv up`'s API, PostgreSQL, Redis and its migration run",
    "iosops/monitoring/stack.py": "KNOWN (issue #14): `inv monitoring.up`'s Prometheus, Alertmanager, exporters",
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


def test_monitoring_up_uses_the_compose_memory_limits():
    env = load_env("local", environ={})
    mem = mstack.compose_memory(env)
    assert mem == {"prometheus": "1g", "alertmanager": "256m", "postgres_exporter": "128m",
                   "redis_exporter": "64m", "node_exporter": "64m"}
    for key, svc in mstack.COMPOSE_SERVICES.items():
        assert str(COMPOSE["services"][svc]["mem_limit"]).endswith(mem[key] + "}") or \
            COMPOSE["services"][svc]["mem_limit"] == mem[key]


def test_monitoring_up_plan_has_compose_memory_and_configured_retention(tmp_path):
    """Dry-run of monitoring.up (probes answered by an executor): Prometheus runs with the compose file's
    memory limit (1g, was 512m) and the env's retention, the values a deployed monitoring profile gets."""
    from iosops.runner import Result, by_argv

    env = load_env("local", environ={"IOSOPS_STATE_DIR": str(tmp_path / "state")},
                   overrides={"monitoring": {"retention_time": "3d"}})

    def executor(argv, **kw):
        if argv[1:3] == ["inspect", "--format"] and argv[3] == "{{.Id}}" and argv[4].endswith("-net"):
            return Result(0, "netid\n")
        return Result(1, "", "No such object")

    runner = Runner(dry_run=True, executor=by_argv(executor), say=lambda s: None)
    mstack.up(env, runner)
    prom = [p for p in runner.plan() if " run --detach " in p and "--name iosops-local-prometheus " in p]
    assert len(prom) == 1 and "--memory 1g" in prom[0]
    assert "--storage.tsdb.retention.time=3d" in prom[0] and "--storage.tsdb.retention.size=10GB" in prom[0]
    am = [p for p in runner.plan() if "--name iosops-local-alertmanager " in p]
    assert len(am) == 1 and "--memory 256m" in am[0]
