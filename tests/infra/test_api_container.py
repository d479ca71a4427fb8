"""testinfra checks of a running API container (docker:// backend): what the image promises at runtime."""
import pytest
import testinfra

from iosops.runner import Runner
from iosops.stack.local import container


@pytest.fixture(scope="module")
def host(stack, stack_env):
    return testinfra.get_host(f"docker://{container(stack_env, Runner(), 'api')}")


def test_runs_as_fixed_non_root_user(host):
    user = host.user()
    assert (user.name, user.uid, user.gid) == ("ios", 10001, 10001)
    assert host.user("ios").shell == "/usr/sbin/nologin"


def test_serves_on_8000_with_gunicorn_workers(host):
    # No ss/netstat in the runtime image (by design): read the kernel's socket table instead.
    listening = [l.split() for l in host.file("/proc/net/tcp").content_string.splitlines()[1:]]
    assert any(cols[1] == "00000000:1F40" and cols[3] == "0A" for cols in listening)  # 0.0.0.0:8000 LISTEN
    # No ps either: pair Name/Uid lines of /proc/<pid>/status.
    lines = host.check_output("grep -h -E '^(Name|Uid):' /proc/[0-9]*/status").splitlines()
    procs = [(n.split()[1], u.split()[1]) for n, u in zip(lines[::2], lines[1::2], strict=True)]  # (name, real uid)
    gunicorn = [uid for name, uid in procs if name == "gunicorn"]
    assert len(gunicorn) >= 3  # the arbiter plus WEB_CONCURRENCY=2 workers
    assert set(gunicorn) == {"10001"}


def test_root_filesystem_is_read_only_and_tmp_is_writable(host):
    assert host.run("touch /app/x").rc != 0
    assert host.run("touch /tmp/x && rm /tmp/x").rc == 0


def test_no_compiler_and_app_is_not_writable_by_app_user(host):
    assert not host.exists("gcc") and not host.exists("pip")
    assert host.file("/opt/venv/bin/gunicorn").exists
    assert host.file("/app/iosapi/main.py").user == "root"
