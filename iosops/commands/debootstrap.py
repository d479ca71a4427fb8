"""Offline base image: debootstrap a Debian rootfs, slim it, import it into Docker."""
from __future__ import annotations

from typing import Mapping

from .docker import DOCKER

# dpkg drops these paths in every image built on the base: later apt installs stay small too.
DPKG_NODOC = """# iosops: keep images small; docs, man pages and translations are not needed in containers
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
"""

APT_SLIM = """# iosops: no recommends, no cached package lists left in layers, no translations downloaded
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""

SLIM_PATHS = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/lib/apt/lists",
              "var/cache/apt", "var/cache/debconf", "var/log")


def debootstrap(rootfs: str, suite: str, mirror: str, include: tuple[str, ...] = ("ca-certificates",)) -> list[str]:
    return ["debootstrap", "--variant=minbase", f"--include={','.join(include)}", suite, rootfs, mirror]


def slim(rootfs: str) -> list[str]:
    """Delete docs, man pages, locales and apt caches inside the rootfs (keeps the directories)."""
    return ["find", *[f"{rootfs}/{p}" for p in SLIM_PATHS], "-mindepth", "1", "!", "-type", "d",
            "!", "-name", "copyright", "!", "-name", "locale.alias", "-delete"]


def slim_empty_dirs(rootfs: str) -> list[str]:
    return ["find", *[f"{rootfs}/{p}" for p in SLIM_PATHS], "-mindepth", "1", "-type", "d", "-empty", "-delete"]


# apt inside the rootfs: no prompts, keep the config files the packages ship (nothing here edited them).
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


def chroot_apt_update(rootfs: str) -> list[str]:
    return ["chroot", rootfs, "apt-get", "-q", "-o", "Acquire::Retries=3", "update"]


def chroot_apt_upgrade(rootfs: str) -> list[str]:
    """Every installed package to the newest version its sources offer (security and point updates).
    full-upgrade, not upgrade: an update that needs a new dependency is installed, not held back (a held
    package would stay stale and make every --refresh rebuild again). unsafe-io: no fsync per file, as
    debootstrap does; the rootfs is scratch, a crash means a rebuild."""
    return ["chroot", rootfs, "apt-get", "-q", "-y", "-o", "Acquire::Retries=3",
            "-o", "Dpkg::Options::=--force-confold", "-o", "Dpkg::Options::=--force-unsafe-io", "full-upgrade"]


def chroot_apt_clean(rootfs: str) -> list[str]:
    return ["chroot", rootfs, "apt-get", "clean"]


def gpgv(keyring: str) -> list[str]:
    """Check a clearsigned file on stdin; stdout is only the text the signature covers."""
    return ["gpgv", "--keyring", keyring, "--output", "-"]


def tar_rootfs(rootfs: str) -> list[str]:
    return ["tar", "--numeric-owner", "-C", rootfs, "-c", "."]


def docker_import(ref: str, labels: Mapping[str, str]) -> list[str]:
    """`docker import` of a tar on stdin; ref "" imports untagged (stdout: the image id)."""
    argv = [DOCKER, "import"]
    for k, v in sorted(labels.items()):
        argv += ["--change", f"LABEL {k}={v}"]
    return argv + ["--change", 'CMD ["/bin/bash"]', "-", *([ref] if ref else [])]


def remove_tree(path: str) -> list[str]:
    return ["rm", "-rf", "--one-file-system", path]
