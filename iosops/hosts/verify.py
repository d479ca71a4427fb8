"""`inv verify-hosts`: testinfra checks of every host of an env (and of the stack's containers).

Runs after `inv provision` and inside every deploy before traffic switches; a failing check fails the
run and is named. Compose envs with SSH hosts are checked over SSH (testinfra's paramiko backend, the
host key checked against the env's known_hosts file first: iosops.hosts.ssh);
an env without hosts (local) checks this machine's stack containers (local backend).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..config import Env, HostCfg
from ..errors import OperationFailed
from ..runner import Runner
from . import files as f


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""
    skipped: bool = False


@dataclass
class VerifyReport:
    hosts: dict[str, list[Check]] = field(default_factory=dict)

    def failed(self) -> list[tuple[str, Check]]:
        return [(h, c) for h, cs in self.hosts.items() for c in cs if not c.ok]

    def summary(self) -> str:
        n = sum(len(cs) for cs in self.hosts.values())
        skipped = sum(c.skipped for cs in self.hosts.values() for c in cs)
        bad = self.failed()
        if bad:
            return f"{len(bad)}/{n} check(s) FAILED: " + "; ".join(f"[{h}] {c.name}: {c.detail}" for h, c in bad)
        return f"{n - skipped}/{n} checks passed on {len(self.hosts)} host(s)" + \
            (f", {skipped} not applicable (see details)" if skipped else "")

    def as_dict(self) -> dict:
        return {h: [c.__dict__ for c in cs] for h, cs in self.hosts.items()}


def _check(out: list[Check], name: str, fn: Callable[[], Any]) -> None:
    """fn returns None/True (pass), a string (failure detail) or a Check (skipped/explicit)."""
    try:
        res = fn()
    except Exception as exc:  # a check that cannot run has failed, and says why
        out.append(Check(name, False, f"{type(exc).__name__}: {str(exc)[:200]}"))
        return
    if isinstance(res, Check):
        out.append(res)
    elif res is None or res is True:
        out.append(Check(name, True))
    else:
        out.append(Check(name, False, str(res)))


def _mode(host, path: str, mode: int, owner: str) -> Optional[str]:
    fl = host.file(path)
    if not fl.exists:
        return f"{path} is missing"
    if fl.mode != mode or fl.user != owner:
        return f"{path} is {oct(fl.mode)} {fl.user}, want {oct(mode)} {owner}"
    return None


def host_checks(env: Env, host, colour: Optional[str], cfg: Optional[HostCfg] = None) -> list[Check]:
    h = env.cfg.hosts
    out: list[Check] = []
    user = h.deploy_user

    def user_check():
        u = host.user(user)
        if not u.exists:
            return f"user {user} does not exist"
        if u.uid != h.deploy_uid or "docker" not in u.groups or u.shell != "/bin/bash":
            return f"user {user}: uid {u.uid}, groups {u.groups}, shell {u.shell}; want uid {h.deploy_uid}, docker, /bin/bash"
    _check(out, "deploy-user", user_check)
    if h.authorized_key_file:
        _check(out, "deploy-user-ssh-key", lambda: _mode(host, f"/home/{user}/.ssh/authorized_keys", 0o600, user))
    for path, (mode, owner) in f.directories(env).items():
        _check(out, f"dir {path}", lambda p=path, m=mode, o=owner: _mode(host, p, m, o))
    for pkg in h.packages:
        _check(out, f"package {pkg}", lambda p=pkg: None if host.package(p).is_installed else f"{p} is not installed")
    for path, (content, mode) in f.managed(env, cfg).items():
        def same(p=path, c=content, m=mode):
            fl = host.file(p)
            if not fl.exists:
                return f"{p} is missing"
            if fl.content_string != c:
                return f"{p} differs from what provision writes (edited by hand?)"
            return None if fl.mode == m else f"{p} mode {oct(fl.mode)}, want {oct(m)}"
        _check(out, f"file {path}", same)
    _check(out, "sshd-listening", lambda: None if host.socket("tcp://0.0.0.0:22").is_listening
           else "nothing listens on tcp 0.0.0.0:22")

    def firewall():
        r = host.run("nft list table inet iosops")
        if r.rc != 0:
            return f"table inet iosops is not loaded ({r.stderr.strip()[:100]})"
        want = ", ".join(str(p) for p in sorted(set(h.allowed_tcp_ports)))
        if "policy drop" not in r.stdout or f"{{ {want} }}" not in r.stdout.replace("ssh", "22"):
            return f"table inet iosops does not drop by default and allow only tcp {want}"
    _check(out, "firewall", firewall)

    def sysctl():
        if not h.sysctl_live:
            return Check("sysctl-live", True, "not checked: hosts.sysctl_live is false (a container cannot "
                         "change kernel parameters); the file is checked", skipped=True)
        wrong = {k: host.sysctl(k) for k, v in h.sysctl.items() if str(host.sysctl(k)).split() != v.split()}
        return f"live values differ: {wrong}" if wrong else None
    _check(out, "sysctl-live", sysctl)
    _check(out, "docker-cli", lambda: None if host.run("docker --version").rc == 0 else "docker CLI missing")

    def engine():
        if not h.require_engine:
            return Check("docker-engine", True, "not checked: hosts.require_engine is false (test host: a "
                         "container cannot run dockerd here); only the CLI and package are verified", skipped=True)
        r = host.run(f"sudo -u {user} docker info --format '{{{{.ServerVersion}}}}'")
        return None if r.rc == 0 else f"docker engine not reachable for {user}: {r.stderr.strip()[:150]}"
    _check(out, "docker-engine", engine)
    if colour and h.require_engine:
        out.extend(stack_checks(env, host, colour, tuple(cfg.roles) if cfg else ("web", "data")))
    return out


def stack_checks(env: Env, host, colour: Optional[str], roles: tuple[str, ...] = ("web", "data")) -> list[Check]:
    """The stack's containers on `host` (compose labels), by the host's roles: healthy, replicas; the
    datastores unpublished on internal networks (a host of both roles), or published on the private
    address only (the data host of a split env)."""
    out: list[Check] = []
    project = env.cfg.stack.name
    h = env.cfg.hosts

    def ids(service: str) -> list[str]:
        r = host.run(f"/usr/bin/docker ps -q --filter label=com.docker.compose.project={project} "
                     f"--filter label=com.docker.compose.service={service}")
        return r.stdout.split()

    def inspect(cid: str) -> dict:
        return json.loads(host.check_output(f"/usr/bin/docker inspect {cid}"))[0]

    data, split = "data" in roles, len(roles) == 1
    services = (["postgres", "redis"] if data else []) + ([f"api-{colour}"] if colour and "web" in roles else [])
    for svc in services:
        def healthy(svc=svc):
            found = ids(svc)
            want = env.cfg.deploy.replicas if svc.startswith("api-") else 1
            if len(found) < want:
                return f"{len(found)}/{want} container(s) of {svc} running"
            states = {c[:12]: (inspect(c)["State"].get("Health") or {}).get("Status", "no healthcheck") for c in found}
            bad = {c: s for c, s in states.items() if s != "healthy"}
            return f"not healthy: {bad}" if bad else None
        _check(out, f"container {svc} healthy", healthy)
    if not data:
        return out
    if split:
        private = h.data_host().private
        for svc, port in (("postgres", h.postgres_port), ("redis", h.redis_port)):
            def private_only(svc=svc, port=port):
                for c in ids(svc):
                    bound = [(b.get("HostIp"), b.get("HostPort")) for v in (inspect(c)["NetworkSettings"]["Ports"]
                                                                            or {}).values() for b in (v or [])]
                    if bound != [(private, str(port))]:
                        return f"{svc} publishes {bound}; want only {private}:{port} (the private address)"
            _check(out, f"container {svc} published on the private address only", private_only)
        return out
    for svc in ("postgres", "redis"):
        def unpublished(svc=svc):
            for c in ids(svc):
                ports = inspect(c)["NetworkSettings"]["Ports"] or {}
                if any(v for v in ports.values()):
                    return f"{svc} publishes {ports}: datastores must stay on the internal network"
        _check(out, f"container {svc} not published", unpublished)

    def internal():
        for c in ids("postgres"):
            nets = inspect(c)["NetworkSettings"]["Networks"]
            names = list(nets)
            r = host.run("/usr/bin/docker network inspect --format '{{.Internal}}' " + " ".join(names))
            if r.stdout.split() != ["true"] * len(names):
                return f"postgres is on a non-internal network: {names}"
    _check(out, "datastores on internal networks only", internal)
    return out


def local_checks(env: Env, host, colour: Optional[str], runner: Runner) -> list[Check]:
    from ..deploy.target import targets, tls_paths

    t = targets(env, runner)[0]
    out = stack_checks(env, host, colour)
    cert, _ = tls_paths(t)
    _check(out, "tls-certificate valid", lambda: None if host.run(
        f"openssl x509 -noout -checkend 86400 -in {cert}").rc == 0 else f"{cert} missing or expiring within a day")
    _check(out, "secrets dir 0700", lambda: None if host.file(str(t.dir / "secrets")).mode == 0o700
           else f"{t.dir / 'secrets'} is {oct(host.file(str(t.dir / 'secrets')).mode)}, want 0o700")
    return out


def testinfra_hosts(env: Env) -> list[tuple[str, Any]]:
    """A connected testinfra host per SSH host: every host key is checked (against the env's known_hosts
    file) before any check runs, so an unknown or changed key is one BadInput, not a column of failures."""
    from .known_hosts import HostKeyRefused, for_env
    from .ssh import testinfra_host

    known = for_env(env)
    out = []
    for h in env.cfg.hosts.hosts:
        host = testinfra_host(env, h, known)
        try:
            host.backend.client  # noqa: B018 - connect now (a cached property)
        except HostKeyRefused:
            raise
        except Exception:  # nosec B110 # unreachable: each check then fails naming the error, as before
            pass
        out.append((f"{h.user}@{h.address}:{h.port}", host))
    return out


def verify(env: Env, runner: Runner, colour: Optional[str] = None, raise_on_failure: bool = True) -> VerifyReport:
    """Run every check; raise OperationFailed naming the failed ones (unless raise_on_failure=False)."""
    def run() -> VerifyReport:
        import testinfra

        report = VerifyReport()
        if env.cfg.target == "compose" and env.cfg.hosts.hosts:
            for (name, host), cfg in zip(testinfra_hosts(env), env.cfg.hosts.hosts, strict=True):
                report.hosts[name] = host_checks(env, host, colour, cfg)
        else:
            report.hosts["local"] = local_checks(env, testinfra.get_host("local://"), colour, runner)
        return report

    res = runner.probe_call(f"testinfra checks of env {env.name}" + (f" (colour {colour})" if colour else ""), run)
    report = res.value or VerifyReport()
    if raise_on_failure and report.failed():
        raise OperationFailed(f"verify-hosts: {report.summary()}")
    return report
