"""What provisioning puts on a host, as pure renderers (also what verify compares against)."""
from __future__ import annotations

import json
from typing import Optional

from ..config import Env, HostCfg

SYSCTL = "/etc/sysctl.d/60-iosops.conf"
LIMITS = "/etc/security/limits.d/60-iosops.conf"
LOGROTATE = "/etc/logrotate.d/iosops"
DAEMON_JSON = "/etc/docker/daemon.json"
NFTABLES = "/etc/nftables.conf"
HEADER = "# managed by `inv provision` (iosops); local edits are overwritten\n"


def sysctl_conf(env: Env) -> str:
    return HEADER + "".join(f"{k} = {v}\n" for k, v in sorted(env.cfg.hosts.sysctl.items()))


def limits_conf(env: Env) -> str:
    h = env.cfg.hosts
    return HEADER + f"{h.deploy_user} soft nofile {h.nofile_limit}\n{h.deploy_user} hard nofile {h.nofile_limit}\n"


def logrotate_conf(env: Env) -> str:
    h = env.cfg.hosts
    return HEADER + (f"{h.log_dir}/*.log {{\n    daily\n    rotate 14\n    compress\n    delaycompress\n"
                     f"    missingok\n    notifempty\n    copytruncate\n    su {h.deploy_user} {h.deploy_user}\n}}\n")


def daemon_json(env: Env) -> str:
    # Container logs rotate too (compose sets the same per service; this covers everything else).
    return json.dumps({"log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"},
                       "live-restore": True}, indent=2, sort_keys=True) + "\n"


def datastore_forward_rules(env: Env, host: Optional[HostCfg]) -> str:
    """The data host of a split env publishes PostgreSQL and Redis on its private address: Docker's
    published ports are forwarded (DNAT), never seen by the input chain, so a forward chain that runs
    before Docker's lets only the web hosts reach them (matched on the published address and port)."""
    h = env.cfg.hosts
    if host is None or host.roles != ["data"]:
        return ""
    webs = ", ".join(sorted({w.private for w in h.web_hosts()}))
    ports = f"{h.postgres_port}, {h.redis_port}"
    # Only connections made to the published address: the containers' own traffic on the data network
    # (walstream, ops -> postgres:5432) is bridged through this hook too and must pass.
    match = f"meta l4proto tcp ct original ip daddr {host.private} ct original proto-dst {{ {ports} }}"
    return ("    chain forward {\n"
            "        type filter hook forward priority -10; policy accept;\n"
            "        ct state established,related accept\n"  # the replies of an accepted connection
            f"        {match} ip saddr {{ {webs} }} accept\n"
            f"        {match} drop\n"
            "    }\n")


def nftables_conf(env: Env, host: Optional[HostCfg] = None) -> str:
    ports = ", ".join(str(p) for p in sorted(set(env.cfg.hosts.allowed_tcp_ports)))
    # Only our own table is replaced: Docker's NAT/forward rules stay untouched (no `flush ruleset`).
    return ("#!/usr/sbin/nft -f\n" + HEADER +
            "table inet iosops\ndelete table inet iosops\n"
            "table inet iosops {\n"
            "    chain input {\n"
            "        type filter hook input priority 0; policy drop;\n"
            "        iif \"lo\" accept\n"
            "        ct state established,related accept\n"
            "        ct state invalid drop\n"
            "        meta l4proto { icmp, ipv6-icmp } accept\n"
            f"        tcp dport {{ {ports} }} accept\n"
            "    }\n"
            + datastore_forward_rules(env, host) +
            "}\n")


def managed(env: Env, host: Optional[HostCfg] = None) -> dict[str, tuple[str, int]]:
    """path -> (content, mode) on `host` (its roles decide the firewall)."""
    return {SYSCTL: (sysctl_conf(env), 0o644), LIMITS: (limits_conf(env), 0o644),
            LOGROTATE: (logrotate_conf(env), 0o644), DAEMON_JSON: (daemon_json(env), 0o644),
            NFTABLES: (nftables_conf(env, host), 0o755)}


def directories(env: Env) -> dict[str, tuple[int, str]]:
    """path -> (mode, owner)."""
    h = env.cfg.hosts
    return {h.base_dir: (0o750, h.deploy_user), f"{h.base_dir}/{env.cfg.stack.name}": (0o750, h.deploy_user),
            h.log_dir: (0o750, h.deploy_user)}
