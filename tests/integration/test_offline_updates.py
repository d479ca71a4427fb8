"""Offline images take Debian's security and point updates, record their package set, and are seen as
stale (and rebuilt by --refresh) when the archive offers newer versions than they hold. Real engine, real
debootstrap, the real Debian archive (bookworm, -updates, -security).

Everything is built under this module's own names (iosops-imgtest-<id>/...), labelled iosops.test=1 and
removed by id at the end: the shared iosops/* images other runs use are never built, retagged or removed.
Costs two base builds (~70 s each) and one small derived build."""
import io
import json
import time
import uuid

import pytest

from iosops.images import debpkg
from iosops.images.archive import Archive, apt_sources
from iosops.config import OfflineCfg
from iosops.runner import Runner
from tests.conftest import run_inv
from tests.integration.conftest import docker

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PREFIX = f"iosops-imgtest-{uuid.uuid4().hex[:6]}"
BASE = f"{PREFIX}/debian:bookworm"


@pytest.fixture(scope="module")
def made(docker_api):
    """Ids of every image this module tags; all removed at the end (their untagged parents go with them)."""
    ids: set[str] = set()
    yield ids
    for _ in range(4):  # children before parents: a parent with a child is refused, so retry what remains
        for image_id in sorted(ids):
            try:
                docker_api.remove_image(image_id, force=True)
                ids.discard(image_id)
            except Exception as exc:
                if "No such image" in str(exc):
                    ids.discard(image_id)
    assert not ids, f"test images left behind: {ids}"


def track(docker_api, made, ref):
    made.add(docker_api.inspect_image(ref)["Id"])
    return docker_api.inspect_image(ref)


def vars_for(tmp_path, **images):
    v = {"IOSOPS_IMAGES__BASE": BASE, "IOSOPS_OFFLINE__LABELS": '{"iosops.test": "1"}',
         "IOSOPS_OFFLINE__WORKDIR": str(tmp_path / "work")}
    v.update({f"IOSOPS_IMAGES__{k.upper()}": ref for k, ref in images.items()})
    return v


@pytest.fixture(scope="module")
def archive():
    """The real archive as `inv images.stale` reads it (the test's own view, to compare the images with)."""
    o = OfflineCfg()
    a = Archive(o, Runner(say=lambda line: None))
    release = a.index(apt_sources(o)[0], "amd64")  # bookworm alone, without its updates
    return a.available("amd64"), release


