"""redis-cli / redis-check-rdb argv builders. Passwords go through REDISCLI_AUTH, never argv."""
from __future__ import annotations

from typing import Optional, Sequence

from ..errors import OperationFailed


def _user(user: str) -> list[str]:
    """An ACL user's name (its password still comes from REDISCLI_AUTH)."""
    return ["--user", user] if user else []


def cli(host: str, port: int, *args: str, user: str = "") -> list[str]:
    return ["redis-cli", "-h", host, "-p", str(port), *_user(user), "--no-raw", *args]


def raw(host: str, port: int, *args: str, user: str = "") -> list[str]:
    return ["redis-cli", "-h", host, "-p", str(port), *_user(user), "--raw", *args]


def default_cli(*args: str) -> list[str]:
    """redis-cli with its defaults (127.0.0.1:6379, no user): inside the server's own container or pod."""
    return ["redis-cli", *args]


def local_cli(port: int, *args: str) -> list[str]:
    """redis-cli to a server of our own on 127.0.0.1 (a restore's loader: no ACL user, no password)."""
    return ["redis-cli", "-p", str(port), *args]


def server_loader(port: int, directory: str, extra: Sequence[str] = ()) -> list[str]:
    """A daemonized redis-server on 127.0.0.1 that loads `directory`/dump.rdb if present and persists
    nothing of its own (pid and log files in the same directory)."""
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
            "--dbfilename", "dump.rdb", "--daemonize", "yes", "--pidfile", f"{directory}/redis.pid",
            "--logfile", f"{directory}/redis.log", "--save", "", "--appendonly", "no", *extra]


def fetch_rdb(host: str, port: int, path: str, user: str = "") -> list[str]:
    """A fresh RDB of the server written to `path` here, over the network: redis-cli takes a replica's full
    sync (REPLCONF rdb-only, SYNC; the server forks and streams a snapshot). For a client that cannot read
    the server's files; an ACL user needs +replconf and +sync."""
    return ["redis-cli", "-h", host, "-p", str(port), *_user(user), "--rdb", path]


def check_rdb(path: str) -> list[str]:
    return ["redis-check-rdb", path]


ERROR_CODES = ("ERR", "NOAUTH", "WRONGPASS", "NOPERM", "LOADING", "BUSY", "MISCONF", "MASTERDOWN")


def reply_error(stdout: str) -> Optional[str]:
    """redis-cli exits 0 on an error reply (NOAUTH, WRONGPASS, ERR ...) and prints it on stdout: the
    reply when it is one, else None. For replies that cannot legitimately start so (INFO, BGSAVE)."""
    first = next((line.strip() for line in stdout.splitlines() if line.strip()), "")
    first = first.removeprefix("(error) ")
    return first if first.split(" ", 1)[0] in ERROR_CODES else None


def parse_info(text: str) -> dict[str, str]:
    """`INFO` output -> {field: value} (sections and comments dropped)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            k, _, v = line.partition(":")
            out[k] = v
    return out


def bgsave_done(before: dict[str, str], now: dict[str, str]) -> bool:
    """BGSAVE finished and succeeded: no save in progress, and rdb_last_bgsave_time changed or the
    number of saves grew (LASTSAVE has 1 s resolution, so it is not used)."""
    if now.get("rdb_bgsave_in_progress") != "0":
        return False
    if now.get("rdb_last_bgsave_status") != "ok":
        raise OperationFailed("redis BGSAVE failed (rdb_last_bgsave_status=err); check the server log and disk space")
    return (now.get("rdb_saves", "0") != before.get("rdb_saves", "0")
            or now.get("rdb_last_save_time") != before.get("rdb_last_save_time"))
