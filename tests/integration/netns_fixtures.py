"""Session fixtures: SSH test hosts that each run their own Docker engine (tests/netns_hosts.py).

Skipped, with the reason, only when this machine cannot make them (not root, a tool missing); once it
can, a failure to bring them up is an error, and so is anything of the run left after teardown."""
import json

import pytest

from tests.netns_hosts import NetnsHosts, leftovers, missing_requirements


def _say(line: str) -> None:
    print(f"netns-hosts: {line}")


@pytest.fixture(scope="module")
def netns_hosts():
    """Three fresh hosts per test module (iosops-t<run>-1..3 at 10.213.K.11-13), root by `hosts.key_file`,
    engines empty: a module's deploys and provisioning never meet another module's."""
    why = missing_requirements()
    if why:
        pytest.skip("netns test hosts cannot be made on this machine: " + "; ".join(why))
    hosts = NetnsHosts(3, log=_say)
    hosts.up()
    try:
        yield hosts
    finally:
        state = json.loads(hosts.state_file.read_text())
        pids = [p for procs in hosts.pids().values() for p in procs.values() if p]
        hosts.down()
        left = leftovers(state, pids)
        assert not left, f"netns run {hosts.run_id} left behind: {left}"
