"""A second checkout on the same machine (issue 13, "a newcomer never trips"), for real: its own state
dir and its own generated secrets, the same stack name, so the same Docker volume, whose PostgreSQL was
initialised with the first checkout's password. `inv deploy` and `inv up` from the second checkout refuse
with one line and exit 2 naming both ways out; nothing of the running stack changes; with PostgreSQL
stopped they start it, find the mismatch, and remove what they started; with the secret restored they work.

Each test has its own stack name, ports and state dirs, label iosops.test=1, and removes its stack with
its volumes; the user's own stack (iosops-local) is never touched."""
import shutil
import uuid

import pytest
import requests
import urllib3

from iosops.config import load_env
from iosops.runner import Runner
from tests.conftest import free_port, run_inv
from tests.integration.conftest import docker

urllib3.disable_warnings()
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PASSWORDS = ("postgres_password", "backup_password")  # pragma: allowlist secret - secret names, no values


def checkout(base_vars: dict, root, who: str) -> dict:
    """The env vars that make `inv` act like a checkout of its own: state dir and generated secrets."""
    return {**base_vars, "IOSOPS_STATE_DIR": str(root / who / "state"),
            **{f"IOSOPS_SECRETS__{n.upper()}__FILE": str(root / who / "secrets" / n) for n in PASSWORDS}}


def snapshot(label: str) -> dict[str, str]:
    """Every container with the label: id -> name, start time, running (a recreate or restart shows)."""
    ids = docker("ps", "--all", "--quiet", "--no-trunc", "--filter", f"label={label}").stdout.split()
    return {i: docker("inspect", "--format", "{{.Name}} {{.State.StartedAt}} {{.State.Running}}", i).stdout.strip()
            for i in ids}


def volume_kept(name: str) -> bool:
    """The volume is still there (its data is proven by the first checkout's item, read at the end)."""
    r = docker("volume", "inspect", "--format", "{{.Name}}", name)
    return r.returncode == 0 and r.stdout.strip() == name


def refusal(r, root, volume: str) -> str:
    """Exit 2, one line on stderr starting with `error:`, no code, no traceback, no password: the line."""
    out = r.stdout + r.stderr
    assert r.returncode == 2, out[-3000:]
    errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and r.stderr.rstrip().endswith(errors[0]), r.stderr[-3000:]
    for word in ("Traceback", "import ", "psycopg", "SELECT", 'File "'):
        assert word not in out, out[-3000:]
    for who in ("a", "b"):
        for n in PASSWORDS:
            p = root / who / "secrets" / n
            if p.exists():
                assert p.read_text().strip() not in out
    line = errors[0]
    mine = root / "b" / "secrets" / "postgres_password"
    assert line.startswith(f"error: the PostgreSQL volume {volume} was initialised by another checkout or with "
                           f"another password: this checkout's secrets.postgres_password ({mine}) fails to log in "
                           "(password authentication failed). Either restore that secret (put the password the "
                           f"volume was created with into {mine}), or start fresh with `inv down --env local "
                           "--volumes` (deletes the stack's data); then run this again."), line
    return line


def names(resp) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [i["name"] for i in resp.json()["items"]]


def restore_secret(root) -> None:
    shutil.copy(root / "a" / "secrets" / "postgres_password", root / "b" / "secrets" / "postgres_password")