@pytest.fixture(scope="module")
def base(docker_api, made, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("imgtest")
    start = time.monotonic()
    proc = run_inv("images.offline", "--only", "base", env=vars_for(tmp))
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "built" in proc.stdout and "(not built)" in proc.stdout
    attrs = track(docker_api, made, BASE)
    print(f"base build: {seconds:.0f} s")
    return {"attrs": attrs, "labels": attrs["Config"]["Labels"], "seconds": seconds}


def older_in_release(packages, available, release):
    """Installed packages the release alone has at an older version than the archive's newest."""
    return {name: release[name] for name, version in packages.items()
            if name in release and debpkg.compare_versions(release[name], version) < 0
            and available[name][0] == version}


def forged(docker_api, made, source_ref, ref, packages):
    """source_ref plus a package label recording `packages` (a label-only build: same layers)."""
    for _ in docker_api.build(fileobj=io.BytesIO(f"FROM {source_ref}\n".encode()), tag=ref, rm=True, forcerm=True,
                              labels=debpkg.package_labels(packages), decode=True):
        pass
    return track(docker_api, made, ref)


def stale_json(env):
    proc = run_inv("images.stale", "--only", "base", "--json", env=env)
    return proc, json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else None


def test_base_takes_updates_and_security_and_records_its_packages(base, archive):
    labels = base["labels"]
    assert labels["iosops.test"] == "1" and labels["iosops.image"] == "base"
    recorded = debpkg.packages_from_labels(labels)  # raises unless the sha256 and the count match
    # the label is what dpkg itself reports inside the image (read here another way: dpkg-query in a container)
    run = docker("run", "--rm", "--label", "iosops.test=1", BASE, "dpkg-query", "-W", "-f", "${Package}=${Version}\n")
    assert run.returncode == 0, run.stderr
    assert recorded == dict(line.split("=", 1) for line in run.stdout.split())
    sources = docker("run", "--rm", "--label", "iosops.test=1", BASE, "cat", "/etc/apt/sources.list").stdout
    for line in ("deb http://deb.debian.org/debian bookworm main", "deb http://deb.debian.org/debian bookworm-updates main",
                 "deb http://deb.debian.org/debian-security bookworm-security main"):
        assert line in sources.splitlines()
    available, release = archive
    # Every package at the archive's newest version, and some of them newer than the release alone has
    # (e.g. openssl 3.0.22 from bookworm-security over 3.0.20 in bookworm): the updates are really in.
    assert debpkg.updates_for(recorded, available) == []
    fixed = older_in_release(recorded, available, release)
    assert fixed, "the archive offers no update for any base package: nothing would show the updates are applied"
    assert all(available[name][1] in ("bookworm-security", "bookworm-updates") for name in fixed)
    # the upgrade leaves no package lists, cached debs or docs behind (the slimming still applies after it)
    left = docker("run", "--rm", "--label", "iosops.test=1", BASE, "find", "/usr/share/doc", "/var/lib/apt/lists",
                  "/var/cache/apt", "-type", "f", "!", "-name", "copyright")
    assert left.returncode == 0 and left.stdout == "", left.stdout[:500]


def test_stale_check_fresh_then_stale_when_the_label_records_an_older_version(base, archive, docker_api, made, tmp_path):
    available, release = archive
    proc, out = stale_json(vars_for(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out["stale"] == [] and out["images"][0]["state"] == "fresh"
    assert out["images"][0]["packages"] == int(base["labels"][debpkg.PACKAGES_COUNT_LABEL])

    recorded = debpkg.packages_from_labels(base["labels"])
    name, old = sorted(older_in_release(recorded, available, release).items())[0]
    older = f"{PREFIX}/debian:older-label"
    forged(docker_api, made, BASE, older, {**recorded, name: old})
    env = vars_for(tmp_path) | {"IOSOPS_IMAGES__BASE": older}
    proc, out = stale_json(env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert out["stale"] == ["base"]
    # exactly the one package recorded older, with both versions and the suite that has the newer one
    assert out["images"][0]["updates"] == [{"package": name, "installed": old, "available": available[name][0],
                                            "suite": available[name][1]}]
    text = run_inv("images.stale", "--only", "base", env=env)
    assert text.returncode == 1
    assert f"{name} {old} -> {available[name][0]} ({available[name][1]})" in text.stdout
    assert "1 of 1 image(s) need a rebuild: run `inv images.offline --refresh`" in text.stdout


def test_refresh_rebuilds_a_stale_base_and_a_plain_run_leaves_it(base, archive, docker_api, made, tmp_path):
    available, release = archive
    recorded = debpkg.packages_from_labels(base["labels"])
    name, old = sorted(older_in_release(recorded, available, release).items())[-1]
    ref = f"{PREFIX}/debian:refresh"
    before = forged(docker_api, made, BASE, ref, {**recorded, name: old})["Id"]  # same fingerprint as the base
    env = vars_for(tmp_path) | {"IOSOPS_IMAGES__BASE": ref}

    plain = run_inv("images.offline", "--only", "base", env=env)
    assert plain.returncode == 0 and "0 built, 1 unchanged" in plain.stdout, plain.stdout + plain.stderr
    assert docker_api.inspect_image(ref)["Id"] == before

    dry = run_inv("images.offline", "--only", "base", "--refresh", "--dry-run", env=env)
    assert dry.returncode == 0 and "debootstrap --variant=minbase" in dry.stdout, dry.stdout + dry.stderr
    assert f"1 package update(s) in the archive: {name} {old} -> {available[name][0]}" in dry.stderr
    assert docker_api.inspect_image(ref)["Id"] == before

    start = time.monotonic()
    refresh = run_inv("images.offline", "--only", "base", "--refresh", env=env)
    print(f"base refresh build: {time.monotonic() - start:.0f} s")
    assert refresh.returncode == 0, refresh.stderr[-3000:]
    assert "1 built, 0 unchanged" in refresh.stdout and "(1 package update(s) in the archive)" in refresh.stdout
    assert f"base: {name} {old} -> {available[name][0]} ({available[name][1]})" in refresh.stdout
    after = track(docker_api, made, ref)
    assert after["Id"] != before
    assert debpkg.packages_from_labels(after["Config"]["Labels"])[name] == available[name][0]
    proc, out = stale_json(env)
    assert proc.returncode == 0 and out["stale"] == [], proc.stdout + proc.stderr
    again = run_inv("images.offline", "--only", "base", "--refresh", env=env)
    assert again.returncode == 0 and "nothing to do, every image matches its recipe and the archive" in again.stdout


def test_a_derived_image_with_an_older_package_installed_is_stale(base, archive, docker_api, made, tmp_path):
    """A real downgrade: the recipe pin-installs the release's older openssl; the label, read from the built
    image's dpkg status, records it, and both the label check and the --image (content) check see it."""
    available, release = archive
    recorded = debpkg.packages_from_labels(base["labels"])
    pins = {p: release[p] for p in ("libssl3", "openssl") if p in older_in_release(recorded, available, release)}
    if len(pins) < 2:
        pytest.skip("the archive has no older openssl in bookworm than in its updates: nothing to pin-install")
    recipe = tmp_path / "recipes" / "python"
    recipe.mkdir(parents=True)
    (recipe / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
        "RUN apt-get update && apt-get install -y --allow-downgrades "
        + " ".join(f"{p}={v}" for p, v in pins.items()) + " && rm -rf /var/lib/apt/lists/*\n")
    ref = f"{PREFIX}/pinned:bookworm"
    env = vars_for(tmp_path, python=ref) | {"IOSOPS_OFFLINE__DOCKERFILES": str(tmp_path / "recipes")}
    build = run_inv("images.offline", "--only", "python", env=env)
    assert build.returncode == 0, build.stderr[-3000:]
    assert "no change: " + BASE in build.stderr  # the base is reused, not rebuilt
    labels = track(docker_api, made, ref)["Config"]["Labels"]
    assert labels["iosops.image"] == "python" and labels["iosops.test"] == "1"
    installed = debpkg.packages_from_labels(labels)
    assert {p: installed[p] for p in pins} == pins
    assert len(installed) == len(recorded)  # the base's packages, two of them older

    for args in (["--only", "python"], ["--image", ref]):
        proc = run_inv("images.stale", *args, "--json", env=env)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        (status,) = json.loads(proc.stdout)["images"]
        assert status["state"] == "stale"
        assert {(u["package"], u["installed"], u["available"]) for u in status["updates"]} == {
            (p, v, available[p][0]) for p, v in pins.items()}
