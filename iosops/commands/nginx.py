"""nginx argv builders, run inside the nginx container (wrap them in docker.exec_)."""
from __future__ import annotations

# Every process's command line, one nginx process per line: old workers show "worker process is
# shutting down" until their in-flight requests are done (parsed by deploy.nginx.parse_shutting_down).
PROCESSES = "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | tr -s ' ' | sed 's/nginx: /\\nnginx: /g'"


def test_config(conf: str) -> list[str]:
    """`nginx -t`: exit 0 when the config (and every file it includes) is valid; nothing changes."""
    return ["nginx", "-t", "-q", "-c", conf]


def reload(conf: str) -> list[str]:
    return ["nginx", "-c", conf, "-s", "reload"]


def processes() -> list[str]:
    return ["sh", "-c", PROCESSES]
