"""Where the compose stack runs: this machine or SSH hosts, each with its roles (web: nginx and the API
colours; data: the datastores and the backup services), and the preflight checks that refuse bad input
before any host is touched."""
from __future__ import annotations

import socket
import time
from pathlib import Path, PurePosixPath
from typing import Optional

from ..commands import compose as cc
from ..commands import docker as d
from ..commands import host as hc
from ..commands import tls as tc
from ..config import Env, HostCfg
from ..errors import BadInput, IosopsError
from ..hosts.known_hosts import HostKeyRefused
from ..runner import Runner

class Target:
    """One host running the stack: this machine (the local runner) or an SSH host (a runner holding its SSHRemote)."""

    def __init__(self, env: Env, runner: Runner, project_dir: PurePosixPath, host: Optional[HostCfg] = None):
        self.env, self.runner, self.dir, self.host = env, runner, project_dir, host
        self.project = env.cfg.stack.name
        self.roles = frozenset(host.roles) if host else frozenset({"web", "data"})
        self._compose: Optional[list[str]] = None

    @property
    def web(self) -> bool:
        return "web" in self.roles

    @property
    def data(self) -> bool:
        return "data" in self.roles

    @property
    def split(self) -> bool:
        """The datastores run on another host than the API (or the other way round)."""
        return len(self.roles) == 1

    @property
    def name(self) -> str:
        return self.runner.where

    def datastores(self) -> list[str]:
        """The datastore services of this host: all of them on the data host, none on a web host."""
        if not self.data:
            return []
        return ["postgres", "redis"] + (["elasticsearch"] if "search" in self.env.cfg.deploy.profiles else [])

    @property
    def remote(self) -> bool:
        return self.runner.remote is not None

    # -- files on the host -------------------------------------------------------------------------
    def path(self, rel: str) -> PurePosixPath:
        p = PurePosixPath(rel)
        return p if p.is_absolute() else self.dir / p

    def put(self, rel: str, content: str, mode: int = 0o644) -> None:
        path = self.path(rel)
        self.runner.write_file(Path(path) if not self.remote else path, content, mode)

    def read(self, rel: str) -> Optional[str]:
        r = self.runner.probe(hc.cat(str(self.path(rel))), check=False)
        return r.stdout if r.rc == 0 else None

    # -- compose -------------------------------------------------------------------------------------
    def compose(self) -> list[str]:
        """`docker compose` (v2) when the host has it, else `docker-compose` (1.29). A probe."""
        if self._compose is None:
            v2 = self.runner.probe(cc.detect_v2(), check=False)
            self._compose = cc.V2 if v2.rc == 0 else cc.V1
        return self._compose

    def base(self) -> list[str]:
        files = [str(self.dir / "compose.yml")]
        if self.env.cfg.stack.labels:
            files.append(str(self.dir / "compose.labels.yml"))
        if self.split:
            files.append(str(self.dir / "compose.roles.yml"))
        return cc.base(self.compose(), self.project, str(self.dir), files, str(self.dir / "stack.env"),
                       self.env.cfg.deploy.profiles)

    def containers(self, service: str) -> list[str]:
        r = self.runner.probe(cc.ps_service(self.project, service), check=False)
        return r.stdout.split()

    def now(self) -> float:
        r = self.runner.probe(hc.now(), check=False)
        try:
            return float(r.stdout.strip())
        except ValueError:
            return time.time()

def targets(env: Env, runner: Runner) -> list[Target]:
    hosts = env.cfg.hosts.hosts
    if env.cfg.target == "compose" and hosts:
        from ..hosts.known_hosts import for_env
        from ..hosts.ssh import remote_runner

        out, known = [], for_env(env)
        for h in hosts:
            remote = remote_runner(env, runner, h, known)  # host keys checked against the env's known_hosts
            out.append(Target(env, remote, PurePosixPath(env.cfg.deploy.project_dir or
                                                         f"{env.cfg.hosts.base_dir}/{env.cfg.stack.name}"), h))
        return out
    local_dir = env.path(env.cfg.deploy.project_dir) if env.cfg.deploy.project_dir else \
        env.state_dir / "stacks" / env.cfg.stack.name
    return [Target(env, runner, PurePosixPath(local_dir.resolve()))]


