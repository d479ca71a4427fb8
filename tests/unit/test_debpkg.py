"""Debian package sets, pure: versions compared as dpkg does (checked against the real dpkg), dpkg status,
Packages and Release parsers on captured text, the package label and the staleness decision.
The checks that run the real programs are in the tools tier: tests/tools/test_debpkg.py."""
from datetime import datetime, timezone
from pathlib import Path

import pytest

from iosops.images import debpkg

DATA = Path(__file__).parent / "data"



def test_dpkg_status_keeps_installed_packages_only():
    got = debpkg.parse_dpkg_status((DATA / "dpkg_status_sample").read_text(), "amd64")
    # nano: removed, config files left ("deinstall ok config-files"); libc6:i386 a foreign architecture
    assert got == {"base-files": "12.4+deb12u15", "libssl3": "3.0.22-1~deb12u2", "tzdata": "2026f-0+deb12u1",
                   "libc6:i386": "2.36-9+deb12u14"}


def test_packages_index_takes_the_newest_version_of_each_package():
    text = ("Package: openssl\nVersion: 3.0.20-1~deb12u2\nDepends: libssl3 (>= 3.0.20)\n\n"
            "Package: zlib1g\nSource: zlib\nVersion: 1:1.2.13.dfsg-1\nDescription: x\n y\n\n"
            "Package: openssl\nVersion: 3.0.22-1~deb12u2\n\n"
            "Package: openssl\nVersion: 3.0.9-1\n")
    assert debpkg.parse_packages_index(text) == {"openssl": "3.0.22-1~deb12u2", "zlib1g": "1:1.2.13.dfsg-1"}


def test_release_sha256_section_and_valid_until():
    rel = debpkg.parse_release((DATA / "release_security_sample").read_text())
    assert rel.codename == "bookworm-security"
    assert rel.valid_until == datetime(2026, 12, 8, 1, 33, 13, tzinfo=timezone.utc)
    assert rel.sha256["main/binary-amd64/Packages.xz"] == (
        "84d8abeaf3b586eda3456716299c1d198db64a175f0e34791c9ec5678d3c4551", 385496)  # pragma: allowlist secret - a package index sha256 from a captured Release file
    # only the SHA256 section counts: an MD5Sum line for the same path is not taken
    md5 = "MD5Sum:\n 0123456789abcdef0123456789abcdef 12 main/binary-amd64/Packages.xz\n"
    assert debpkg.parse_release(md5).sha256 == {}
    assert debpkg.parse_release("Suite: stable\nCodename: bookworm\n").valid_until is None


def test_package_label_round_trip_and_damage_detected():
    pkgs = {"zlib1g": "1:1.2.13.dfsg-1+deb12u1", "apt": "2.6.2", "libssl3": "3.0.22-1~deb12u2"}
    labels = debpkg.package_labels(pkgs)
    assert labels[debpkg.PACKAGES_LABEL] == "apt=2.6.2 libssl3=3.0.22-1~deb12u2 zlib1g=1:1.2.13.dfsg-1+deb12u1"
    assert labels[debpkg.PACKAGES_COUNT_LABEL] == "3"
    assert debpkg.packages_from_labels({**labels, "other": "x"}) == pkgs
    edited = {**labels, debpkg.PACKAGES_LABEL: labels[debpkg.PACKAGES_LABEL].replace("3.0.22", "3.0.99")}
    with pytest.raises(debpkg.LabelProblem, match="does not match"):
        debpkg.packages_from_labels(edited)
    with pytest.raises(debpkg.LabelProblem, match="says 4"):
        debpkg.packages_from_labels({**labels, debpkg.PACKAGES_COUNT_LABEL: "4"})
    with pytest.raises(debpkg.LabelProblem, match="no iosops.packages label"):
        debpkg.packages_from_labels({"iosops.fingerprint": "f"})


def test_updates_are_newer_archive_versions_of_installed_packages():
    available: dict = {}
    debpkg.merge_available(available, {"libssl3": "3.0.20-1~deb12u2", "apt": "2.6.1", "bash": "5.2.15-2+b7"}, "bookworm")
    debpkg.merge_available(available, {"libssl3": "3.0.22-1~deb12u2", "apt": "2.6.2"}, "bookworm-security")
    debpkg.merge_available(available, {"libssl3": "3.0.21-1"}, "bookworm-updates")  # older than security's
    assert available["libssl3"] == ("3.0.22-1~deb12u2", "bookworm-security")
    installed = {"libssl3": "3.0.20-1~deb12u2", "apt": "2.6.2", "bash": "5.2.15-2+b13", "local-tool": "1.0"}
    updates = debpkg.updates_for(installed, available)
    # apt: same version; bash: installed newer than offered; local-tool: not in the archive
    assert updates == [debpkg.Update("libssl3", "3.0.20-1~deb12u2", "3.0.22-1~deb12u2", "bookworm-security")]
    assert str(updates[0]) == "libssl3 3.0.20-1~deb12u2 -> 3.0.22-1~deb12u2 (bookworm-security)"
    assert debpkg.updates_for({"libssl3": "3.0.22-1~deb12u2"}, available) == []
