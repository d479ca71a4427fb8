"""`inv maintenance on|off`: maintenance mode (nginx answers 503 + Retry-After, health endpoints excepted)
on every web host, or on none: look at each host's maintenance file first (a host already in the asked
mode is "no change"), then switch the others; a host that fails puts the ones already switched back."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from ..config import Env
from ..deploy import maintenance as mt
from ..deploy.target import check_reachable, web_targets
from ..errors import BadInput, OperationFailed
from ..runner import Runner
from .common import hosts, kubernetes

REASON = re.compile(r'"detail": "maintenance: (?P<reason>.*); retry later"')
DEFAULT_REASON = "maintenance by an operator"
UNSAFE = "'\"\\$;{}"  # nginx's quoting and variables: the reason sits in a quoted `return 503 '...'`


def parse_mode(text: Optional[str]) -> Optional[str]:
    """The reason when the file holds maintenance mode, else None (off)."""
    if not text or "return 503" not in text:
        return None
    m = REASON.search(text)
    return m.group("reason") if m else DEFAULT_REASON


@dataclass
class HostMode:
    host: str
    before: Optional[str]  # the reason maintenance was on for, None = off
    changed: bool
    note: str = ""


def check_mode(mode: str) -> bool:
    if mode not in ("on", "off"):
        raise BadInput(f"maintenance {mode!r}: say `on` or `off` (help: inv --help maintenance); nothing was changed")
    return mode == "on"


def clean_reason(reason: str) -> str:
    reason = " ".join((reason or "").split())
    bad = sorted(set(reason) & set(UNSAFE))
    if bad:
        raise BadInput(f"--reason: {' '.join(bad)} cannot go into nginx's 503 page; use plain words; nothing was changed")
    if len(reason) > 200:
        raise BadInput("--reason: at most 200 characters (it is the 503 page's text); nothing was changed")
    return reason or DEFAULT_REASON


def set_maintenance(env: Env, runner: Runner, mode: str, reason: str = "") -> list[HostMode]:
    on = check_mode(mode)
    reason = clean_reason(reason)
    if kubernetes(env):
        raise BadInput(f"env {env.name} runs on Kubernetes: maintenance mode is the compose stack's nginx "
                       "(on a cluster, scale or re-route at the ingress); nothing was changed")
    web = web_targets(hosts(env, runner))
    check_reachable(web)
    want = mt.rule(reason) if on else ""
    before = {t.name: t.read(mt.REL) for t in web}
    out: list[HostMode] = []
    done = []
    try:
        for t in web:
            now = before[t.name]
            prev = parse_mode(now)
            if (on and now == want) or (not on and prev is None):
                out.append(HostMode(t.name, prev, False, f"no change: maintenance already {mode}"))
                continue
            served = mt.set_mode(t, env, on, reason)
            done.append((t, prev))
            out.append(HostMode(t.name, prev, served, "" if served else "no nginx runs here, nothing to switch"))
    except OperationFailed as exc:
        restored = []
        for t, prev in done:
            mt.set_mode(t, env, prev is not None, prev or "")
            restored.append(t.name)
        raise OperationFailed(f"maintenance {mode} failed: {exc}; "
                              + (f"put {', '.join(restored)} back as they were" if restored else "nothing had changed"),
                              rolled_back=", ".join(restored)) from None
    return out
