"""The tools-tier half of tests/unit/test_deploy_pure.py: these tests run real programs (see tests/tools/__init__.py)."""
import shutil
import subprocess
from pathlib import Path

import pytest

from iosops.deploy import nginx as ng
from tests.conftest import ROOT
from tests.unit import test_deploy_pure as unit

env = unit.env  # the unit module's fixture, shared


@pytest.mark.skipif(not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists(), reason="nginx from bootstrap")
def test_rendered_config_passes_real_nginx_t(env, tmp_path):
    """The Debian nginx of this machine (bootstrap installs it) checks the rendered files."""
    conf_dir = tmp_path / "iosops"
    (conf_dir / "conf.d").mkdir(parents=True)
    main = ng.render_main(env, (ROOT / ng.TEMPLATE).read_text())
    # Point container paths at the temp dir; upstream host resolved from /etc/hosts (localhost).
    main = main.replace("/etc/nginx/iosops-tls", str(tmp_path / "tls")).replace("/etc/nginx/iosops", str(conf_dir))
    main = main.replace("pid /run/nginx.pid;", f"pid {tmp_path}/nginx.pid;").replace(
        "access_log /var/log/nginx/access.log json;", f"access_log {tmp_path}/access.log json;")
    (conf_dir / "nginx.conf").write_text(main)
    (conf_dir / "conf.d/upstream.conf").write_text(
        ng.render_upstream((ROOT / ng.UPSTREAM_TEMPLATE).read_text(), "blue").replace("api-blue", "localhost"))
    (tmp_path / "tls").mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "1", "-subj", "/CN=t", "-keyout", str(tmp_path / "tls/privkey.pem"),
                    "-out", str(tmp_path / "tls/fullchain.pem")], check=True, capture_output=True)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.run([nginx, "-t", "-q", "-c", str(conf_dir / "nginx.conf"), "-p", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    bad = main.replace("server_name localhost;", "server_name x; bogus_directive on;", 1)
    (conf_dir / "nginx.conf").write_text(bad)
    proc = subprocess.run([nginx, "-t", "-q", "-c", str(conf_dir / "nginx.conf"), "-p", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "bogus_directive" in proc.stderr