def test_deploy_from_a_second_checkout_refuses_then_works_with_the_secret_restored(api_image, offline_images,
                                                                                    tmp_path_factory):
    from iosops.images.offline import build_offline
    from iosops.deploy import bluegreen as bg
    from iosops.stack.local import down

    name = f"iosops-itest-second-{uuid.uuid4().hex[:6]}"
    root = tmp_path_factory.mktemp("second-checkout")
    base = {"IOSOPS_STACK__NAME": name, "IOSOPS_DEPLOY__HTTP_PORT": str(free_port()),
            "IOSOPS_DEPLOY__HTTPS_PORT": str(free_port()), "IOSOPS_STACK__LABELS": '{"iosops.test": "1"}',
            "IOSOPS_DEPLOY__VERIFY_HOSTS": "false", "IOSOPS_DEPLOY__REPLICAS": "1"}
    a, b = checkout(base, root, "a"), checkout(base, root, "b")
    env_a, env_b = load_env("local", environ=a), load_env("local", environ=b)
    build_offline(env_a, Runner(), ("nginx",))
    tag = api_image.image.rsplit(":", 1)[1]
    edge = f"https://127.0.0.1:{env_a.cfg.deploy.https_port}"
    project, volume = f"label=com.docker.compose.project={name}", f"{name}_pgdata"
    try:
        first = run_inv("deploy", "--env", "local", "--tag", tag, env=a)
        assert first.returncode == 0, first.stderr[-3000:]
        item = requests.post(f"{edge}/items", json={"name": "made-by-checkout-a"}, verify=False, timeout=10)
        assert item.status_code == 201, item.text
        item_url = f"{edge}/items?limit=50"  # from PostgreSQL (a single item may come from Redis's cache)
        before = snapshot(project)

        # The first checkout's stack runs: refused before anything changes.
        r = run_inv("deploy", "--env", "local", "--tag", tag, env=b)
        assert refusal(r, root, volume).endswith(" Nothing was changed")
        assert snapshot(project) == before and volume_kept(volume)
        assert names(requests.get(item_url, verify=False, timeout=10)) == ["made-by-checkout-a"]
        assert not (root / "b" / "state" / "stacks").exists()  # not even this checkout's files were rendered

        # Stopped (volume kept): the deploy starts the datastores, finds the mismatch, removes them again.
        assert run_inv("down", "--env", "local", env=a).returncode == 0
        r = run_inv("deploy", "--env", "local", "--tag", tag, env=b)
        assert refusal(r, root, volume).endswith(" Rolled back: removed postgres, redis, which this deploy had "
                                                 "started; the volume is untouched")
        assert docker("ps", "--quiet", "--filter", project).stdout.split() == []
        assert volume_kept(volume)

        # The secret restored: the second checkout deploys, on the first checkout's data.
        restore_secret(root)
        ok = run_inv("deploy", "--env", "local", "--tag", tag, env=b)
        assert ok.returncode == 0, ok.stderr[-3000:]
        assert "migrations: no change (schema up to date)" in ok.stderr
        assert names(requests.get(item_url, verify=False, timeout=10)) == ["made-by-checkout-a"]
    finally:
        bg.destroy(env_b, Runner(), volumes=True)
        down(env_a, Runner(), volumes=True)  # by label: whatever either checkout left


def test_up_from_a_second_checkout_refuses_then_works_with_the_secret_restored(api_image, offline_images,
                                                                                tmp_path_factory):
    from iosops.stack.local import down

    name = f"iosops-itest-secondup-{uuid.uuid4().hex[:6]}"
    root = tmp_path_factory.mktemp("second-checkout-up")
    base = {"IOSOPS_STACK__NAME": name, "IOSOPS_STACK__API_PORT": str(free_port()),
            "IOSOPS_STACK__LABELS": '{"iosops.test": "1"}'}
    a, b = checkout(base, root, "a"), checkout(base, root, "b")
    env_a = load_env("local", environ=a)
    tag = api_image.image.rsplit(":", 1)[1]
    api = f"http://127.0.0.1:{env_a.cfg.stack.api_port}"
    stack, volume = f"label=iosops.stack={name}", f"{name}_pgdata"
    try:
        first = run_inv("up", "--env", "local", "--tag", tag, env=a)
        assert first.returncode == 0, first.stderr[-3000:]
        item = requests.post(f"{api}/items", json={"name": "made-by-checkout-a"}, timeout=10)
        assert item.status_code == 201, item.text
        item_url = f"{api}/items?limit=50"
        before = snapshot(stack)

        r = run_inv("up", "--env", "local", "--tag", tag, env=b)
        assert refusal(r, root, volume).endswith(" Nothing was changed")
        assert snapshot(stack) == before and volume_kept(volume)
        assert names(requests.get(item_url, timeout=10)) == ["made-by-checkout-a"]

        assert run_inv("down", "--env", "local", env=a).returncode == 0
        r = run_inv("up", "--env", "local", "--tag", tag, env=b)
        assert refusal(r, root, volume).endswith(" Rolled back: removed postgres, redis, which this inv up had started; "
                                                 "the volume is untouched")
        assert docker("ps", "--quiet", "--filter", stack).stdout.split() == []
        assert volume_kept(volume)

        restore_secret(root)
        ok = run_inv("up", "--env", "local", "--tag", tag, env=b)
        assert ok.returncode == 0, ok.stderr[-3000:]
        assert names(requests.get(item_url, timeout=10)) == ["made-by-checkout-a"]
    finally:
        down(env_a, Runner(), volumes=True)