def web_targets(ts: list[Target]) -> list[Target]:
    return [t for t in ts if t.web]


def data_target(ts: list[Target]) -> Target:
    """The one host holding the datastores (the config guarantees exactly one)."""
    return next(t for t in ts if t.data)


def edge_address(t: Target) -> str:
    """Where a client reaches this host's nginx (the probes of the post-switch gate use it)."""
    if t.host is not None:
        return t.host.address
    bind = t.env.cfg.stack.publish_host
    return "127.0.0.1" if bind in ("0.0.0.0", "") else bind  # nosec B104 - read, not bound: a wildcard bind is reached on loopback


# -- preflight (bad input: nothing changed) -----------------------------------------------------------
def check_reachable(ts: list[Target]) -> None:
    """No host is touched unless every host answers."""
    for t in ts:
        if not t.remote or t.runner.dry_run:
            continue
        try:
            t.runner.probe(hc.reachable())
        except HostKeyRefused:  # unknown or changed host key: its own message
            raise
        except IosopsError as exc:
            raise BadInput(f"host {t.name} is unreachable ({exc}); nothing was changed on any host") from None


def check_image(t: Target, image: str) -> None:
    r = t.runner.probe(d.inspect_format(image, "{{.Id}}"), check=False)
    if r.rc != 0 and t.env.cfg.build.registry:
        r = t.runner.run([d.DOCKER, "pull", image], check=False)
    if r.rc != 0 and not r.dry_run:
        raise BadInput(f"unknown image {image} on {t.name}: no such tag (build it with `inv build --tag ...`"
                       f"{' and push it' if t.remote else ''}, or pass an existing --tag); nothing was changed")


def check_ports(t: Target) -> None:
    """Before the first nginx start: its published ports must be free."""
    dcfg, host = t.env.cfg.deploy, t.env.cfg.stack.publish_host
    for port in (dcfg.http_port, dcfg.https_port):
        if t.remote:
            r = t.runner.probe(hc.port_listening(port), check=False)
            busy = r.rc == 0
        else:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, port))
                    busy = False
                except OSError:
                    busy = True
        if busy:
            raise BadInput(f"port {port} on {t.name} ({host}) is already in use; free it or set "
                           f"deploy.http_port/deploy.https_port for env {t.env.name}; nothing was changed")


def tls_paths(t: Target) -> tuple[PurePosixPath, PurePosixPath]:
    tls = t.env.cfg.deploy.tls
    cert, key = t.path(tls.cert), t.path(tls.key)
    if cert.parent != key.parent:
        raise BadInput(f"deploy.tls: cert and key must sit in the same directory ({cert.parent} vs {key.parent})")
    return cert, key


def ensure_tls(t: Target) -> str:
    """Self-signed certificate when configured (local); then the certificate must exist and be valid."""
    tls = t.env.cfg.deploy.tls
    cert, key = tls_paths(t)
    state = t.runner.probe(tc.cert_valid_for(str(cert), 86400), check=False)
    if state.rc != 0 and tls.self_signed:
        name = t.env.cfg.deploy.server_name if t.env.cfg.deploy.server_name != "_" else "localhost"
        t.runner.run(hc.mkdir_p(str(cert.parent)))
        t.runner.run(tc.self_signed(name, tls.self_signed_days, str(key), str(cert)))
        t.runner.run(hc.chmod(0o600, str(key)))
        t.runner.run(hc.chmod(0o644, str(cert)))  # nginx's master reads both as root
        return f"certificate: generated self-signed {cert} ({tls.self_signed_days} days)"
    if state.rc != 0:
        exists = t.runner.probe(hc.readable(str(cert)), check=False).rc == 0
        why = "is expired or expires within a day" if exists else "is missing"
        raise BadInput(f"TLS certificate {cert} on {t.name} {why}; install a valid certificate at deploy.tls.cert "
                       f"(and its key at deploy.tls.key); deploy refused, nothing was changed")
    return f"certificate: {cert} valid"
