"""Slack-compatible webhook messages for people, one notifier for every operation: deploy start,
success, failure and automatic rollback (compose and Kubernetes), `inv rollback`, and backups.

Rules, each tested (tests/integration/test_notify.py):
- the webhook URL is the secret (Slack puts the credential in its path): it is never printed; the plan
  and the recorded action show `scheme://host:port/***`, and errors are named by type, never by their
  text (requests puts the URL path in its messages);
- never sent in --dry-run: the plan shows the message that would be sent instead;
- a dead, slow, hanging or 500-answering webhook costs at most `notify.max_total_s` per message (bounded
  retries with backoff via tenacity, short timeouts, and a hard join on the sending thread) and one
  warning line; it never fails or blocks the operation. After one failed delivery, later messages of the
  same process get a single attempt, so a deploy with a dead webhook waits at most once.
"""
from __future__ import annotations

import hashlib
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit

from .config import Env
from .errors import BadInput
from .ops import current_run, who
from .runner import Runner
from .secretref import Secret, SecretRef, redact

# (op, status) -> emoji, title, colour of the attachment bar
STYLE = {
    ("deploy", "start"): (":rocket:", "Deploy started", "#439fe0"),
    ("deploy", "success"): (":white_check_mark:", "Deploy succeeded", "#2eb67d"),
    ("deploy", "failure"): (":x:", "Deploy FAILED", "#e01e5a"),
    ("deploy", "rolled_back"): (":leftwards_arrow_with_hook:", "Deploy FAILED, rolled back automatically", "#ecb22e"),
    ("rollback", "success"): (":leftwards_arrow_with_hook:", "Rollback done", "#ecb22e"),
    ("rollback", "failure"): (":x:", "Rollback FAILED", "#e01e5a"),
    ("backup", "success"): (":white_check_mark:", "Backup OK", "#2eb67d"),
    ("backup", "failure"): (":x:", "Backup FAILED", "#e01e5a"),
    ("restore", "success"): (":white_check_mark:", "Restore done", "#2eb67d"),
    ("restore", "failure"): (":x:", "Restore FAILED", "#e01e5a"),
    ("restore", "rolled_back"): (":leftwards_arrow_with_hook:", "Restore FAILED, rolled back", "#ecb22e"),
    ("drill", "success"): (":white_check_mark:", "DR drill passed", "#2eb67d"),
    ("drill", "failure"): (":x:", "DR drill FAILED", "#e01e5a"),
}
OUTCOME = {"start": "in progress", "success": "succeeded", "failure": "FAILED",
           "rolled_back": "FAILED, rolled back automatically"}
MAX_FIELD = 1500  # Slack truncates long fields; an error this long is in the audit log in full
CONNECT_TIMEOUT_S = 2.0


@dataclass
class Event:
    op: str  # deploy | rollback | backup
    status: str  # start | success | failure | rolled_back
    env: str
    version: str = ""  # deploy/rollback: the image tag going live; backup: the backup id
    previous: str = ""  # deploy: the tag that was live; rollback: the tag traffic left
    target: str = ""  # where: "compose on local", "kubernetes context ios-prod, namespace ios-prod"
    duration_s: Optional[float] = None
    summary: str = ""  # one line of what happened (size, colour, ...)
    error: str = ""
    rolled_back: str = ""  # what an automatic rollback restored


def tag_of(image: str) -> str:
    """`registry:5000/iosops/api:abc123` -> `abc123` (an image without a tag is returned whole)."""
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else image


