"""The env's known_hosts file: which SSH host keys the project trusts, checked on every connection.

OpenSSH's format (`host keytype base64`, `[host]:port` for ports other than 22), one line per key, sorted,
so the file is committable and a diff shows exactly which host key was added or replaced. Pure functions
(fingerprints, parsing, rendering, planning a trust) plus `KnownHosts`, which makes a paramiko client
refuse an unknown key (BadInput naming its fingerprint) and turns a changed key into BadInput naming both.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from ..errors import BadInput

# Key types a scan asks for, in paramiko's order of preference (RSA is offered as rsa-sha2-*, recorded as
# ssh-rsa, as OpenSSH does).
SCAN_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "rsa-sha2-512")
HEADER = ("# SSH host keys of env {env}: every connection is checked against this file (unknown or changed\n"
          "# keys are refused). Written by `inv hosts.trust --env {env}`: check each fingerprint out of band\n"
          "# (on the host: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) before committing.\n")


class HostKeyRefused(BadInput):
    """An SSH host offered a key the env's known_hosts file does not hold, or a different one."""


@dataclass(frozen=True, order=True)
class HostKey:
    host: str  # host id or patterns as written: "app1", "[10.0.0.5]:2222", "a,b", "|1|salt|hash"
    keytype: str
    b64: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.b64)

    def line(self) -> str:
        return f"{self.host} {self.keytype} {self.b64}"


def host_id(address: str, port: int = 22) -> str:
    """How OpenSSH (and paramiko) name a host in known_hosts: `addr` on port 22, else `[addr]:port`."""
    return address if int(port) == 22 else f"[{address}]:{port}"


def display_name(hid: str) -> str:
    """`[addr]:port` -> `addr:port` (what people type); `addr` stays."""
    if hid.startswith("[") and "]:" in hid:
        addr, port = hid[1:].split("]:", 1)
        return f"{addr}:{port}"
    return hid


def parse_host_arg(text: str) -> tuple[str, Optional[int]]:
    """`addr`, `addr:port` or `[addr]:port` -> (addr, port or None)."""
    text = text.strip()
    if text.startswith("[") and "]:" in text:
        addr, port = text[1:].split("]:", 1)
    elif text.count(":") == 1:
        addr, port = text.split(":", 1)
    else:
        return text, None
    if not port.isdigit():
        raise BadInput(f"host {text!r}: the port must be a number (ADDRESS, ADDRESS:PORT or [ADDRESS]:PORT)")
    return addr, int(port)


