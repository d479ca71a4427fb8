"""`inv hosts.trust`: record the SSH host keys of an env's hosts in its known_hosts file.

Look, then act: every host's offered keys are read first (one key exchange per key type, like
ssh-keyscan; no login), the new file is planned by a pure function, and written only when it differs. A
key that differs from the recorded one is refused unless its host is named with --replace: nothing is
written then, on any host's account.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Optional

from ..config import Env
from ..errors import BadInput
from ..runner import Runner
from .known_hosts import (SCAN_TYPES, TrustOutcome, display_name, for_env, host_id, parse_host_arg, plan_trust,
                          quiet_paramiko, render)


def offered_keys(address: str, port: int, timeout: float) -> list[tuple[str, str]]:
    """[(keytype, base64)] of every host key `address:port` offers (a key exchange per type; no login)."""
    import paramiko

    quiet_paramiko()  # a type the host lacks ends its key exchange with a logged traceback: not ours
    found: dict[str, str] = {}
    last = ""
    for ktype in SCAN_TYPES:
        try:
            sock = socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            raise BadInput(f"host {address}:{port} is unreachable ({exc.strerror or exc}); nothing was written") from None
        transport = paramiko.Transport(sock)
        try:
            transport.banner_timeout = timeout
            transport.get_security_options().key_types = [ktype]
            transport.start_client(timeout=timeout)
            key = transport.get_remote_server_key()
            found[key.get_name()] = key.get_base64()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            last = f"{type(exc).__name__}: {exc}"
            continue  # the host has no key of that type (or does not speak SSH: said below)
        finally:
            transport.close()
    if not found:
        raise BadInput(f"host {address}:{port} offered no host key of a type this tool checks "
                       f"({', '.join(SCAN_TYPES)}; last error {last}); nothing was written")
    return sorted(found.items())


@dataclass
class TrustResult:
    env: str
    file: str
    hosts: list[TrustOutcome] = field(default_factory=list)
    written: bool = False

    def as_dict(self) -> dict:
        return {"env": self.env, "file": self.file, "written": self.written, "hosts": [h.as_dict() for h in self.hosts]}


def trust(env: Env, runner: Runner, replace: Optional[list[str]] = None) -> TrustResult:
    hosts = env.cfg.hosts.hosts
    if not hosts:
        raise BadInput(f"env {env.name} has no SSH hosts; nothing to trust (hosts.hosts in envs/{env.name}.yaml)")
    ids = {host_id(h.address, h.port): h for h in hosts}
    replace_ids: set[str] = set()
    for arg in replace or []:
        addr, port = parse_host_arg(arg)
        hit = [hid for hid, h in ids.items() if h.address == addr and (port is None or h.port == port)]
        if len(hit) != 1:
            names = ", ".join(display_name(i) for i in ids)
            raise BadInput(f"--replace {arg}: {'not a host' if not hit else 'names several hosts'} of env {env.name} "
                           f"(hosts: {names}); nothing was written")
        replace_ids.add(hit[0])

    known = for_env(env)
    result = TrustResult(env.name, known.shown)
    offered = {hid: offered_keys(h.address, h.port, env.cfg.hosts.connect_timeout_s) for hid, h in ids.items()}
    keys, result.hosts = plan_trust(known.keys, offered, replace_ids)
    changed = [o for o in result.hosts if o.conflicts]
    if changed:
        o = changed[0]
        t, rec, off = o.conflicts[0]
        more = f" (and {len(changed) - 1} more host(s))" if len(changed) > 1 else ""
        raise BadInput(f"host key of {o.host} CHANGED: {known.shown} records {t} {rec}, the host offers {t} {off}"
                       f"{more}; nothing was written; if the change is expected and the new fingerprint checks out "
                       f"out of band: inv hosts.trust --env {env.name} --replace {o.host}")
    if set(keys) != set(known.keys):  # hand-written comments and order stay until a key changes
        runner.write_file(known.path, render(keys, env.name), 0o644)
        result.written = not runner.dry_run
    return result