def mask_url(url: str) -> str:
    """What may be shown of a webhook URL: scheme, host and port. Path, query and user info hold the
    credential (Slack: /services/T../B../<token>), so they are never shown."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    return f"{parts.scheme or '?'}://{host}{port}/***"


def audit_ref(run: Optional[dict], env: str) -> str:
    if not run:
        return "no audit line (not run through an `inv` task)"
    at = run.get("audit_at") or socket.gethostname()  # the data host for an env on SSH hosts
    return (f"run {run['run']} in {at}:{run['audit']} "
            f"(`inv lock.audit --env {env}{run.get('audit_flags', '')} --run {run['run']}`)")


def _duration(s: Optional[float]) -> str:
    if s is None:
        return ""
    return f"{s:.1f} s" if s < 120 else f"{int(s // 60)} min {int(s % 60)} s"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_FIELD else text[:MAX_FIELD] + " …(truncated; full text in the audit log)"


def message(ev: Event, actor: str, run: Optional[dict]) -> dict[str, Any]:
    """The Slack-compatible payload (pure): `text` for the notification line and clients without
    attachments, one attachment with a coloured bar and short fields for people. Legacy attachments
    rather than blocks: Slack renders them, and so do Mattermost, Rocket.Chat and Discord's /slack."""
    status = ev.status if (ev.op, ev.status) in STYLE else "failure"
    emoji, title, colour = STYLE[(ev.op, status)]
    version_label = "Backup" if ev.op in ("backup", "restore", "drill") else "Version"
    line = f"{emoji} {title} · {ev.env}"
    if ev.version:
        line += f" · {ev.version}"
    if ev.previous and ev.op not in ("backup", "restore", "drill"):
        line += f" (was {ev.previous})"
    line += f" · by {actor}"
    fields: list[tuple[str, str, bool]] = [
        ("Environment", ev.env, True),
        (version_label, f"`{ev.version}`" if ev.version else "", True),
    ]
    if ev.op == "deploy":
        fields.append(("Previous", f"`{ev.previous}`" if ev.previous else "none (first deploy)", True))
    elif ev.op == "rollback":
        fields.append(("Rolled back from", f"`{ev.previous}`" if ev.previous else "", True))
    fields += [
        ("Who", actor, True),
        ("Outcome", OUTCOME.get(ev.status, ev.status), True),
        ("Duration", _duration(ev.duration_s), True),
        ("Target", ev.target, False),
        ("Summary", ev.summary, False),
        ("Rolled back", ev.rolled_back, False),
        ("Error", _clip(ev.error), False),
        ("Audit", audit_ref(run, ev.env), False),
    ]
    attachment = {
        "color": colour,
        "fallback": line,
        "title": f"{title}: {ev.env}",
        "fields": [{"title": t, "value": v, "short": short} for t, v, short in fields if v],
        "mrkdwn_in": ["fields"],
        "footer": "iosops",
        "ts": int(time.time()),
    }
    return _redacted({"text": line, "attachments": [attachment]})


