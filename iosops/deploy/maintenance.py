"""Maintenance mode at the nginx edge: every request but the health endpoints answers 503 with
Retry-After (a JSON body saying why), so clients back off instead of writing into a restore.

On: conf.d/maintenance.conf gets the rule, `nginx -t`, reload. Off: the file is emptied, reload. The
main config includes `conf.d/maintenance*.conf` inside the TLS server block; a stack without nginx
(nothing deployed behind it) has nothing to switch and says so.
"""
from __future__ import annotations

from ..commands import docker as d
from ..commands import nginx as nc
from ..config import Env
from ..errors import OperationFailed
from . import nginx as ng

REL = "nginx/conf.d/maintenance.conf"
RETRY_AFTER_S = 30


def rule(reason: str, retry_after: int = RETRY_AFTER_S) -> str:
    body = '{"detail": "maintenance: ' + reason.replace('"', "'").replace("\\", "") + '; retry later"}'
    return ("# written by iosops: maintenance mode (emptied when it ends)\n"
            f"add_header Retry-After {retry_after} always;\n"
            f"if ($uri !~ \"^/(health|ready|nginx-health)$\") {{ return 503 '{body}\\n'; }}\n")


def set_mode(t, env: Env, on: bool, reason: str = "a restore is running") -> bool:
    """Turn maintenance on/off on one host; False when there is no nginx to switch (nothing served)."""
    from .switch import drain, nginx_id

    cid = nginx_id(t)
    if cid is None and not t.runner.dry_run:
        t.runner.info(f"[{t.name}] maintenance {'on' if on else 'off'}: no nginx runs here, nothing to switch")
        return False
    previous = t.read(REL)
    t.put(REL, rule(reason) if on else "")
    test = t.runner.run(d.exec_(cid or "nginx", nc.test_config(ng.CONF)), check=False)
    if test.rc != 0:
        t.put(REL, previous or "")
        why = (test.stderr or test.stdout).strip().splitlines()
        raise OperationFailed(f"[{t.name}] nginx -t rejected maintenance mode ({why[-1] if why else 'no output'}); "
                              "put the previous file back, nginx was NOT reloaded")
    t.runner.run(d.exec_(cid or "nginx", nc.reload(ng.CONF)))
    drain(t)  # old workers answer with the old rule until they finish: wait for them
    t.runner.info(f"[{t.name}] maintenance {'on: nginx answers 503 + Retry-After' if on else 'off'}")
    return True
