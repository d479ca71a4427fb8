"""nginx config rendering (pure) and the probes/parsers the switch needs."""
from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import Iterable

from ..config import Env
from ..errors import BadInput

TEMPLATE = "nginx/nginx.conf.tmpl"
UPSTREAM_TEMPLATE = "nginx/upstream.conf.tmpl"
CONF = "/etc/nginx/iosops/nginx.conf"  # inside the nginx container
TLS_MOUNT = "/etc/nginx/iosops-tls"
COLOURS = ("blue", "green")
_FIELD = re.compile(r"\{\{ *([a-z_]+) *\}\}")


def fill(template: str, values: dict[str, str]) -> str:
    """{{ name }} -> value; a missing value is an error (nginx's own braces are single)."""
    def sub(m: re.Match) -> str:
        if m.group(1) not in values:
            raise BadInput(f"nginx template: no value for {{{{ {m.group(1)} }}}}")
        return str(values[m.group(1)])
    return _FIELD.sub(sub, template)


def other(colour: str) -> str:
    return COLOURS[1 - COLOURS.index(colour)]


def render_main(env: Env, template: str) -> str:
    d = env.cfg.deploy
    if not re.fullmatch(r"[0-9]+[kKmM]?", d.client_max_body_size):
        raise BadInput(f"deploy.client_max_body_size: {d.client_max_body_size!r} is not an nginx size (e.g. 1m)")
    return fill(template, {
        "client_max_body_size": d.client_max_body_size,
        "rate_limit_rps": str(d.rate_limit_rps),
        "rate_limit_burst": str(d.rate_limit_burst),
        "server_name": d.server_name,
        "https_port_suffix": "" if d.https_port == 443 else f":{d.https_port}",
        "tls_cert": f"{TLS_MOUNT}/{PurePosixPath(d.tls.cert).name}",
        "tls_key": f"{TLS_MOUNT}/{PurePosixPath(d.tls.key).name}",
    })


def render_upstream(template: str, colour: str) -> str:
    if colour not in COLOURS:
        raise BadInput(f"colour must be blue or green, not {colour!r}")
    return fill(template, {"colour": colour, "service": f"api-{colour}"})


def parse_active(upstream_conf: str) -> str | None:
    """The colour a rendered upstream.conf routes to (None when there is none)."""
    m = re.search(r"^# Active colour: (blue|green)\b", upstream_conf, re.M)
    return m.group(1) if m else None


def error_rate(log_lines: Iterable[str], colour: str, since_msec: float) -> tuple[int, int]:
    """(5xx answers, total answers) of `colour` in nginx JSON access-log lines at or after since_msec."""
    errors = total = 0
    for line in log_lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("colour") != colour or float(rec.get("msec", 0)) < since_msec:
            continue
        total += 1
        if int(rec.get("status", 0)) >= 500:
            errors += 1
    return errors, total


def parse_shutting_down(proc_cmdlines: str) -> int:
    """How many nginx workers of a previous config still finish their requests."""
    return sum(1 for line in proc_cmdlines.splitlines() if "shutting down" in line)
