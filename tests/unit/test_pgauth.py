"""A PostgreSQL volume initialised with another checkout's password (issue 13, "a newcomer never trips"):
the probe's parser on psql's real answers, where the password travels, and the deploy's refusal before it
changes anything (plans on the staging hosts' scripted executor). For real, on this machine:
tests/integration/test_second_checkout.py."""

import pytest

from iosops.commands import pg
from iosops.config import load_env
from iosops.deploy import bluegreen as bg
from iosops.errors import BadInput
from iosops.runner import by_argv, Result, Runner
from iosops.stack import pgauth
from tests.unit.test_deploy_plan import APP1, APP2, DB1, IMAGE, Hosts, staging  # noqa: F401 - fixture
from tests.unit.test_stack_backup_plan import SENTINELS

# psql 15's answers, captured from the stack's PostgreSQL container.
REFUSED = ('psql: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  password authentication '
           'failed for user "ios"\n')
NO_DB = 'psql: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  database "nodb" does not exist\n'
STARTING = ('psql: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  the database system is '
            'starting up\n')


@pytest.mark.parametrize("rc,out,verdict", [
    (0, "1\n", "ok"), (2, REFUSED, "mismatch"), (2, "ERROR: 28P01", "mismatch"),
    (2, NO_DB, "unknown"), (2, STARTING, "unknown"), (1, "Error response from daemon: No such container", "unknown"),
])
def test_parse_password_check(rc, out, verdict):
    assert pg.parse_password_check(rc, out) == verdict


def test_the_password_travels_on_stdin_never_in_argv_or_environment(tmp_path):
    env = load_env("local", environ={"IOSOPS_STATE_DIR": str(tmp_path),
                                     "IOSOPS_SECRETS__POSTGRES_PASSWORD__FILE": str(tmp_path / "pw")})
    (tmp_path / "pw").write_text("pw-sentinel-5150\n")
    seen = []

    def executor(argv, env=None, input=None, **kw):
        seen.append((argv, env, input))
        return Result(2, "", REFUSED)

    assert pgauth.probe(Runner(executor=by_argv(executor)), "c1", env) == pgauth.MISMATCH
    (argv, environ, stdin), = seen
    assert argv[:4] == ["/usr/bin/docker", "exec", "-i", "c1"] and argv[-2:] == ["ios", "ios"]
    assert "pw-sentinel-5150" not in " ".join(argv) and environ is None and stdin == "pw-sentinel-5150"
    assert "-h 127.0.0.1" in argv[6]  # over TCP: the container's local socket trusts every user


def test_local_message_names_the_secret_file_and_both_ways_out(tmp_path):
    env = load_env("local", environ={"IOSOPS_STATE_DIR": str(tmp_path)})
    msg = str(pgauth.mismatch(env, "iosops-local_pgdata"))
    mine = env.root / ".iosops/local/secrets/postgres_password"
    assert msg.startswith("the PostgreSQL volume iosops-local_pgdata was initialised by another checkout or "
                          "with another password")
    assert f"copy .iosops/local/secrets/postgres_password from the checkout that created the volume to {mine}" in msg
    assert "`inv down --env local --volumes`" in msg and msg.endswith("Nothing was changed")
    assert "\n" not in msg


# -- inv deploy on SSH hosts (staging): refused before anything changes --------------------------------------
def mutations(hosts: Hosts) -> list[str]:
    return [line for _, line in hosts.calls
            if any(w in line for w in (" up --detach", "mktemp", " rm --force", "mkdir", "chmod", "exec -T"))]


def test_running_postgres_refusing_the_password_stops_the_deploy_before_any_change(staging):  # noqa: F811
    hosts = Hosts(active="blue", fail={
        (DB1, "volume ls"): Result(0, "iosops-staging_pgdata\n"),
        (DB1, "password-check"): Result(2, "", REFUSED)})
    with pytest.raises(BadInput) as exc:
        bg.deploy(staging, Runner(executor=by_argv(hosts), say=lambda s: None), IMAGE)
    msg = str(exc.value)
    assert msg.startswith(f"the PostgreSQL volume iosops-staging_pgdata on {DB1} was initialised by another checkout")
    assert "environment variable IOS_STAGING_POSTGRES_PASSWORD" in msg and "ALTER ROLE" in msg
    assert "inv down" not in msg and msg.endswith("Nothing was changed")
    assert mutations(hosts) == [] and not [c for c in hosts.calls if "schema_migrations" in c[1]]
    assert SENTINELS["IOS_STAGING_POSTGRES_PASSWORD"] not in msg


def test_the_password_accepted_changes_nothing_in_the_deploy(staging):  # noqa: F811
    hosts = Hosts(fail={(DB1, "volume ls"): Result(0, "iosops-staging_pgdata\n")})
    hosts.running[DB1].update({"postgres": 1})
    bg.deploy(staging, Runner(executor=by_argv(hosts), say=lambda s: None), IMAGE)
    assert hosts.on(DB1, "password-check") and hosts.on(APP1, "schema_migrations")


def test_stopped_postgres_is_checked_once_started_and_what_the_deploy_started_is_removed(staging):  # noqa: F811
    state = {"started": False}
    hosts = Hosts(fail={(DB1, "volume ls"): Result(0, "iosops-staging_pgdata\n")})
    plain = hosts.__call__

    def executor(argv, host="local", input=None, **kw):
        line = " ".join(str(a) for a in argv)
        if host == DB1 and " up --detach " in line and "postgres" in argv:
            state["started"] = True
        if host == DB1 and "password-check" in line:
            hosts.calls.append((host, line))
            return Result(2, "", REFUSED)
        return plain(argv, host=host, input=input, **kw)

    with pytest.raises(BadInput) as exc:
        bg.deploy(staging, Runner(executor=by_argv(executor), say=lambda s: None), IMAGE)
    msg = str(exc.value)
    assert state["started"] and msg.endswith("Rolled back: removed postgres, redis, which this deploy had started; "
                                             "the volume is untouched")
    assert hosts.on(DB1, "rm --force --stop postgres redis") and hosts.running[DB1] == {}
    assert not hosts.on(DB1, "pg-ensure-backup-role") and not [c for c in hosts.calls if "schema_migrations" in c[1]]
    assert not hosts.on(APP1, "api-blue") and not hosts.on(APP2, "api-blue")
