"""The env lock and audit log on a host (Kamal's `commands/lock.rb` and auditor): argv lists run over SSH
on the env's data host, and the parsers of what they print.

The lock is a directory: `mkdir` is atomic on a POSIX filesystem, so of two runs exactly one creates it;
the winner writes its holder info (who, from where, pid, since, task) into it. The audit log is one
`printf >>` of one line per run (an O_APPEND write of a line: concurrent runs never interleave a line).
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from ..secretref import redact

HELD = 3  # exit code of lock_take when another run holds the lock
NOT_OURS = 4  # exit code of lock_release when the lock is not (any more) the one this run took

_TAKE = ('mkdir -p -- "$1" || exit 1; '
         'if mkdir -- "$1/lock" 2>/dev/null; then printf "%s\\n" "$2" > "$1/lock/info.json"; '
         f'elif [ -d "$1/lock" ]; then exit {HELD}; '
         'else mkdir -- "$1/lock"; fi')  # the last mkdir fails again, saying why on stderr
_READ = 'if [ -d "$1/lock" ]; then cat -- "$1/lock/info.json" 2>/dev/null || echo "{}"; fi'
_RELEASE = (f'if [ -n "$2" ] && ! grep -qF -- "$2" "$1/lock/info.json" 2>/dev/null; then exit {NOT_OURS}; fi; '
            'rm -rf -- "$1/lock"')
_APPEND = 'mkdir -p -- "$1" && printf "%s\\n" "$2" >> "$1/audit.log"'
_TAIL = 'if [ -f "$1/audit.log" ]; then tail -n "$2" -- "$1/audit.log"; fi'


def lock_take(dir_: str, info_json: str) -> list[str]:
    """Create <dir>/lock and write the holder info into it; exit HELD when it already exists."""
    return ["sh", "-c", _TAKE, "lock-take", dir_, info_json]


def lock_read(dir_: str) -> list[str]:
    """Nothing when not locked; the holder info JSON when locked ("{}" while it is being written)."""
    return ["sh", "-c", _READ, "lock-read", dir_]


def lock_release(dir_: str, owner: str = "") -> list[str]:
    """Remove <dir>/lock; with an owner id only when the holder info still carries it (exit NOT_OURS)."""
    return ["sh", "-c", _RELEASE, "lock-release", dir_, owner]


def audit_append(dir_: str, line: str) -> list[str]:
    return ["sh", "-c", _APPEND, "audit-append", dir_, line]


def audit_tail(dir_: str, n: int) -> list[str]:
    return ["sh", "-c", _TAIL, "audit-tail", dir_, str(int(n))]


def audit_line(record: Mapping[str, Any]) -> str:
    """One audit record as one line of JSON, secrets redacted (the same line locally and on a host)."""
    return redact(json.dumps(record, sort_keys=True, default=str)).replace("\n", " ")


def parse_holder(stdout: str) -> Optional[dict]:
    """lock_read's output: None (not locked), {} (locked, holder unknown) or the holder info."""
    text = stdout.strip()
    if not text:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def parse_audit(stdout: str) -> list[dict]:
    """Audit lines as records; a line that is not a JSON object (a torn or hand-edited line) is skipped."""
    out = []
    for line in stdout.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out
