"""The Redis part of a backup where the server's files are not mounted (the Kubernetes backup pod): the RDB
is fetched over the network into the pod's scratch volume, never read at the path CONFIG GET names (a
directory of the Redis pod: `redis-check-rdb /data/dump.rdb` exited 1 in the pod-spec run)."""
from types import SimpleNamespace

from iosops.backup import sources
from iosops.config import load_env
from iosops.k8s import opsconfig
from iosops.runner import Result, Runner, by_argv

FETCH = "/tmp/iosops/redis/dump.rdb"  # nosec B108 # the ops pod's /tmp emptyDir (opsconfig.STATE_DIR)


def scripted(calls: list[str]):
    def fn(argv, **kw):
        line = " ".join(str(a) for a in argv)
        calls.append(line)
        if "INFO" in argv:
            return Result(0, "# Persistence\r\nloading:0\r\nrdb_bgsave_in_progress:0\r\nrdb_saves:1\r\n")
        if "DBSIZE" in argv:
            return Result(0, "2\n")
        if "--scan" in argv:
            return Result(0, "ios:item:1\nios:item:2\n")
        return Result(0, "")
    return by_argv(fn)


def test_fetched_rdb_goes_through_the_scratch_file_and_no_bgsave(tmp_path):
    env = load_env("local", environ={"IOSOPS_STATE_DIR": str(tmp_path)},
                   overrides={"backup": {"redis": {"host": "ios-redis", "rdb_fetch_path": FETCH}}})
    calls: list[str] = []
    runner = Runner(dry_run=True, executor=scripted(calls), say=lambda s: None, plan_to_stdout=False)
    arts, fp, _ = sources.backup_redis(env, runner, store=SimpleNamespace(url="s3://ios-staging-backups/staging"), backup_id="20261203T000000Z-abcd")
    assert fp["keys"] == 2 and arts[0].component == "redis"
    plan = [a.text for a in runner.actions]
    fetch = next(i for i, t in enumerate(plan) if "--rdb" in t)
    assert plan[fetch].endswith(f"--rdb {FETCH}") and "-h ios-redis" in plan[fetch]
    assert any(t.startswith("mkdir -p -m 700 /tmp/iosops/redis") for t in plan[:fetch])
    check = next(i for i, t in enumerate(plan) if t.startswith("redis-check-rdb"))
    assert check > fetch and plan[check] == f"redis-check-rdb {FETCH}"
    assert plan[-1] == f"rm -rf {FETCH}"  # the snapshot is not left in the scratch volume
    assert not any("BGSAVE" in t or "CONFIG" in t for t in plan)


def test_the_k8s_ops_config_fetches_into_the_pods_tmp_volume():
    env = load_env("staging", environ={})
    redis = opsconfig.ops_config(env)["backup"]["redis"]
    assert redis["rdb_fetch_path"] == FETCH and redis["rdb_fetch_path"].startswith(opsconfig.STATE_DIR + "/")
    assert redis["rdb_path"] == ""
