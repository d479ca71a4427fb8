"""Debian package sets, pure: parse dpkg's status file and the archive's Release/Packages indexes, compare
versions the way dpkg does, encode an image's package set as labels, and decide which packages have
updates. No I/O here: the probes (iosops.images.archive, iosops.images.offline) feed these functions text.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Iterator, Mapping, Optional

PACKAGES_LABEL = "iosops.packages"  # "name=version name=version ..." sorted by name
PACKAGES_SHA256_LABEL = "iosops.packages.sha256"  # sha256 of that value: a damaged label is detected
PACKAGES_COUNT_LABEL = "iosops.packages.count"

_DIGITS = "0123456789"


# -- versions (deb-version(7); dpkg's verrevcmp) ------------------------------------------------------
def _order(c: str) -> int:
    if c == "~":
        return -1
    if c in _DIGITS:
        return 0
    if c.isascii() and c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and a[i] not in _DIGITS) or (j < len(b) and b[j] not in _DIGITS):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i] in _DIGITS and j < len(b) and b[j] in _DIGITS:
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i] in _DIGITS:
            return 1
        if j < len(b) and b[j] in _DIGITS:
            return -1
        if first_diff:
            return first_diff
    return 0


def _split(version: str) -> tuple[int, str, str]:
    epoch, sep, rest = version.partition(":")
    if not sep:
        epoch, rest = "0", version
    upstream, sep, revision = rest.rpartition("-")
    if not sep:
        upstream, revision = rest, ""
    return int(epoch or "0"), upstream, revision


def compare_versions(a: str, b: str) -> int:
    """<0, 0, >0 as Debian version a is older than, equal to, newer than b (`dpkg --compare-versions`)."""
    ea, ua, ra = _split(a.strip())
    eb, ub, rb = _split(b.strip())
    if ea != eb:
        return -1 if ea < eb else 1
    c = _compare_part(ua, ub) or _compare_part(ra, rb)
    return (c > 0) - (c < 0)


# -- deb822 text ------------------------------------------------------------------------------------
def _stanzas(text: str) -> Iterator[dict[str, str]]:
    """Paragraphs of a deb822 file (dpkg status, Packages, Release), first-line field values only."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields = {}
        elif line[0] in " \t":
            continue  # a continuation line: no field we read is multi-line
        else:
            key, sep, value = line.partition(":")
            if sep:
                fields[key] = value.strip()
    if fields:
        yield fields


def parse_dpkg_status(text: str, arch: str = "") -> dict[str, str]:
    """/var/lib/dpkg/status -> {package: version} of what is installed ("... installed"; removed packages
    whose config files remain are not installed). A package of a foreign architecture is "name:arch"."""
    out: dict[str, str] = {}
    for f in _stanzas(text):
        if not f.get("Package") or not f.get("Version") or f.get("Status", "").split()[-1:] != ["installed"]:
            continue
        name = f["Package"]
        pkg_arch = f.get("Architecture", "")
        if arch and pkg_arch not in ("", "all", arch):
            name = f"{name}:{pkg_arch}"
        out[name] = f["Version"]
    return out


def parse_packages_index(text: str) -> dict[str, str]:
    """An archive Packages index -> {package: newest version in it}. Line scanning, not _stanzas: the
    main suite's index is ~50 MB of text and only two fields matter."""
    out: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if line.startswith("Package: "):
            name = line[9:].strip()
        elif line.startswith("Version: ") and name:
            version = line[9:].strip()
            if name not in out or compare_versions(version, out[name]) > 0:
                out[name] = version
            name = ""
    return out


@dataclass(frozen=True)
class Release:
    suite: str
    codename: str
    valid_until: Optional[datetime]
    sha256: dict[str, tuple[str, int]]  # path under dists/<suite>/ -> (sha256, size)


def parse_release(text: str) -> Release:
    """The (gpgv-verified) text of an InRelease/Release file."""
    head: dict[str, str] = {}
    sums: dict[str, tuple[str, int]] = {}
    in_sha256 = False
    for line in text.splitlines():
        if line[:1] in (" ", "\t"):
            parts = line.split()
            if in_sha256 and len(parts) == 3 and parts[1].isdigit():
                sums[parts[2]] = (parts[0], int(parts[1]))
            continue
        key, _, value = line.partition(":")
        in_sha256 = key == "SHA256"
        if value.strip():
            head.setdefault(key, value.strip())
    valid_until = None
    if head.get("Valid-Until"):
        valid_until = parsedate_to_datetime(head["Valid-Until"])
        if valid_until.tzinfo is None:
            valid_until = valid_until.replace(tzinfo=timezone.utc)
    return Release(head.get("Suite", ""), head.get("Codename", ""), valid_until, sums)


# -- the label --------------------------------------------------------------------------------------
def encode_packages(packages: Mapping[str, str]) -> str:
    return " ".join(f"{name}={packages[name]}" for name in sorted(packages))


def package_labels(packages: Mapping[str, str]) -> dict[str, str]:
    value = encode_packages(packages)
    return {PACKAGES_LABEL: value, PACKAGES_SHA256_LABEL: hashlib.sha256(value.encode()).hexdigest(),
            PACKAGES_COUNT_LABEL: str(len(packages))}


class LabelProblem(ValueError):
    """An image's package labels are missing or do not match their own sha256/count."""


def packages_from_labels(labels: Optional[Mapping[str, str]]) -> dict[str, str]:
    labels = labels or {}
    value = labels.get(PACKAGES_LABEL)
    if value is None:
        raise LabelProblem(f"no {PACKAGES_LABEL} label (built before images recorded their packages)")
    if hashlib.sha256(value.encode()).hexdigest() != labels.get(PACKAGES_SHA256_LABEL):
        raise LabelProblem(f"{PACKAGES_LABEL} does not match {PACKAGES_SHA256_LABEL}")
    packages: dict[str, str] = {}
    for item in value.split():
        name, sep, version = item.partition("=")
        if not sep or not name or not version:
            raise LabelProblem(f"{PACKAGES_LABEL}: malformed entry {item[:80]!r}")
        packages[name] = version
    if str(len(packages)) != labels.get(PACKAGES_COUNT_LABEL):
        raise LabelProblem(f"{PACKAGES_LABEL} holds {len(packages)} packages, "
                           f"{PACKAGES_COUNT_LABEL} says {labels.get(PACKAGES_COUNT_LABEL)}")
    return packages


# -- the decision -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Update:
    package: str
    installed: str
    available: str
    suite: str

    def __str__(self) -> str:
        return f"{self.package} {self.installed} -> {self.available} ({self.suite})"


def merge_available(into: dict[str, tuple[str, str]], index: Mapping[str, str], suite: str) -> None:
    """Fold one suite's {package: version} into {package: (newest version, suite offering it)}."""
    for name, version in index.items():
        have = into.get(name)
        if have is None or compare_versions(version, have[0]) > 0:
            into[name] = (version, suite)


def updates_for(installed: Mapping[str, str], available: Mapping[str, tuple[str, str]]) -> list[Update]:
    """The installed packages for which the archive offers a newer version. Packages the archive does not
    carry (foreign architecture, local builds) have nothing to be updated to and are left out."""
    out = []
    for name in sorted(installed):
        offer = available.get(name)
        if offer and compare_versions(offer[0], installed[name]) > 0:
            out.append(Update(name, installed[name], offer[0], offer[1]))
    return out
