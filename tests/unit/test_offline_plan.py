"""`inv images.offline` decisions in dry-run, with no Docker engine and no archive: a fake engine answers
inspect_image, a fake archive answers what it offers. What is rebuilt, why, and in which order."""
import subprocess

import pytest
from docker.errors import ImageNotFound

from iosops import dockerx
from iosops.images import debpkg, offline
from iosops.images.archive import apt_sources, sources_list
from iosops.config import OfflineCfg, load_env
from iosops.runner import Runner

OLD = {"libssl3": "3.0.20-1~deb12u2", "bash": "5.2.15-2+b13"}
NEW = {"libssl3": "3.0.22-1~deb12u2", "bash": "5.2.15-2+b13"}


class FakeApi:
    def __init__(self, images):
        self.images = images  # ref -> labels

    def inspect_image(self, ref):
        if ref not in self.images:
            raise ImageNotFound(ref)
        return {"Id": f"sha256:{abs(hash(ref)):x}", "Architecture": "amd64", "Config": {"Labels": self.images[ref]}}


class FakeArchive:
    asked = 0

    def __init__(self, o, runner):
        pass

    def available(self, arch):
        FakeArchive.asked += 1
        assert arch == "amd64"
        return {"libssl3": ("3.0.22-1~deb12u2", "bookworm-security"), "bash": ("5.2.15-2+b7", "bookworm")}


@pytest.fixture
def engine(monkeypatch):
    def no_process(*a, **k):
        raise AssertionError(f"dry-run started a process: {a[0] if a else k}")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    monkeypatch.setattr(offline, "Archive", FakeArchive)
    FakeArchive.asked = 0
    fake = type("Client", (), {})()
    monkeypatch.setattr(dockerx, "client", lambda *a, **k: fake)

    def with_images(images):
        fake.api = FakeApi(images)
        return fake.api
    return with_images


def env_():
    return load_env("local", environ={"IOSOPS_IMAGES__BASE": "t/debian:b", "IOSOPS_IMAGES__PYTHON": "t/python:b",
                                      "IOSOPS_IMAGES__REDIS": "t/redis:b", "IOSOPS_OFFLINE__WORKDIR": "/w",
                                      "IOSOPS_OFFLINE__LABELS": '{"iosops.test": "1"}'})


def labels(fp, packages, key):
    return {offline.FINGERPRINT: fp, "iosops.image": key, **debpkg.package_labels(packages)}


def test_sources_are_release_updates_and_security():
    o = OfflineCfg()
    assert [(s.uri, s.suite) for s in apt_sources(o)] == [
        ("http://deb.debian.org/debian", "bookworm"), ("http://deb.debian.org/debian", "bookworm-updates"),
        ("http://deb.debian.org/debian-security", "bookworm-security")]
    assert sources_list(o).splitlines()[1:] == [
        "deb http://deb.debian.org/debian bookworm main", "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main"]


def test_base_fingerprint_covers_the_sources():
    e = env_()
    other = load_env("local", environ={"IOSOPS_OFFLINE__SECURITY_MIRROR": "http://mirror.example/debian-security"})
    assert offline.base_fingerprint(e) != offline.base_fingerprint(other)


def test_base_plan_upgrades_from_all_sources_before_slimming_and_labels_last(engine):
    engine({})
    runner = Runner(dry_run=True, say=lambda line: None)
    outcomes = offline.build_offline(env_(), runner, ("base",))
    assert [(o.key, o.action, o.reason) for o in outcomes] == [("base", "planned", "not built")]
    plan = runner.plan()
    at = {name: next(i for i, line in enumerate(plan) if needle in line) for name, needle in {
        "debootstrap": "debootstrap --variant=minbase", "sources": "etc/apt/sources.list (",
        "update": "apt-get -q -o Acquire::Retries=3 update", "upgrade": "full-upgrade", "slim": "-delete",
        "import": "docker import", "label": "docker-sdk build tag=t/debian:b FROM <imported image>"}.items()}
    assert at["debootstrap"] < at["sources"] < at["update"] < at["upgrade"] < at["slim"] < at["import"] < at["label"]
    assert "DEBIAN_FRONTEND=noninteractive chroot /w/rootfs-" in plan[at["upgrade"]]
    assert "LABEL iosops.test=1" in plan[at["import"]] and plan[at["import"]].endswith(" -")  # untagged import
    assert debpkg.PACKAGES_LABEL in plan[at["label"]]
    assert at["label"] == len(plan) - 1  # the rootfs is gone (removed right after the import) when it is labelled
    assert FakeArchive.asked == 0


def test_without_refresh_a_matching_fingerprint_is_no_change_and_the_archive_is_not_read(engine):
    e = env_()
    fp = offline.base_fingerprint(e)
    engine({"t/debian:b": labels(fp, OLD, "base")})
    runner = Runner(dry_run=True, say=lambda line: None)
    assert [o.action for o in offline.build_offline(e, runner, ("base",))] == ["no change"]
    assert runner.plan() == [] and FakeArchive.asked == 0


def test_refresh_rebuilds_a_base_with_updates_and_then_its_children(engine):
    e = env_()
    fp = offline.base_fingerprint(e)
    api = engine({"t/debian:b": labels(fp, OLD, "base")})
    base_id = api.inspect_image("t/debian:b")["Id"]
    api.images["t/python:b"] = labels(offline.derived_fingerprint(offline.recipe_dir(e, "python"), base_id), NEW, "python")
    said = []
    runner = Runner(dry_run=True, say=said.append)
    base, python = offline.build_offline(e, runner, ("python",), refresh=True)
    assert (base.action, base.reason) == ("planned", "1 package update(s) in the archive")
    assert base.updates == ["libssl3 3.0.20-1~deb12u2 -> 3.0.22-1~deb12u2 (bookworm-security)"]
    assert any("would build t/debian:b (1 package update(s) in the archive: libssl3 3.0.20-1~deb12u2 -> "
               "3.0.22-1~deb12u2 (bookworm-security))" in line for line in said)
    # a new base means new children, whatever their own packages say
    assert (python.action, python.reason) == ("planned", "recipe or base changed")


def test_refresh_rebuilds_only_the_stale_child_without_the_build_cache(engine):
    e = env_()
    fp = offline.base_fingerprint(e)
    api = engine({"t/debian:b": labels(fp, NEW, "base")})
    base_id = api.inspect_image("t/debian:b")["Id"]
    for key, pkgs in (("python", OLD), ("redis", NEW)):
        api.images[getattr(e.cfg.images, key)] = labels(
            offline.derived_fingerprint(offline.recipe_dir(e, key), base_id), pkgs, key)
    runner = Runner(dry_run=True, say=lambda line: None)
    base, python, redis = offline.build_offline(e, runner, ("python", "redis"), refresh=True)
    assert [base.action, python.action, redis.action] == ["no change", "planned", "no change"]
    builds = [line for line in runner.plan() if line.startswith("docker-sdk build path=")]
    assert len(builds) == 1 and "docker/offline/python" in builds[0] and "nocache=True" in builds[0]
    # and without refresh the same engine state is left alone
    assert [o.action for o in offline.build_offline(e, Runner(dry_run=True, say=lambda line: None),
                                                    ("python", "redis"))] == ["no change"] * 3


def test_refresh_rebuilds_an_image_with_no_package_label(engine):
    e = env_()
    engine({"t/debian:b": {offline.FINGERPRINT: offline.base_fingerprint(e)}})
    (base,) = offline.build_offline(e, Runner(dry_run=True, say=lambda line: None), ("base",), refresh=True)
    assert base.action == "planned" and base.reason.startswith("no iosops.packages label")
