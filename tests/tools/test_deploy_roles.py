"""The tools-tier half of tests/unit/test_deploy_roles.py: these tests run real programs (see tests/tools/__init__.py)."""
import json
import shutil
import subprocess

import pytest
import yaml

from iosops.config import load_env
from iosops.deploy import stackfiles as sf
from iosops.hosts import files as hf
from tests.conftest import ROOT
from tests.unit.test_deploy_roles import by_role
from tests.unit import test_deploy_roles as unit

staging = unit.staging  # the unit module's fixture, shared


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose 1.29 is not installed")
def test_roles_override_merges_with_the_compose_file(staging, tmp_path):
    """The real docker-compose merges the override: the data host publishes its datastores on the private
    address only; a web host's API keeps its internal networks and gets a route out."""
    web, data = by_role(staging)
    shutil.copy(ROOT / "docker/compose.yml", tmp_path / "compose.yml")
    rendered = {}
    for name, t, images in (("web", web[0], {"blue": "r/api:1"}), ("data", data, {})):
        (tmp_path / "roles.yml").write_text(sf.roles_override(staging, t))
        (tmp_path / "stack.env").write_text(sf.stack_env(staging, images, t))
        out = subprocess.run(["docker-compose", "--project-directory", str(tmp_path), "-f", str(tmp_path / "compose.yml"),
                              "-f", str(tmp_path / "roles.yml"), "--env-file", str(tmp_path / "stack.env"), "config"],
                             capture_output=True, text=True, check=True).stdout
        rendered[name] = yaml.safe_load(out)
    pg = rendered["data"]["services"]["postgres"]
    assert pg["ports"] == ["10.20.0.30:5432:5432/tcp"]
    assert rendered["data"]["services"]["redis"]["ports"] == ["10.20.0.30:6379:6379/tcp"]
    assert set(pg["networks"]) == {"data", "datapub"} and rendered["data"]["networks"]["data"]["internal"] is True
    assert rendered["data"]["networks"]["datapub"]["labels"]["iosops.env"] == "staging"
    api = rendered["web"]["services"]["api-blue"]
    assert set(api["networks"]) == {"app", "data", "datalink"}
    assert api["environment"]["POSTGRES_HOST"] == "10.20.0.30" and "ports" not in rendered["web"]["services"]["redis"]


@pytest.mark.skipif(not shutil.which("nft"), reason="nft is not installed (scripts/bootstrap.sh installs nftables)")
def test_every_rendered_firewall_parses_with_the_real_nft(tmp_path):
    """`nft -c` (check only, nothing loaded) on what provision writes for each role of a split env."""
    env = load_env("staging", environ={"IOSOPS_HOSTS__HOSTS": json.dumps([
        {"address": "10.0.0.1", "roles": ["web"]}, {"address": "10.0.0.2", "roles": ["web"]},
        {"address": "db.example", "private_address": "10.0.0.3", "roles": ["data"]}])})
    for h in env.cfg.hosts.hosts:
        f = tmp_path / f"{h.address}.nft"
        f.write_text(hf.nftables_conf(env, h))
        proc = subprocess.run(["nft", "-c", "-f", str(f)], capture_output=True, text=True)
        assert proc.returncode == 0, (h.address, proc.stderr)
