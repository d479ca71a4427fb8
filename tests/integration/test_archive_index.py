"""What the archive offers, read as `inv images.stale` reads it: a local archive on 127.0.0.1 laid out like
deb.debian.org (debian/ with the release and -updates, debian-security/ with -security), its InRelease
files clearsigned by a key made for the test with the real gpg, checked by the real gpgv. Proves the newest
version across suites wins, and that a bad signature, an unknown key, a replayed (expired) index and a
Packages file that does not match its signed sha256 are each refused."""
import hashlib
import lzma
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from iosops.images.archive import Archive
from iosops.config import OfflineCfg
from iosops.errors import BadInput, OperationFailed
from iosops.runner import Runner

SUITES = {  # (archive folder, suite) -> Packages index
    ("debian", "bookworm"): {"libssl3": "3.0.20-1~deb12u2", "bash": "5.2.15-2+b7", "tzdata": "2025b-0+deb12u1"},
    ("debian", "bookworm-updates"): {"tzdata": "2026f-0+deb12u1"},
    ("debian-security", "bookworm-security"): {"libssl3": "3.0.22-1~deb12u2"},
}


def gpg(home: Path, *args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback",
                           "--passphrase", "", *args], input=input, capture_output=True, check=True, timeout=60).stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two signing keys; the keyring trusts only the first."""
    out = {}
    for name in ("trusted", "stranger"):
        home = tmp_path_factory.mktemp(f"gnupg-{name}")
        home.chmod(0o700)
        gpg(home, "--quick-gen-key", f"iosops test archive {name} <{name}@archive.invalid>", "ed25519", "sign", "never")
        out[name] = home
    keyring = tmp_path_factory.mktemp("keyring") / "archive.gpg"
    keyring.write_bytes(gpg(out["trusted"], "--export"))
    out["keyring"] = keyring
    return out


def publish(root: Path, keys: dict, *, signer: str = "trusted", valid_for: timedelta = timedelta(days=7)) -> None:
    for (folder, suite), packages in SUITES.items():
        dist = root / folder / "dists" / suite
        pkgdir = dist / "main" / "binary-amd64"
        pkgdir.mkdir(parents=True, exist_ok=True)
        text = "".join(f"Package: {n}\nVersion: {v}\nArchitecture: amd64\nDescription: test\n continued\n\n"
                       for n, v in packages.items())
        xz = lzma.compress(text.encode())
        (pkgdir / "Packages.xz").write_bytes(xz)
        until = (datetime.now(timezone.utc) + valid_for).strftime("%a, %d %b %Y %H:%M:%S UTC")
        release = (f"Origin: Debian\nSuite: {suite}\nCodename: {suite}\nValid-Until: {until}\nSHA256:\n"
                   f" {hashlib.sha256(xz).hexdigest()} {len(xz)} main/binary-amd64/Packages.xz\n")
        (dist / "InRelease").write_bytes(gpg(keys[signer], "--clearsign", input=release.encode()))


@pytest.fixture
def archive_root(tmp_path):
    """Files under tmp_path served on 127.0.0.1 (stopped at the end of the test)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def cfg(url: str, keyring: Path) -> OfflineCfg:
    return OfflineCfg(mirror=f"{url}/debian", security_mirror=f"{url}/debian-security", keyring=str(keyring))


def test_newest_version_across_release_updates_and_security(archive_root, keys):
    root, url = archive_root
    publish(root, keys)
    runner = Runner(say=lambda line: None)
    got = Archive(cfg(url, keys["keyring"]), runner).available("amd64")
    assert got == {"libssl3": ("3.0.22-1~deb12u2", "bookworm-security"), "bash": ("5.2.15-2+b7", "bookworm"),
                   "tzdata": ("2026f-0+deb12u1", "bookworm-updates")}
    # reads only: six GETs and three gpgv checks, none of them in a plan of changes
    assert runner.plan() == [] and sum(a.kind == "http" for a in runner.actions) == 6


def test_an_edited_inrelease_is_refused(archive_root, keys):
    root, url = archive_root
    publish(root, keys)
    inrelease = root / "debian-security/dists/bookworm-security/InRelease"
    inrelease.write_text(inrelease.read_text().replace("Suite: bookworm-security", "Suite: bookworm-securitx"))
    with pytest.raises(OperationFailed, match="bookworm-security/InRelease: signature check failed .*BAD signature"):
        Archive(cfg(url, keys["keyring"]), Runner(say=lambda line: None)).available("amd64")


def test_an_index_signed_by_an_unknown_key_is_refused(archive_root, keys):
    root, url = archive_root
    publish(root, keys, signer="stranger")
    with pytest.raises(OperationFailed, match="signature check failed .*No public key"):
        Archive(cfg(url, keys["keyring"]), Runner(say=lambda line: None)).available("amd64")


def test_an_expired_index_is_refused(archive_root, keys):
    root, url = archive_root
    publish(root, keys, valid_for=timedelta(days=-1))
    with pytest.raises(OperationFailed, match="expired"):
        Archive(cfg(url, keys["keyring"]), Runner(say=lambda line: None)).available("amd64")


def test_a_packages_file_not_matching_its_signed_sha256_is_refused(archive_root, keys):
    root, url = archive_root
    publish(root, keys)
    (root / "debian/dists/bookworm-updates/main/binary-amd64/Packages.xz").write_bytes(
        lzma.compress(b"Package: tzdata\nVersion: 2019a-1\n\n"))
    with pytest.raises(OperationFailed, match="does not match the sha256"):
        Archive(cfg(url, keys["keyring"]), Runner(say=lambda line: None)).available("amd64")


def test_missing_keyring_is_bad_input_and_an_unreachable_archive_one_line(archive_root, keys, tmp_path):
    _, url = archive_root
    with pytest.raises(BadInput, match="offline.keyring"):
        Archive(cfg(url, tmp_path / "none.gpg"), Runner(say=lambda line: None)).available("amd64")
    with pytest.raises(OperationFailed, match="HTTP 404"):  # nothing published
        Archive(cfg(url, keys["keyring"]), Runner(say=lambda line: None)).available("amd64")
