"""Every SSH connection of the project starts here, each checked against the env's known_hosts file:
fabric (RemoteRunner: deploy, provision, the lock on the data host) and testinfra (verify-hosts)."""
from __future__ import annotations

import functools
import os
from typing import Any, Optional

from ..config import Env, HostCfg
from ..runner import RemoteRunner, Runner, SSHHost
from .known_hosts import KnownHosts, for_env, host_id


def key_file(env: Env, h: HostCfg) -> Optional[str]:
    return str(env.path(os.path.expanduser(h.key_file))) if h.key_file else None


def ssh_host(env: Env, h: HostCfg, known: Optional[KnownHosts] = None) -> SSHHost:
    return SSHHost(h.address, port=h.port, user=h.user, key_filename=key_file(env, h),
                   known_hosts=known or for_env(env))


def remote_runner(env: Env, runner: Runner, h: HostCfg, known: Optional[KnownHosts] = None) -> RemoteRunner:
    return RemoteRunner(runner.on(ssh_host(env, h, known), connect_timeout=env.cfg.hosts.connect_timeout_s))


def testinfra_host(env: Env, h: HostCfg, known: Optional[KnownHosts] = None) -> Any:
    """A testinfra Host over paramiko whose client checks the host key like RemoteRunner does (testinfra's
    own paramiko backend accepts any key with a warning and reads no known_hosts file)."""
    import paramiko
    from testinfra.backend.paramiko import ParamikoBackend
    from testinfra.host import Host

    known = known or for_env(env)
    ident = key_file(env, h)
    timeout = env.cfg.hosts.connect_timeout_s

    class CheckedParamikoBackend(ParamikoBackend):
        @functools.cached_property
        def client(self) -> paramiko.SSHClient:
            client = paramiko.SSHClient()
            cfg: dict[str, Any] = {"hostname": h.address, "port": h.port, "username": h.user, "timeout": timeout,
                                   "look_for_keys": False, "allow_agent": False}
            if ident:
                cfg["key_filename"] = ident
            known.open_checked(client, host_id(h.address, h.port), lambda: client.connect(**cfg))
            return client

    backend = CheckedParamikoBackend(f"paramiko://{h.user}@{h.address}:{h.port}", timeout=timeout)
    host = Host(backend)
    backend.set_host(host)
    return host
