"""Backups and restores of a compose env on SSH hosts (staging), as plans: a scripted executor stands in
for the data host (no SSH host here runs a Docker engine; the same code path is proven for real on this
machine by tests/integration/test_stack_backup.py). Every command goes to the env's data host over SSH,
runs the engine in the stack's `ops` container, and the secrets travel as files, never in argv."""
import json

import pytest
import yaml

from iosops.backup import stack as bs
from iosops.backup import targets
from iosops.config import load_env
from iosops.errors import BadInput, OperationFailed
from iosops.runner import by_argv, Result, Runner

SENTINELS = {"IOS_STAGING_POSTGRES_PASSWORD": "pg-sentinel-4411", "IOS_STAGING_BACKUP_PASSWORD": "bk-sentinel-9922",
             "IOS_STAGING_BACKUP_S3_ACCESS_KEY_ID": "s3-key-id-sentinel-1100", "IOS_STAGING_BACKUP_S3_SECRET_ACCESS_KEY":
             "s3-sentinel-7733", "IOS_STAGING_BACKUP_AGE_IDENTITY": "AGE-SECRET-KEY-1SENTINEL",  # pragma: allowlist secret - test markers
             # the datastores' least-privilege roles and users (iosops/deploy/dbusers.py)
             "IOS_STAGING_POSTGRES_OWNER_PASSWORD": "pg-owner-sentinel-5101", "IOS_STAGING_POSTGRES_APP_PASSWORD":
             "pg-app-sentinel-5102", "IOS_STAGING_POSTGRES_MONITOR_PASSWORD": "pg-mon-sentinel-5103",  # pragma: allowlist secret - test markers
             "IOS_STAGING_REDIS_APP_PASSWORD": "rd-app-sentinel-5104", "IOS_STAGING_REDIS_BACKUP_PASSWORD":
             "rd-bk-sentinel-5105", "IOS_STAGING_REDIS_EXPORTER_PASSWORD": "rd-exp-sentinel-5106"}  # pragma: allowlist secret - test markers


class DataHost:
    """Answers like a staging data host with a deployed stack; records what was sent."""

    def __init__(self, answers: dict[str, Result]):
        self.answers, self.calls, self.inputs, self.puts = answers, [], [], []

    def __call__(self, argv, host="local", input=None, **kw):
        line = " ".join(str(a) for a in argv)
        self.calls.append((host, line))
        if input is not None:
            self.inputs.append(input)
            self.puts.append((line, input))
        for needle, res in self.answers.items():
            if needle in line:
                return res
        return Result(0, "")


@pytest.fixture
def staging(monkeypatch, tmp_path):
    for k, v in SENTINELS.items():
        monkeypatch.setenv(k, v)
    return load_env("staging", environ={"IOSOPS_STATE_DIR": str(tmp_path)})


def test_backup_runs_in_the_ops_container_on_the_first_ssh_host_with_secrets_as_files(staging):
    answer = json.dumps({"backup": {"id": "20261202T100000Z-abcd", "artifacts": [{"size": 1000}],
                                    "components": ["postgres", "redis"]}})
    host = DataHost({"stackops backup": Result(0, answer + "\n"), "cat /srv": Result(0, "services: {}\n")})
    runner = Runner(executor=by_argv(host), say=lambda s: None)
    man = targets.backup(staging, runner)
    assert man["id"] == "20261202T100000Z-abcd"
    where = {h for h, _ in host.calls}
    assert where == {"root@db1.staging.ios.internal:22"}, where  # the data host only, over SSH
    run = [l for _, l in host.calls if "stackops backup" in l]
    assert run == ["/usr/bin/docker compose --project-name iosops-staging --project-directory /srv/iosops/iosops-staging "
                   "--file /srv/iosops/iosops-staging/compose.yml --file /srv/iosops/iosops-staging/compose.roles.yml "
                   "--env-file /srv/iosops/iosops-staging/stack.env run --rm --no-deps -T ops python3 -m iosops.backup.stackops backup --env staging"]
    sent = "\n".join(l for _, l in host.calls) + "\n".join(host.inputs)
    # The ops config went over as a file; the secret values only as the contents of secret files.
    cfg = yaml.safe_load(next(i for i in host.inputs if i.startswith("# written by inv deploy / inv backup")))
    assert cfg["backup"]["store"]["kind"] == "s3" and cfg["backup"]["postgres"]["host"] == "postgres"
    assert cfg["backup"]["store"]["secret_access_key"] == {"file": "/run/secrets/backup_store_secret_access_key"}
    # Redis as the backup's ACL user (INFO, BGSAVE, DBSIZE, SCAN), its password a secret file too
    assert (cfg["backup"]["redis"]["user"], cfg["backup"]["redis"]["password"]) == \
        ("iosops_backup", {"file": "/run/secrets/redis_backup_password"})
    assert SENTINELS["IOS_STAGING_REDIS_BACKUP_PASSWORD"] in host.inputs
    assert not [v for v in SENTINELS.values() if v in "\n".join(l for _, l in host.calls)]
    assert SENTINELS["IOS_STAGING_BACKUP_PASSWORD"] in host.inputs  # the file's content, on stdin of `put`
    assert "AGE-SECRET-KEY" not in json.dumps(cfg) and sent


