"""What the Debian archive offers, read on this machine: the images' apt sources and their package indexes.

For each source (suite, suite-updates, suite-security): GET dists/<suite>/InRelease, check its signature
with gpgv against the Debian archive keyring (and its Valid-Until, so a replayed old index is refused),
then GET main/binary-<arch>/Packages.xz and check it against the sha256 the signed Release names. The
result is {package: (newest version, suite)} — the same newest-version choice apt makes with no pins.
Reads only (dry-run runs them too, as probes); ~9 MB per architecture, once per run.
"""
from __future__ import annotations

import hashlib
import lzma
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..commands import debootstrap as dbs
from ..config import OfflineCfg
from ..errors import BadInput, OperationFailed
from ..runner import Runner, error_line
from . import debpkg

COMPONENT = "main"


@dataclass(frozen=True)
class AptSource:
    uri: str
    suite: str

    def line(self) -> str:
        return f"deb {self.uri} {self.suite} {COMPONENT}"


def apt_sources(o: OfflineCfg) -> list[AptSource]:
    """The images' sources: the release, its stable updates and its security updates (its own archive)."""
    return [AptSource(o.mirror.rstrip("/"), o.suite), AptSource(o.mirror.rstrip("/"), f"{o.suite}-updates"),
            AptSource(o.security_mirror.rstrip("/"), f"{o.suite}-security")]


def sources_list(o: OfflineCfg) -> str:
    return ("# iosops: written by `inv images.offline` (the release, its updates and its security updates)\n"
            + "".join(s.line() + "\n" for s in apt_sources(o)))


class Archive:
    """The archive's newest versions, fetched once per architecture per run."""

    def __init__(self, o: OfflineCfg, runner: Runner, now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.o, self.runner, self.now = o, runner, now
        self._by_arch: dict[str, dict[str, tuple[str, str]]] = {}
        self._indexes: dict[tuple[AptSource, str], dict[str, str]] = {}

    def available(self, arch: str) -> dict[str, tuple[str, str]]:
        if arch not in self._by_arch:
            merged: dict[str, tuple[str, str]] = {}
            for source in apt_sources(self.o):
                debpkg.merge_available(merged, self.index(source, arch), source.suite)
            self._by_arch[arch] = merged
        return self._by_arch[arch]

    def _get(self, url: str) -> bytes:
        import requests

        try:
            res = self.runner.http("GET", url, timeout=120, mutating=False)
        except requests.RequestException as exc:
            raise OperationFailed(f"archive unreachable: GET {url}: {type(exc).__name__}") from None
        if res.rc != 0:
            raise OperationFailed(f"archive answered HTTP {res.rc} to GET {url}; check offline.mirror / "
                                  "offline.security_mirror")
        return res.value.content

    def index(self, source: AptSource, arch: str) -> dict[str, str]:
        """One suite's {package: newest version}, verified (fetched once per run)."""
        if (source, arch) not in self._indexes:
            self._indexes[(source, arch)] = self._fetch_index(source, arch)
        return self._indexes[(source, arch)]

    def _fetch_index(self, source: AptSource, arch: str) -> dict[str, str]:
        if not Path(self.o.keyring).is_file():
            raise BadInput(f"offline.keyring: {self.o.keyring} not found; install debian-archive-keyring "
                           "(scripts/bootstrap.sh does) or point IOSOPS_OFFLINE__KEYRING at the archive keyring")
        base = f"{source.uri}/dists/{source.suite}"
        signed = self._get(f"{base}/InRelease").decode("utf-8", errors="replace")
        checked = self.runner.run(dbs.gpgv(self.o.keyring), input=signed, mutating=False, check=False)
        if checked.rc != 0:
            raise OperationFailed(f"{base}/InRelease: signature check failed ({error_line(checked.stderr)}); "
                                  f"not trusting it (keyring {self.o.keyring})")
        verified = checked.stdout
        release = debpkg.parse_release(verified)
        if release.valid_until and release.valid_until < self.now():
            raise OperationFailed(f"{base}/InRelease expired at {release.valid_until:%Y-%m-%d %H:%M} UTC "
                                  "(a stale mirror or a replayed index): not trusting it")
        path = f"{COMPONENT}/binary-{arch}/Packages.xz"
        if path not in release.sha256:
            raise OperationFailed(f"{base}/InRelease lists no {path} (architecture {arch} not in the archive?)")
        want, size = release.sha256[path]
        data = self._get(f"{base}/{path}")
        if hashlib.sha256(data).hexdigest() != want or len(data) != size:
            raise OperationFailed(f"{base}/{path} does not match the sha256 in its signed InRelease "
                                  "(a mirror mid-update? retry)")
        return debpkg.parse_packages_index(lzma.decompress(data).decode("utf-8", errors="replace"))

