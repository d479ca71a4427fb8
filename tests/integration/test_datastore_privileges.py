"""Least privilege in a deployed compose stack, for real: the stack `inv deploy` brought up (its own project
name, ports and state dir; label iosops.test=1; removed with its volumes).

PostgreSQL: the serving API connects as ios_app, which can do DML on the app schema and nothing else (no
CREATE of a table, temp table, function or schema, no DROP/ALTER/TRUNCATE, no COPY ... TO PROGRAM, no
other schema, no pg_authid, no other database); migrations apply as ios_owner (a new table is then the
app's by default privileges); the exporter reads pg_stat_* as iosops_monitor (pg_monitor) and no table.
Redis: the default user is off, each ACL user can do only its own commands on its own keys.
Containers: capabilities dropped, no-new-privileges, read-only root, and no password in any container's
argv or environment (`docker inspect`)."""
import json
import shutil

import pytest

from iosops.commands import compose as cc
from iosops.deploy import dbusers as u
from iosops.runner import Runner
from tests.conftest import ROOT
from tests.integration.conftest import deployed_stack, docker

QUIET = Runner(say=lambda line: None)

# Run inside the API container with its own settings (as the serving API connects: ios_app over TCP):
# each statement in its own connection; the answer is the SQLSTATE of the error, or "ok".
PROBE = r"""
import json, sys, psycopg
from iosapi.settings import load
s = load()
out = {}
for sql in json.loads(sys.argv[1]):
    try:
        with psycopg.connect(s.pg_conninfo, autocommit=True) as c:
            c.execute(sql)
        out[sql] = "ok"
    except psycopg.Error as e:
        out[sql] = e.sqlstate or type(e).__name__
other = s.pg_conninfo.replace("/" + s.pg_db + "?", "/postgres?")
try:
    psycopg.connect(other).close()
    out["connect postgres"] = "ok"
except psycopg.Error as e:
    out["connect postgres"] = e.sqlstate or type(e).__name__
print(json.dumps(out))
"""

DENIED = "42501"  # insufficient_privilege


@pytest.fixture(scope="module")
def stack(api_image, offline_images, tmp_path_factory):
    with deployed_stack(api_image, tmp_path_factory, "priv") as st:
        yield st


def compose(stack, *args, input=None, check=True):
    t = stack["t"]
    return t.runner.run([*t.base(), *args], input=input, check=check)


