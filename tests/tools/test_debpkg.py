"""The tools-tier half of tests/unit/test_debpkg.py: these tests run real programs (see tests/tools/__init__.py)."""
import subprocess

import pytest

from iosops.images import debpkg

# (a, b, expected sign of compare_versions(a, b)): epochs, revisions, tildes, letters, leading zeros,
# and the real updates the archive offered on this machine.
VERSIONS = [
    ("3.0.20-1~deb12u2", "3.0.22-1~deb12u2", -1),
    ("1:1.2.13.dfsg-1", "1:1.2.13.dfsg-1+deb12u1", -1),
    ("5:7.0.15-1~deb12u7", "5:7.0.15-1~deb12u10", -1),
    ("20230311+deb12u1", "20250419~deb12u2", -1),
    ("10.42-1", "10.42-1+deb12u2", -1),
    ("2026b-0+deb12u1", "2026f-0+deb12u1", -1),
    ("1:1.0", "2.0", 1),
    ("1.0~rc1", "1.0", -1),
    ("1.0~~", "1.0~", -1),
    ("1.0", "1.0+b1", -1),
    ("1.0-1", "1.0-1", 0),
    ("1.0", "1.0-0", 0),
    ("0:1.0", "1.0", 0),
    ("1.01", "1.1", 0),
    ("1.0a", "1.0", 1),
    ("1.0a", "1.0+", -1),
    ("1.0.1", "1.0a", 1),  # "." sorts after letters
    ("2.6.1", "2.6.2", -1),
    ("9.1-1", "9.1-1", 0),
    ("1.2.3-4.5", "1.2.3-4.10", -1),
    ("1.0-1~bpo1", "1.0-1", -1),
]


@pytest.mark.parametrize("a,b,sign", VERSIONS, ids=[f"{a} vs {b}" for a, b, _ in VERSIONS])
def test_compare_versions_matches_dpkg(a, b, sign):
    assert debpkg.compare_versions(a, b) == sign
    assert debpkg.compare_versions(b, a) == -sign
    # the reference implementation on this machine agrees (the table itself could be wrong)
    op = {-1: "lt", 0: "eq", 1: "gt"}[sign]
    assert subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0
