"""Web and data roles (hosts.hosts[*].roles): what each host of a split env is given — stack.env, the
compose roles override (merged by the real docker-compose), the firewall — and where the flows act.
The checks that run the real programs are in the tools tier: tests/tools/test_deploy_roles.py."""
from pathlib import PurePosixPath

import pytest

from iosops.config import load_env
from iosops.deploy import stackfiles as sf
from iosops.deploy.target import Target, data_target, targets, web_targets
from iosops.hosts import files as hf
from iosops.runner import Runner


@pytest.fixture
def staging():
    return load_env("staging", environ={})


def by_role(env):
    ts = [Target(env, Runner(), PurePosixPath("/srv/iosops/x"), h) for h in env.cfg.hosts.hosts]
    return web_targets(ts), data_target(ts)


def env_of(text: str) -> dict:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_targets_carry_their_roles(staging):
    ts = targets(staging, Runner())
    assert [sorted(t.roles) for t in ts] == [["web"], ["web"], ["data"]]
    assert [t.name for t in web_targets(ts)] == ["root@app1.staging.ios.internal:22", "root@app2.staging.ios.internal:22"]
    assert data_target(ts).datastores() == ["postgres", "redis"] and web_targets(ts)[0].datastores() == []
    local = targets(load_env("local", environ={}), Runner())
    assert len(local) == 1 and local[0].web and local[0].data and not local[0].split


def test_web_hosts_reach_the_data_host_on_its_private_address(staging):
    web, data = by_role(staging)
    w = env_of(sf.stack_env(staging, {"blue": "r/api:1"}, web[0]))
    assert (w["POSTGRES_HOST"], w["POSTGRES_PORT"], w["REDIS_URL"]) == ("10.20.0.30", "5432", "redis://10.20.0.30:6379/0")
    d = env_of(sf.stack_env(staging, {}, data))
    assert (d["DATA_BIND"], d["PG_PUBLISH_PORT"], d["REDIS_PUBLISH_PORT"]) == ("10.20.0.30", "5432", "6379")
    one = env_of(sf.stack_env(load_env("local", environ={}), {}, targets(load_env("local", environ={}), Runner())[0]))
    assert one["POSTGRES_HOST"] == "postgres" and one["REDIS_URL"] == "redis://redis:6379/0" and "DATA_BIND" not in one


def test_only_the_data_host_of_a_split_env_filters_its_datastore_ports(staging):
    web, data = by_role(staging)
    nft = hf.nftables_conf(staging, data.host)
    assert "hook forward priority -10" in nft
    # the replies of an accepted connection pass (they too carry the datastore port as ct original proto-dst)
    assert nft.index("ct state established,related accept\n        meta l4proto tcp ct original ip daddr") > nft.index("hook forward")
    match = "meta l4proto tcp ct original ip daddr 10.20.0.30 ct original proto-dst { 5432, 6379 }"
    assert f"{match} ip saddr {{ app1.staging.ios.internal, app2.staging.ios.internal }} accept" in nft
    assert nft.index(f"accept\n        {match} drop") > 0
    assert "forward" not in hf.nftables_conf(staging, web[0].host)
    assert "forward" not in hf.nftables_conf(load_env("local", environ={}))
    assert hf.managed(staging, data.host)[hf.NFTABLES][0] == nft


def test_split_env_with_the_monitoring_profile_is_refused(staging):
    from iosops.deploy.bluegreen import check_profiles
    from iosops.errors import BadInput

    staging.cfg.deploy.profiles = ["monitoring"]
    with pytest.raises(BadInput, match="monitoring profile runs beside the stack on one host"):
        check_profiles(staging, targets(staging, Runner()))