def test_no_deployed_stack_on_the_data_host_is_bad_input(staging):
    host = DataHost({"cat /srv/iosops/iosops-staging/compose.yml": Result(1, "", "No such file")})
    with pytest.raises(BadInput, match="no deployed stack on root@db1.staging.ios.internal:22.*inv deploy --env staging"):
        targets.backup(staging, Runner(executor=by_argv(host), say=lambda s: None))


def test_restore_order_on_the_data_host_and_failure_of_finish_restarts_the_datastores(staging):
    prep = json.dumps({"backup": "B1", "target": "latest", "target_time": "", "components": ["postgres", "redis"],
                       "safety": "S1", "phases": {"prepare_s": 1.0}})
    host = DataHost({"restore-prepare": Result(0, prep + "\n"),
                     "restore-finish": Result(1, "error: restore failed (x); rolled back: postgres: put back\n"),
                     "ps --quiet": Result(0, "cid1\n"), "inspect": Result(0, "healthy\n"),
                     "cat /srv/iosops/iosops-staging/nginx/conf.d/upstream.conf": Result(0, "server api-blue:8000;\n"),
                     "cat /srv": Result(0, "services: {}\n")})
    runner = Runner(executor=by_argv(host), say=lambda s: None)
    with pytest.raises(OperationFailed, match="restore-finish on root@db1.*rolled back: postgres: put back"):
        bs.restore(staging, runner, latest=True)
    lines = [l for _, l in host.calls]
    def on(needle: str) -> set:
        return {h for h, l in host.calls if needle in l}
    # The datastores' side on the data host; maintenance (nginx) on the two web hosts.
    assert on("restore-finish") == on(" stop --timeout 60") == {"root@db1.staging.ios.internal:22"}
    assert on("maintenance.conf") == {"root@app1.staging.ios.internal:22", "root@app2.staging.ios.internal:22"}

    def first(needle: str) -> int:
        return next(i for i, l in enumerate(lines) if needle in l)

    # prepare (nothing live) -> maintenance on -> stop -> finish -> datastores up again -> maintenance off
    order = [first("restore-prepare"), first("maintenance.conf"), first(" stop --timeout 60 walstream postgres redis"),
             first("restore-finish"), first(" up --detach --no-deps --no-build postgres redis")]
    assert order == sorted(order), lines
    assert "--backup B1 --target latest --only postgres,redis --data-dir /pgvol/pgdata --safety S1" in lines[first("restore-finish")]
    # ... and maintenance is switched off again although finish failed (the file emptied, nginx reloaded).
    maint = [text for line, text in host.puts if "maintenance.conf" in line]
    assert len(maint) == 4 and all("return 503" in m for m in maint[:2]) and maint[2:] == ["", ""]
    assert first(" up --detach --no-deps --no-build walstream") > first("restore-finish")
    # The roles again after the datastores are back (a recovery point may predate them), before walstream.
    assert first(" up --detach --no-deps --no-build postgres redis") < first("pg-ensure-backup-role") \
        < first("exec -T postgres sh -c") < first(" up --detach --no-deps --no-build walstream")