def _redacted(value: Any) -> Any:
    """Second line of defence: every revealed secret value becomes *** anywhere in the payload."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


# -- delivery ----------------------------------------------------------------------------------------

class _Retryable(Exception):
    pass


class _Permanent(Exception):
    pass


_degraded: set[str] = set()  # webhooks (by hash) that failed once in this process
_warned: set[str] = set()


def deliver(url: Secret, payload: dict, *, attempts: int, timeout_s: float, max_total_s: float) -> tuple[bool, str]:
    """POST with bounded retries; returns (delivered, what happened) within max_total_s, always.

    5xx, 429 and connection errors/timeouts are retried with exponential backoff; other answers are
    final. The whole loop runs in a daemon thread joined with the deadline, so even a webhook that
    trickles bytes (defeating per-read timeouts) cannot hold the operation longer than max_total_s."""
    deadline = time.monotonic() + max_total_s
    state: dict[str, Any] = {"ok": False, "why": "", "tries": 0}

    def work() -> None:
        import requests
        from tenacity import (Retrying, retry_if_exception_type, stop_after_attempt, stop_before_delay,
                              wait_exponential)

        try:
            for attempt in Retrying(stop=stop_after_attempt(attempts) | stop_before_delay(max_total_s),
                                    wait=wait_exponential(multiplier=0.5, max=4),
                                    retry=retry_if_exception_type(_Retryable), reraise=True):
                with attempt:
                    state["tries"] += 1
                    left = deadline - time.monotonic()
                    if left <= 0.05:
                        raise _Permanent("out of time")
                    try:
                        resp = requests.post(url.get(), json=payload, allow_redirects=False,
                                             timeout=(min(CONNECT_TIMEOUT_S, left), min(timeout_s, left)))
                    except requests.RequestException as exc:  # its text holds the URL path: name the type only
                        raise _Retryable(type(exc).__name__) from None
                    if resp.status_code >= 500 or resp.status_code == 429:
                        raise _Retryable(f"HTTP {resp.status_code}")
                    if resp.status_code >= 300:
                        raise _Permanent(f"HTTP {resp.status_code}")
            state.update(ok=True, why=f"HTTP {resp.status_code}")
        except (_Retryable, _Permanent) as exc:
            state["why"] = str(exc)
        except Exception as exc:  # never let a bug here escape into the operation
            state["why"] = type(exc).__name__

    thread = threading.Thread(target=work, name="iosops-notify", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive():
        return False, f"no answer within {max_total_s:g} s, gave up waiting"
    tries = state["tries"]
    return bool(state["ok"]), f"{state['why']} after {tries} attempt{'s' if tries != 1 else ''}"


def webhook_ref(env: Env, op: str) -> tuple[str, Optional[SecretRef]]:
    if op in ("backup", "restore", "drill") and env.cfg.backup.webhook_url is not None:
        return "backup.webhook_url", env.cfg.backup.webhook_url
    return "notify.webhook_url", env.cfg.notify.webhook_url


def send(env: Env, runner: Runner, ev: Event) -> bool:
    """Post one message. True when delivered (or, in dry-run, planned). Never raises, never prints the URL."""
    label = f"{ev.op} {ev.status.replace('_', ' ')}"
    try:
        return _send(env, runner, ev, label)
    except Exception as exc:  # a notification must never fail the operation it reports on
        runner.info(f"warning: notification ({label}) not sent: {type(exc).__name__}; "
                    f"the {ev.op} itself is unaffected")
        return False


def _send(env: Env, runner: Runner, ev: Event, label: str) -> bool:
    name, ref = webhook_ref(env, ev.op)
    if ref is None:
        return False
    cfg = env.cfg.notify
    if not ref.available(env.root):
        key = f"{env.name}:{name}"
        if (cfg.required or name == "backup.webhook_url") and key not in _warned:
            _warned.add(key)
            runner.info(f"warning: no notifications: {name} ({ref.describe()}) is not available; "
                        f"set it, or set notify.required: false for env {env.name}")
        return False
    url = ref.reveal(name, env.root)
    payload = message(ev, who(), current_run())
    # runner.call: in dry-run this is the plan line (URL masked) and nothing is sent.
    text = f"notify: POST {mask_url(url.get())} ({label}: {payload['text']})"
    key = hashlib.sha256(url.get().encode()).hexdigest()
    degraded = key in _degraded
    attempts = 1 if degraded else cfg.attempts
    budget = min(cfg.max_total_s, cfg.timeout_s + CONNECT_TIMEOUT_S) if degraded else cfg.max_total_s
    res = runner.call(text, deliver, url, payload, attempts=attempts, timeout_s=cfg.timeout_s,
                      max_total_s=budget, mutating=True)
    if res.dry_run:
        return True
    ok, why = res.value
    if ok:
        _degraded.discard(key)
        return True
    _degraded.add(key)
    runner.info(f"warning: notification ({label}) not delivered to the webhook ({why}); "
                f"the {ev.op} itself is unaffected")
    return False


# -- operations: start, then success or failure ------------------------------------------------------

class Tracker:
    """One operation's messages. Call `start()` once what is about to change is known (the previous
    version); `tracked()` sends success or failure when the block ends. Fields may be set as learnt."""

    def __init__(self, env: Env, runner: Runner, op: str, **fields: Any):
        self.env, self.runner, self.op = env, runner, op
        self.fields = {"version": "", "previous": "", "target": "", "summary": "", **fields}
        self.t0 = time.monotonic()
        self.started = False

    def set(self, **fields: Any) -> None:
        self.fields.update(fields)

    def event(self, status: str, **extra: Any) -> Event:
        dur = None if status == "start" else round(time.monotonic() - self.t0, 1)
        return Event(op=self.op, status=status, env=self.env.name, duration_s=dur, **{**self.fields, **extra})

    def start(self, **fields: Any) -> None:
        self.set(**fields)
        self.started = True
        send(self.env, self.runner, self.event("start", summary=""))

    def success(self) -> None:
        send(self.env, self.runner, self.event("success"))

    def failure(self, exc: BaseException) -> None:
        if self.runner.dry_run:
            return  # nothing was attempted
        if isinstance(exc, BadInput) and not self.started:
            return  # refused before anything happened: the person who ran it sees the one-line error
        if isinstance(exc, KeyboardInterrupt):
            error = "interrupted (Ctrl-C / SIGINT)"
        elif isinstance(exc, Exception) and type(exc).__module__.startswith("iosops"):
            error = str(exc)
        else:
            error = f"{type(exc).__name__}: {exc}"
        restored = getattr(exc, "rolled_back", "") or ""
        send(self.env, self.runner, self.event("rolled_back" if restored else "failure",
                                               error=redact(error), rolled_back=restored))


@contextmanager
def tracked(env: Env, runner: Runner, op: str, **fields: Any) -> Iterator[Tracker]:
    tracker = Tracker(env, runner, op, **fields)
    try:
        yield tracker
    except BaseException as exc:
        tracker.failure(exc)
        raise
    tracker.success()
