"""The tools-tier half of tests/unit/test_compose_privileges.py: these tests run real programs (see tests/tools/__init__.py)."""
import shutil
import subprocess

import pytest
import yaml

from iosops.backup.stack import BACKUP_ROLE, SECRET_FILES
from iosops.deploy import dbusers as u
from tests.unit.test_compose_privileges import ALLOWED_CAPS, COMPOSE_TEXT

# tmpfs mounts that may hold executables: the JDK/JNA unpack native libraries into Elasticsearch's temp dir.
EXEC_TMPFS = {("elasticsearch", "/tmp")}
STACK_ENV = {"IOSOPS_STACK": "s", "IOSOPS_ENV": "local", "POSTGRES_IMAGE": "p", "REDIS_IMAGE": "r", "NGINX_IMAGE": "n",
             "PROMETHEUS_IMAGE": "pr", "ALERTMANAGER_IMAGE": "am", "POSTGRES_EXPORTER_IMAGE": "pe",
             "REDIS_EXPORTER_IMAGE": "re", "NODE_EXPORTER_IMAGE": "ne"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    if not shutil.which("docker-compose"):
        pytest.fail("docker-compose 1.29 is not installed (scripts/bootstrap.sh installs it)")
    d = tmp_path_factory.mktemp("compose")
    (d / "compose.yml").write_text(COMPOSE_TEXT)
    (d / "stack.env").write_text("".join(f"{k}={v}\n" for k, v in STACK_ENV.items()))
    out = subprocess.run(["docker-compose", "--project-directory", str(d), "-f", str(d / "compose.yml"),
                          "--env-file", str(d / "stack.env"), "config"], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    return yaml.safe_load(out)


def test_every_service_drops_capabilities_gains_no_privilege_and_runs_read_only(rendered):
    services = rendered["services"]
    # every service of every profile is rendered (so a new one cannot slip past this test)
    assert set(services) == set(yaml.safe_load(COMPOSE_TEXT)["services"]) and len(services) == 15
    for name, svc in services.items():
        assert svc.get("cap_drop") == ["ALL"], f"{name}: cap_drop must be [ALL]"
        assert set(svc.get("cap_add") or []) <= ALLOWED_CAPS.get(name, set()), f"{name}: cap_add {svc.get('cap_add')}"
        assert "no-new-privileges:true" in (svc.get("security_opt") or []), f"{name}: no no-new-privileges"
        assert svc.get("read_only") is True, f"{name}: root filesystem is writable"
        assert not svc.get("privileged") and svc.get("pid") != "host" and svc.get("network_mode") != "host", name
        assert not svc.get("devices") and "/var/run/docker.sock" not in str(svc.get("volumes")), name
        for mount in svc.get("tmpfs") or []:
            path, _, opts = mount.partition(":")
            assert "nosuid" in opts.split(","), f"{name}: tmpfs {path} without nosuid"
            if (name, path) not in EXEC_TMPFS:
                assert "noexec" in opts.split(","), f"{name}: tmpfs {path} without noexec"


def test_a_missing_or_empty_password_file_refuses_before_psql(tmp_path):
    argv = u.ensure_roles_argv([], "ios", "ios", BACKUP_ROLE)
    check = argv[argv.index("-c") + 1]
    files = [tmp_path / "owner", tmp_path / "app", tmp_path / "mon"]
    script = check
    for real, f in zip(u.PASSWORD_FILES, files, strict=True):
        script = script.replace(real, str(f))
    files[0].write_text("x")
    files[1].write_text("")
    r = subprocess.run(["sh", "-c", script, "ensure-roles", "echo", "psql-ran"], capture_output=True, text=True)
    assert r.returncode == 2 and "psql-ran" not in r.stdout and r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith("ensure-roles: ") and r.stderr.strip().endswith("app is missing or empty")
    files[1].write_text("y")
    files[2].write_text("z")
    r = subprocess.run(["sh", "-c", script, "ensure-roles", "echo", "psql-ran"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "psql-ran\n"


def test_services_use_their_own_datastore_roles_and_users(rendered):
    s = rendered["services"]
    for colour in ("api-blue", "api-green", "api"):  # api: `inv up`'s one API (profile quick)
        env, secrets = s[colour]["environment"], {x["source"] if isinstance(x, dict) else x for x in s[colour]["secrets"]}
        assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD_FILE"]) == (u.APP_ROLE, "/run/secrets/postgres_app_password")
        assert (env["REDIS_USERNAME"], env["REDIS_PASSWORD_FILE"]) == (u.REDIS_APP_USER, "/run/secrets/redis_app_password")
        assert "@" not in env["REDIS_URL"]  # no credentials in a URL (docker inspect shows env values)
        # the serving API has neither the superuser's nor the migration owner's password
        assert secrets == {"postgres_app_password", "redis_app_password"}
    pe = s["postgres-exporter"]["environment"]
    assert (pe["DATA_SOURCE_USER"], pe["DATA_SOURCE_PASS_FILE"]) == (u.MONITOR_ROLE, "/run/secrets/postgres_monitor_password")
    re_ = s["redis-exporter"]["environment"]
    assert (re_["REDIS_USER"], re_["REDIS_PASSWORD_FILE"]) == (u.REDIS_EXPORTER_USER, "/run/secrets/redis_exporter_passwords")
    assert re_["REDIS_ADDR"] == u.REDIS_EXPORTER_ADDR
    for svc in ("walstream", "ops"):
        names = {x["source"] if isinstance(x, dict) else x for x in s[svc]["secrets"]}
        assert set(SECRET_FILES) <= names and "postgres_password" not in names
    pg = {x["source"] if isinstance(x, dict) else x for x in s["postgres"]["secrets"]}
    assert {"postgres_owner_password", "postgres_app_password", "postgres_monitor_password"} <= pg
    redis = s["redis"]
    cmd = redis["command"]
    assert cmd[cmd.index("--protected-mode") + 1] == "yes" and cmd[cmd.index("--aclfile") + 1] == "/etc/iosops/redis/users.acl"
    assert any(v.endswith(":/etc/iosops/redis:ro") for v in redis["volumes"])
    assert f"--user {u.REDIS_HEALTH_USER}" in " ".join(redis["healthcheck"]["test"])
    # every secret a service names is declared, and every declared one is written by a deploy
    declared = set(rendered["secrets"])
    written = set(u.STACK_SECRETS) | {u.REDIS_EXPORTER_SECRET} | set(SECRET_FILES) | {"slack_webhook_url"}
    assert declared == written
    for name, svc in s.items():
        for x in svc.get("secrets") or []:
            assert (x["source"] if isinstance(x, dict) else x) in declared, name
        assert not any("PASSWORD=" in str(v) or "PASS=" in str(v) for v in (svc.get("environment") or {}).values()), name