def _blob(b64: str) -> bytes:
    try:
        return base64.b64decode(b64.encode(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the key is not valid base64") from None


def blob_type(blob: bytes) -> str:
    """The key type an SSH public key blob names in its first field (uint32 length + name)."""
    if len(blob) < 4:
        raise ValueError("the key is too short")
    (n,) = struct.unpack(">I", blob[:4])
    if n > 64 or len(blob) < 4 + n:
        raise ValueError("the key is malformed")
    return blob[4:4 + n].decode("ascii", errors="replace")


def fingerprint(b64: str) -> str:
    """OpenSSH's `SHA256:...` fingerprint of a public key (what `ssh-keygen -lf` and `ssh` print)."""
    digest = hashlib.sha256(_blob(b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _hashed_match(pattern: str, hid: str) -> bool:
    """`|1|base64(salt)|base64(hmac-sha1(salt, host))` (OpenSSH HashKnownHosts)."""
    try:
        _, _, salt, digest = pattern.split("|")
        want = base64.b64decode(digest)
        got = hmac.new(base64.b64decode(salt), hid.encode(), hashlib.sha1).digest()
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(want, got)


def matches(hosts_field: str, hid: str) -> bool:
    """Whether a known_hosts host field names `hid`: a comma list of names or one hashed name.
    Wildcards and negations are not used by this project's files: such an entry matches nothing."""
    if hosts_field.startswith("|1|"):
        return _hashed_match(hosts_field, hid)
    return hid in hosts_field.split(",")


def parse(text: str, source: str = "known_hosts") -> list[HostKey]:
    """Entries of a known_hosts file; a malformed line is BadInput naming file:line."""
    out: list[HostKey] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if parts[0].startswith("@"):
            raise BadInput(f"{source}:{n}: markers like {parts[0]} are not supported; keep one `host keytype key` "
                           "per line (inv hosts.trust writes them)")
        if len(parts) < 3:
            raise BadInput(f"{source}:{n}: expected `host keytype base64-key`; fix or delete that line "
                           "(inv hosts.trust writes them)")
        hosts, keytype, b64 = parts[:3]
        try:
            inner = blob_type(_blob(b64))
        except ValueError as exc:
            raise BadInput(f"{source}:{n}: {exc}; fix or delete that line (inv hosts.trust writes them)") from None
        if inner != keytype:
            raise BadInput(f"{source}:{n}: the line says {keytype} but the key is {inner}; fix or delete that line")
        out.append(HostKey(hosts, keytype, b64))
    return out


def render(keys: Iterable[HostKey], env: str) -> str:
    """The file: header, then one line per key sorted by host and type (stable: a re-run rewrites nothing)."""
    return HEADER.format(env=env) + "".join(k.line() + "\n" for k in sorted(set(keys)))


def keys_for(keys: Iterable[HostKey], hid: str) -> list[HostKey]:
    return [k for k in keys if matches(k.host, hid)]


# -- planning a trust (pure) ------------------------------------------------------------------------
@dataclass
class TrustOutcome:
    host: str  # address:port as people type it
    host_id: str
    status: str  # trusted | no change | added <types> | replaced
    offered: list[tuple[str, str]] = field(default_factory=list)  # (keytype, fingerprint)
    conflicts: list[tuple[str, str, str]] = field(default_factory=list)  # (keytype, recorded fp, offered fp)

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "host_id": self.host_id, "status": self.status,
                "keys": [{"type": t, "fingerprint": fp} for t, fp in self.offered],
                "conflicts": [{"type": t, "recorded": r, "offered": o} for t, r, o in self.conflicts]}


def plan_trust(current: list[HostKey], offered: dict[str, list[tuple[str, str]]],
               replace: set[str]) -> tuple[list[HostKey], list[TrustOutcome]]:
    """What the file becomes after trusting `offered` ({host id: [(keytype, b64)]}).

    A host not in the file gets its offered keys; a known host gets key types it did not have; a key
    that differs from the recorded one of its type is a conflict (the outcome lists it and nothing of that
    host changes) unless the host is in `replace` (host ids), whose recorded keys are then all replaced.
    Entries of other hosts are kept as they are."""
    keys = list(current)
    outcomes: list[TrustOutcome] = []
    for hid, offers in offered.items():
        have = keys_for(keys, hid)
        out = TrustOutcome(display_name(hid), hid, "no change", [(t, fingerprint(b)) for t, b in sorted(offers)])
        new = [HostKey(hid, t, b) for t, b in sorted(offers)]
        if hid in replace:
            if sorted((k.keytype, k.b64) for k in have) != sorted(offers):
                keys = [k for k in keys if k not in have] + new
                out.status = "replaced" if have else "trusted"
        elif not have:
            keys += new
            out.status = "trusted"
        else:
            recorded = {k.keytype: k for k in have}
            out.conflicts = [(t, recorded[t].fingerprint, fingerprint(b)) for t, b in sorted(offers)
                             if t in recorded and recorded[t].b64 != b]
            added = [k for k in new if k.keytype not in recorded]
            if not out.conflicts and added:
                keys += added
                out.status = "added " + ", ".join(k.keytype for k in added)
            elif out.conflicts:
                out.status = "changed"
        outcomes.append(out)
    return keys, outcomes


# -- checking connections ---------------------------------------------------------------------------
def quiet_paramiko() -> None:
    """paramiko logs a failed key exchange or banner with a traceback from its transport thread; our
    errors say what went wrong in one line (BadInput/OperationFailed naming the host)."""
    import logging

    logging.getLogger("paramiko").setLevel(logging.CRITICAL)


def _key_fp(key: Any) -> str:
    return f"{key.get_name()} {fingerprint(key.get_base64())}"


class KnownHosts:
    """The env's file, loaded once; installs the check into paramiko clients."""

    def __init__(self, path: Path, env: str, shown: str = ""):
        self.path, self.env = path, env
        self.shown = shown or str(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        except OSError as exc:
            raise BadInput(f"{self.shown}: cannot read the known_hosts file ({exc.strerror})") from None
        self.keys = parse(text, self.shown)

    def trust_hint(self) -> str:
        return f"inv hosts.trust --env {self.env}"

    def unknown(self, hid: str, key: Any) -> HostKeyRefused:
        return HostKeyRefused(
            f"unknown host key for {display_name(hid)} ({_key_fp(key)}; not in {self.shown}): nothing was run; "
            f"check that fingerprint out of band (on the host: ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), "
            f"then trust it: {self.trust_hint()}")

    def changed(self, hid: str, got: Any, expected: Any) -> HostKeyRefused:
        return HostKeyRefused(
            f"host key of {display_name(hid)} CHANGED: {self.shown} records {_key_fp(expected)}, the host offers "
            f"{_key_fp(got)} (host reinstalled, or someone in between): nothing was run; if the change is "
            f"expected and the new fingerprint checks out out of band, delete that line or run "
            f"{self.trust_hint()} --replace {display_name(hid)}")

    def install(self, client: Any, hid: str) -> None:
        """Make `client` (paramiko.SSHClient) trust exactly this file's keys for `hid` and refuse any other."""
        import paramiko

        known = self

        class Refuse(paramiko.MissingHostKeyPolicy):
            def missing_host_key(self, client, hostname, key):
                raise known.unknown(hid, key)

        client.set_missing_host_key_policy(Refuse())
        store = client.get_host_keys()
        for k in keys_for(self.keys, hid):
            store.add(hid, k.keytype, paramiko.PKey.from_type_string(k.keytype, _blob(k.b64)))

    def open_checked(self, client: Any, hid: str, opener: Callable[[], Any]) -> Any:
        """Install the check into `client`, then `opener()` (which connects it: client.connect(...) or
        fabric's Connection.open): HostKeyRefused for an unknown or changed key, the client closed."""
        import paramiko

        quiet_paramiko()
        self.install(client, hid)
        try:
            return opener()
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise self.changed(hid, exc.key, exc.expected_key) from None
        except HostKeyRefused:
            client.close()
            raise


def for_env(env: Any) -> KnownHosts:
    """The KnownHosts of a loaded Env (iosops.config.Env)."""
    path = env.known_hosts_path
    shown = str(path.relative_to(env.root)) if path.is_relative_to(env.root) else str(path)
    return KnownHosts(path, env.name, shown)
