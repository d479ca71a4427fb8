"""Least privilege in the compose stack, read from the config docker-compose itself renders (every service,
every profile): no capabilities but the documented ones, no privilege gain, a read-only root filesystem,
tmpfs that cannot hold setuid files; each service connects to the datastores as its own role or user;
and the Redis ACL and PostgreSQL role setup a deploy renders (pure parts; the real servers:
tests/integration/test_datastore_privileges.py).
The checks that run the real programs are in the tools tier: tests/tools/test_compose_privileges.py."""
import hashlib
import re


from iosops.backup.stack import BACKUP_ROLE, REDIS_BACKUP_USER
from iosops.deploy import dbusers as u
from tests.conftest import ROOT

COMPOSE_TEXT = (ROOT / "docker/compose.yml").read_text()
# Capabilities a service may add back, each for a reason given beside it in docker/compose.yml.
ALLOWED_CAPS = {"nginx": {"CHOWN", "SETUID", "SETGID", "NET_BIND_SERVICE"}}


def test_each_capability_added_back_says_why():
    """In docker/compose.yml, every cap_add entry carries its reason as a comment on its line."""
    lines = COMPOSE_TEXT.splitlines()
    entries = [l for i, l in enumerate(lines) if re.match(r"\s+- [A-Z_]+\s", l + " ")
               and any("cap_add:" in p for p in lines[max(0, i - 4):i])]
    assert len(entries) == sum(len(c) for c in ALLOWED_CAPS.values())
    for line in entries:
        assert re.search(r"- [A-Z_]+\s+# \w.{10,}", line), f"no reason given: {line.strip()}"


def test_redis_acl_holds_hashes_and_the_least_each_user_needs():
    acl = u.redis_acl("app-pw-1", "bk-pw-2", "ex-pw-3")  # pragma: allowlist secret - test values
    assert all(line.startswith("user ") for line in acl.splitlines())  # Redis refuses anything else
    users = {l.split()[1]: l.split()[2:] for l in acl.splitlines()}
    assert set(users) == {"default", u.REDIS_HEALTH_USER, u.REDIS_APP_USER, REDIS_BACKUP_USER, u.REDIS_EXPORTER_USER}
    assert users["default"][0] == "off" and "resetpass" in users["default"] and "-@all" in users["default"]
    for pw in ("app-pw-1", "bk-pw-2", "ex-pw-3"):
        assert pw not in acl and "#" + hashlib.sha256(pw.encode()).hexdigest() in acl
    assert users[u.REDIS_HEALTH_USER][-2:] == ["-@all", "+ping"] and not [r for r in users[u.REDIS_HEALTH_USER] if r.startswith("~")]
    app = users[u.REDIS_APP_USER]
    assert "~ios:*" in app and "~*" not in app and "allkeys" not in app
    assert app[app.index("-@all") + 1:] == ["+ping", "+get", "+set", "+del"]
    for user in (REDIS_BACKUP_USER, u.REDIS_EXPORTER_USER):  # no key access at all
        assert not [r for r in users[user] if r.startswith(("~", "%", "allkeys"))] and "resetkeys" in users[user]
    assert "+bgsave" in users[REDIS_BACKUP_USER] and "+flushall" not in acl and "+@" not in acl


def test_role_setup_reads_passwords_in_the_container_and_names_roles_only():
    argv = u.ensure_roles_argv(["docker-compose"], "ios", "ios", BACKUP_ROLE)
    assert argv[:4] == ["docker-compose", "exec", "-T", "postgres"] and argv[-2:] == ["-f", "-"]
    assert "-v owner=ios_owner -v app=ios_app -v monitor=iosops_monitor -v backup=iosops_backup" in " ".join(argv)
    # passwords: read by psql from the secret files (backquotes), logging off first; never a value in SQL text
    sql = u.ROLES_SQL
    assert sql.index("SET log_statement = 'none'") < sql.index("\\set owner_pw `cat /run/secrets/postgres_owner_password`")
    assert "BEGIN;" in sql and "COMMIT;" in sql and "GRANT pg_monitor" in sql
    assert "ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES" in sql
    # DML and sequences only: never CREATE, TRUNCATE, REFERENCES or TRIGGER for the app role
    for grant in re.findall(r"GRANT ([A-Z, ]+) ON", sql):
        assert not {"CREATE", "TRUNCATE", "REFERENCES", "TRIGGER", "ALL"} & set(re.split(r",\s*", grant)), grant
