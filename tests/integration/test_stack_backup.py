"""Backups, verification and restores of the compose stack `inv deploy` runs, for real: the stack's own
PostgreSQL and Redis containers, its walstream service streaming WAL into a local store, the ops image
running the engine on the stack's data network, nginx in front (maintenance mode during a restore).

Every `inv` here is a subprocess, as a user would type it; the stack has its own project name, ports,
state dir (so its own store and lock) and the label iosops.test=1, and is removed with its volumes.
Writes go through nginx on 127.0.0.1 only, bounded in count."""
import json
import threading
import time

import pytest
import requests
import urllib3

from tests.conftest import run_inv
from tests.integration.conftest import deployed_stack, docker

urllib3.disable_warnings()
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def stack(api_image, offline_images, tmp_path_factory):
    with deployed_stack(api_image, tmp_path_factory, "bk") as st:
        yield st


def inv(stack, *args, timeout=600):
    return run_inv(*args, env=stack["vars"], timeout=timeout)


def write(stack, n: int, tag: str) -> list[int]:
    """n items through nginx; the ids the API acknowledged (201)."""
    ids = []
    with requests.Session() as s:
        for i in range(n):
            r = s.post(f"https://127.0.0.1:{stack['https']}/items", json={"name": f"{tag}-{i}", "data": {"i": i}},
                       verify=False, timeout=10)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
    return ids


def names(stack) -> set[str]:
    r = requests.get(f"https://127.0.0.1:{stack['https']}/items?limit=500", verify=False, timeout=10)
    assert r.status_code == 200, r.text
    return {i["name"] for i in r.json()["items"]}


def walstream_metrics(stack) -> str:
    cid = docker("ps", "-q", "--filter", f"label=com.docker.compose.project={stack['name']}",
                 "--filter", "label=com.docker.compose.service=walstream").stdout.split()[0]
    code = "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9898/metrics').read().decode())"
    return docker("exec", cid, "python3", "-c", code).stdout


def test_walstream_streams_into_the_store_and_reports_its_slot(stack):
    write(stack, 5, "warmup")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = walstream_metrics(stack)
        if 'iosops_walstream_up{env="local"} 1' in text and list((stack["store"] / "wal").glob("*.partial.json")):
            break
        time.sleep(1)
    assert 'iosops_walstream_up{env="local"} 1' in text, text
    assert 'iosops_walstream_slot_active{env="local",slot="iosops"} 1' in text, text
    assert list((stack["store"] / "wal").glob("*.partial.json")), "no partial segment in the store"


def test_backup_list_verify_restore_latest_through_the_ops_container(stack):
    before = write(stack, 10, "before-backup")
    proc = inv(stack, "backup", "--env", "local", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    man = json.loads(proc.stdout)
    assert man["components"] == ["postgres", "redis"] and man["postgres"]["start_wal"]
    assert (stack["store"] / "backups" / man["id"] / "manifest.json").exists()
    assert "error" not in proc.stderr.lower(), proc.stderr

    rows = json.loads(inv(stack, "backups.list", "--env", "local", "--json").stdout)
    assert [r["id"] for r in rows if r["complete"]][-1] == man["id"]
    verified = inv(stack, "backups.verify", "--env", "local", "--id", man["id"], "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)[0]["ok"] is True, verified.stderr[-2000:]
    pruned = inv(stack, "backups.prune", "--env", "local", "--dry-run", "--json")  # reads the store in the ops container
    assert pruned.returncode == 0 and man["id"] in json.loads(pruned.stdout)["keep"], pruned.stderr[-2000:]

    after = write(stack, 10, "after-backup")  # only in WAL, not in the base backup
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def probe() -> None:  # what clients see during the restore (bounded: one request per 0.2 s)
        while not stop.is_set():  # a new connection each time: nginx reloads close idle keep-alives
            try:
                r = requests.get(f"https://127.0.0.1:{stack['https']}/items?limit=1", verify=False, timeout=5)
                seen.append((r.status_code, r.headers.get("Retry-After", "")))
            except requests.RequestException as exc:
                seen.append((0, type(exc).__name__))
            stop.wait(0.2)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    restored = inv(stack, "restore", "--env", "local", "--latest", "--yes", "--json")
    stop.set()
    t.join(10)
    assert restored.returncode == 0, restored.stderr[-4000:]
    res = json.loads(restored.stdout)
    assert res["verified"] is True and res["safety_backup"].endswith("-safety")
    # Every acknowledged write came back: the base backup's rows and those only the WAL stream held.
    got = names(stack)
    assert {f"before-backup-{i}" for i in range(len(before))} <= got
    assert {f"after-backup-{i}" for i in range(len(after))} <= got
    # Clients saw maintenance (503 + Retry-After), never a 502 or a dropped connection.
    assert any(code == 503 and retry for code, retry in seen), seen
    assert not [s for s in seen if s[0] not in (200, 503)], seen
    ready = requests.get(f"https://127.0.0.1:{stack['https']}/ready", verify=False, timeout=10)
    assert ready.status_code == 200, ready.text
    # The stream resumed on the restored cluster (a new timeline, a new slot).
    active = 'iosops_walstream_slot_active{env="local",slot="iosops"} 1'
    deadline = time.monotonic() + 60
    while active not in walstream_metrics(stack) and time.monotonic() < deadline:
        time.sleep(1)
    assert active in walstream_metrics(stack)


def test_point_in_time_restore_between_two_batches(stack):
    proc = inv(stack, "backup", "--env", "local", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    write(stack, 5, "pitr-keep")
    time.sleep(1.5)
    target = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
    time.sleep(1.5)
    write(stack, 5, "pitr-drop")
    time.sleep(3)  # the partial segment holding pitr-drop reaches the store (every 2 s)
    restored = inv(stack, "restore", "--env", "local", "--to-time", target, "--yes", "--json")
    assert restored.returncode == 0, restored.stderr[-4000:]
    got = names(stack)
    assert {f"pitr-keep-{i}" for i in range(5)} <= got
    assert not {n for n in got if n.startswith("pitr-drop")}, sorted(got)


def test_a_corrupt_base_backup_is_refused_before_anything_live_changes(stack):
    proc = inv(stack, "backup", "--env", "local", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    man = json.loads(proc.stdout)
    base = stack["store"] / next(a["key"] for a in man["artifacts"] if a["kind"] == "base-tar")
    data = bytearray(base.read_bytes())
    data[len(data) // 2] ^= 0xFF
    base.write_bytes(bytes(data))
    marker = write(stack, 3, "untouched")
    restored = inv(stack, "restore", "--env", "local", "--backup", man["id"], "--yes")
    assert restored.returncode == 1, restored.stderr[-3000:]
    last = restored.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "postgres.base.tar.zst" in last and "nothing was changed" in last, last
    assert "maintenance on" not in restored.stderr  # refused in prepare: clients never saw a 503
    assert {f"untouched-{i}" for i in range(len(marker))} <= names(stack)
    vol = docker("volume", "inspect", f"{stack['name']}_pgdata", "--format", "{{.Mountpoint}}").stdout.strip()
    leftovers = docker("run", "--rm", "-v", f"{vol}:/v", "--entrypoint", "ls", stack["env"].cfg.images.postgres,
                       "-a", "/v").stdout.split()
    assert not [x for x in leftovers if x.endswith((".restoring", ".walspool"))], leftovers