def superuser_sql(stack, sql: str) -> str:
    """As the superuser, over the socket inside the PostgreSQL container (as the role setup runs)."""
    return compose(stack, "exec", "-T", "postgres", "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                   "-h", "/run/postgresql", "-U", "ios", "-d", "ios", "-f", "-", input=sql).stdout.strip()


def probe(stack, statements: list[str]) -> dict:
    r = compose(stack, "exec", "-T", "api-blue", "python3", "-c", PROBE, json.dumps(statements))
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_the_app_role_has_dml_on_its_schema_and_nothing_else(stack):
    superuser_sql(stack, "CREATE SCHEMA IF NOT EXISTS other; CREATE TABLE IF NOT EXISTS other.secret (x int);")
    got = probe(stack, [
        "SELECT current_user = 'ios_app' AND NOT rolsuper FROM pg_roles WHERE rolname = current_user",
        "INSERT INTO items (name) VALUES ('priv-probe')",
        "SELECT count(*) FROM items", "UPDATE items SET name = 'priv-probe-2' WHERE name = 'priv-probe'",
        "DELETE FROM items WHERE name = 'priv-probe-2'",
        "CREATE TABLE t_by_app (x int)", "CREATE TABLE public.t_by_app2 (x int)", "CREATE TEMP TABLE t_tmp (x int)",
        "CREATE SCHEMA s_by_app", "CREATE FUNCTION f_by_app() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE VIEW v_by_app AS SELECT 1", "DROP TABLE items", "ALTER TABLE items ADD COLUMN z int", "TRUNCATE items",
        "COPY (SELECT 1) TO PROGRAM 'id'", "COPY items TO '/tmp/items.csv'", "SELECT * FROM other.secret",
        "SELECT rolpassword FROM pg_authid", "SELECT pg_read_file('/etc/passwd')", "CREATE ROLE r_by_app",
        "DELETE FROM schema_migrations WHERE false",
    ])
    ok = ["SELECT current_user = 'ios_app' AND NOT rolsuper FROM pg_roles WHERE rolname = current_user",
          "INSERT INTO items (name) VALUES ('priv-probe')", "SELECT count(*) FROM items",
          "UPDATE items SET name = 'priv-probe-2' WHERE name = 'priv-probe'", "DELETE FROM items WHERE name = 'priv-probe-2'",
          "DELETE FROM schema_migrations WHERE false"]
    assert {k: v for k, v in got.items() if k in ok} == {k: "ok" for k in ok}, got
    refused = {k: v for k, v in got.items() if k not in ok}
    assert refused == {k: DENIED for k in refused} | {"connect postgres": refused["connect postgres"]}, refused
    assert refused["connect postgres"] != "ok"  # CONNECT revoked from PUBLIC on every other database
    assert superuser_sql(stack, "SELECT count(*) FROM pg_class WHERE relname IN ('t_by_app', 't_by_app2', 'v_by_app')") == "0"


def test_migrations_apply_as_the_owner_and_new_tables_are_the_apps(stack, tmp_path):
    """A release with one more migration: the one-off migration container (owner's secret mounted into it
    only) creates the table; by default privileges the serving API can use it at once, but not own it."""
    mig = tmp_path / "migrations"
    mig.mkdir()
    shutil.copy(ROOT / "app/migrations/0001_create_items.sql", mig)
    (mig / "0002_priv_notes.sql").write_text("CREATE TABLE priv_notes (id bigserial PRIMARY KEY, body text NOT NULL);\n")
    for p in (tmp_path, mig, *mig.iterdir()):  # readable by the API image's uid 10001
        p.chmod(0o755 if p.is_dir() else 0o644)
    t = stack["t"]
    r = t.runner.run(cc.run_once(t.base(), "api-blue", ["python3", "-m", "iosapi.migrate"],
                                 env={**u.MIGRATE_ENV, "MIGRATIONS_DIR": "/mig"},
                                 volumes=[u.migrate_secret_mount(t), f"{mig}:/mig:ro"]))
    assert "0002_priv_notes" in r.stdout, r.stdout
    owner = superuser_sql(stack, "SELECT relowner::regrole FROM pg_class WHERE relname IN ('priv_notes', 'priv_notes_id_seq')")
    assert owner.split() == ["ios_owner", "ios_owner"]
    got = probe(stack, ["INSERT INTO priv_notes (body) VALUES ('x')", "SELECT count(*) FROM priv_notes",
                        "DROP TABLE priv_notes", "ALTER TABLE priv_notes ADD COLUMN y int"])
    assert list(got.values())[:4] == ["ok", "ok", DENIED, DENIED], got
    # The serving API has the app's password only: not the owner's, not the superuser's.
    ls = compose(stack, "exec", "-T", "api-blue", "ls", "/run/secrets").stdout.split()
    assert sorted(ls) == ["postgres_app_password", "redis_app_password"]


def test_the_exporters_read_statistics_as_their_monitor_users(stack):
    try:
        compose(stack, "up", "--detach", "--no-deps", "--no-build", "postgres-exporter", "redis-exporter")
        code = ("import sys, time, urllib.request\n"
                "deadline = time.time() + 60\n"
                "while True:\n"
                "    try:\n"
                "        pg = urllib.request.urlopen('http://postgres-exporter:9187/metrics', timeout=5).read().decode()\n"
                "        rd = urllib.request.urlopen('http://redis-exporter:9121/metrics', timeout=5).read().decode()\n"
                "        if 'pg_up 1' in pg and 'redis_up 1' in rd: break\n"
                "    except OSError:\n"
                "        pass\n"
                "    if time.time() > deadline: break\n"
                "    time.sleep(1)\n"
                "print(pg + '\\n' + rd)\n")
        text = compose(stack, "exec", "-T", "api-blue", "python3", "-c", code).stdout
        assert "pg_up 1" in text and 'pg_stat_database_xact_commit{datid=' in text, text[-2000:]
        assert "pg_stat_bgwriter_buffers_alloc" in text and "pg_stat_activity_count{" in text
        assert "redis_up 1" in text and 'redis_exporter_last_scrape_error{err=""} 0' in text, text[-2000:]
        assert "redis_connected_clients" in text and "redis_config_maxmemory" in text
        # iosops_monitor: statistics of every session (pg_read_all_stats), no table data
        monitor = superuser_sql(stack, "SET ROLE iosops_monitor; SELECT pg_has_role('pg_monitor', 'member'), "
                                       "has_table_privilege((SELECT oid FROM pg_class WHERE relname = 'items'), 'SELECT'), "
                                       "count(*) FILTER (WHERE query = '<insufficient privilege>') FROM pg_stat_activity")
        assert monitor == "t|f|0", monitor
    finally:
        compose(stack, "rm", "--force", "--stop", "postgres-exporter", "redis-exporter", check=False)


REDIS_PROBE = r"""
import json, sys, redis
from iosapi.settings import load
s = load()
def run(user, password, *cmd):
    try:
        c = redis.Redis.from_url(s.redis_url, username=user, password=password, socket_timeout=5)
        return str(c.execute_command(*cmd))
    except redis.exceptions.ResponseError as e:
        return str(e).split(" ", 1)[0] if str(e)[:1].isupper() else type(e).__name__
    except redis.exceptions.RedisError as e:
        return type(e).__name__
out = {
  "anonymous GET": run(None, None, "GET", "ios:item:1"),
  "default AUTH": run("default", "x", "PING"),
  "app SET ios:": run(s.redis_username, s.redis_password, "SET", "ios:item:priv", "1", "EX", "60"),
  "app GET ios:": run(s.redis_username, s.redis_password, "GET", "ios:item:priv"),
  "app SET other": run(s.redis_username, s.redis_password, "SET", "other:key", "1"),
  "app KEYS": run(s.redis_username, s.redis_password, "KEYS", "*"),
  "app FLUSHALL": run(s.redis_username, s.redis_password, "FLUSHALL"),
  "app CONFIG": run(s.redis_username, s.redis_password, "CONFIG", "SET", "protected-mode", "no"),
  "app ACL": run(s.redis_username, s.redis_password, "ACL", "LIST"),
  "health GET": run("healthcheck", "x", "GET", "ios:item:priv"),
  "health PING": run("healthcheck", "x", "PING"),
}
print(json.dumps(out))
"""


def test_redis_users_can_do_only_their_own_commands_on_their_own_keys(stack):
    got = json.loads(compose(stack, "exec", "-T", "api-blue", "python3", "-c", REDIS_PROBE).stdout.strip().splitlines()[-1])
    assert got["anonymous GET"] in ("NOAUTH", "AuthenticationError"), got
    assert got["default AUTH"] in ("WRONGPASS", "AuthenticationError"), got  # the default user is off
    assert (got["app SET ios:"], got["app GET ios:"]) == ("True", "b'1'"), got
    for k in ("app SET other", "app KEYS", "app FLUSHALL", "app CONFIG", "app ACL", "health GET"):
        assert got[k] in ("NOPERM", "NoPermissionError"), (k, got)
    assert got["health PING"] == "True"
    # the backup user (in the ops container, as a backup runs it): INFO and SCAN yes, reading a value no
    code = ("import json; from iosops.config import load_env; from iosops.runner import Runner; "
            "from iosops.backup import sources as s; from iosops.commands import redis as rc; "
            "e = load_env('local'); r = e.cfg.backup.redis; run = Runner(say=lambda l: None); "
            "info = s.redis_info(e, run); fp = s.redis_fingerprint(e, run); "
            "get = run.run(rc.raw(r.host, r.port, 'GET', 'ios:item:priv', user=r.user), env=s.redis_env(e), check=False).stdout; "
            "print(json.dumps({'loading': info.get('loading'), 'keys': fp['keys'], 'get': get.strip()}))")
    r = compose(stack, "run", "--rm", "--no-deps", "-T", "--entrypoint", "python3", "ops", "-c", code, check=False)
    assert r.rc == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["loading"] == "0" and out["keys"] >= 1 and out["get"].startswith("NOPERM"), out
    acl = stack["t"].read(u.REDIS_ACL_FILE)
    assert "user default off" in acl and not [s for s in local_secrets() if s in acl]  # hashes only


def local_secrets() -> list[str]:
    """The local env's generated secret values (long enough not to match by chance)."""
    values = [p.read_text().strip() for p in (ROOT / ".iosops/local/secrets").iterdir() if p.is_file()]
    return [v for v in values if len(v) >= 12]


def test_containers_run_without_capabilities_or_passwords_in_their_definition(stack):
    ids = docker("ps", "-q", "--filter", f"label=com.docker.compose.project={stack['name']}").stdout.split()
    assert len(ids) >= 5  # postgres, redis, walstream, api, nginx
    secrets = local_secrets()
    assert len(secrets) >= 8
    for cid in ids:
        raw = docker("inspect", cid).stdout
        info = json.loads(raw)[0]
        name, host = info["Name"], info["HostConfig"]
        assert host["CapDrop"] == ["ALL"] or host["CapDrop"] == ["all"], name
        assert set(host.get("CapAdd") or []) <= ({"CHOWN", "SETUID", "SETGID", "NET_BIND_SERVICE"}
                                                 if "nginx" in name else set()), name
        assert "no-new-privileges:true" in host["SecurityOpt"] and host["ReadonlyRootfs"] is True, name
        assert not host["Privileged"], name
        if "_redis_" in name:
            cmd = info["Config"]["Cmd"]
            assert cmd[cmd.index("--protected-mode") + 1] == "yes" and "--aclfile" in cmd
        leaked = [i for i, s in enumerate(secrets) if s in raw]
        assert not leaked, f"{name}: a secret value in docker inspect"
