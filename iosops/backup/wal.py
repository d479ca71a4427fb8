"""WAL archive: `python -m iosops.backup.wal push|fetch` is what PostgreSQL's archive_command and
restore_command call. push = verify, compress, checksum, upload, THEN exit 0 (PostgreSQL deletes the
segment only after success). An already-archived identical segment is success (archive_command must be
idempotent); a different one with the same name is refused, never overwritten.

Objects: wal/<name>.zst (+ .age when encrypted) and wal/<name>.json (sha256 of raw and stored bytes),
written after the data, so a segment counts as archived only when its .json exists.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess  # nosec B404 # archive_command runs compress/encrypt tools as argv lists, no shell
import sys
import time
from pathlib import Path

from ..commands import compress as cz
from ..errors import IosopsError, OperationFailed
from .manifest import WAL

SEGMENT_RE = re.compile(r"^[0-9A-F]{24}$")


PARTIAL = ".partial"


def keys(name: str, encrypted: bool) -> tuple[str, str]:
    return f"{WAL}/{name}.zst{'.age' if encrypted else ''}", f"{WAL}/{name}.json"


def _stored(env, data: bytes) -> bytes:
    b = env.cfg.backup
    stages = [cz.zstd_compress(b.zstd_level, 1)]
    if b.encryption_recipient:
        stages.append(cz.age_encrypt(b.encryption_recipient))
    return _pipe(stages, data)


def _put(env, store, name: str, data: bytes, data_key: str, meta_key: str, raw_sha: str) -> int:
    """Data first, then its .json (the commit point: a WAL file counts as archived once its .json exists)."""
    stored = _stored(env, data)
    store.put_bytes(data_key, stored)
    meta = {"name": name, "raw_sha256": raw_sha, "raw_size": len(data), "sha256": hashlib.sha256(stored).hexdigest(),
            "size": len(stored), "key": data_key, "archived_at": time.time(),
            "encryption": "age" if env.cfg.backup.encryption_recipient else None}
    store.put_bytes(meta_key, json.dumps(meta).encode())
    return len(stored)


def push_partial(env, store, path: Path, name: str) -> str:
    """The segment pg_receivewal is still writing (`<name>.partial`, pre-sized to 16 MiB and zero-filled
    past the last record): stored as wal/<name>.partial.* and replaced on every call. Recovery is served it
    only when the complete segment is not archived (iosops.backup.wal.fetch): it replays up to the last
    streamed record, then promotes. This bounds the RPO by walstream.partial_interval_s."""
    data = path.read_bytes()
    b = env.cfg.backup
    data_key, meta_key = keys(name + PARTIAL, bool(b.encryption_recipient))
    size = _put(env, store, name + PARTIAL, data, data_key, meta_key, hashlib.sha256(data).hexdigest())
    return f"partial uploaded ({len(data)} -> {size} bytes)"


def _pipe(stages: list[list[str]], data: bytes) -> bytes:
    proc_in = data
    for argv in stages:
        p = subprocess.run(argv, input=proc_in, capture_output=True)  # nosec B603 # argv lists built by iosops.commands.compress, no shell
        if p.returncode != 0:
            raise OperationFailed(f"{argv[0]} failed: {p.stderr.decode(errors='replace').strip()[:200]}")
        proc_in = p.stdout
    return proc_in


def push(env, store, path: Path, name: str) -> str:
    data = path.read_bytes()
    if SEGMENT_RE.match(name) and len(data) != 16 * 1024 * 1024:
        raise OperationFailed(f"WAL segment {name} is {len(data)} bytes, not 16 MiB; refusing to archive it")
    raw_sha = hashlib.sha256(data).hexdigest()
    b = env.cfg.backup
    data_key, meta_key = keys(name, bool(b.encryption_recipient))
    if store.exists(meta_key):
        meta = json.loads(store.get_bytes(meta_key))
        if meta.get("raw_sha256") == raw_sha:
            return "already archived (identical)"
        raise OperationFailed(f"WAL {name} is already archived with different content; refusing to overwrite "
                              "(two clusters archiving to one place?)")
    size = _put(env, store, name, data, data_key, meta_key, raw_sha)
    return f"archived ({len(data)} -> {size} bytes)"


def fetch(env, store, name: str, dest: Path) -> str:
    from .artifacts import identity_file

    meta_key = f"{WAL}/{name}.json"
    if not store.exists(meta_key):
        # The newest segment may exist only as the streamer's partial copy (the primary was lost mid-segment).
        meta_key = f"{WAL}/{name}{PARTIAL}.json"
        if not SEGMENT_RE.match(name) or not store.exists(meta_key):
            raise FileNotFoundError(name)  # normal at the end of recovery: PostgreSQL asks for what may not exist
    meta = json.loads(store.get_bytes(meta_key))
    stored = store.get_bytes(meta["key"])
    if hashlib.sha256(stored).hexdigest() != meta["sha256"]:
        raise OperationFailed(f"WAL {name} is corrupt in the archive (sha256 mismatch)")
    with identity_file(env) as ident:
        stages = ([cz.age_decrypt(ident)] if meta.get("encryption") == "age" else []) + [cz.zstd_decompress()]
        data = _pipe(stages, stored)
    if hashlib.sha256(data).hexdigest() != meta["raw_sha256"]:
        raise OperationFailed(f"WAL {name} decompressed to different bytes than were archived")
    tmp = dest.with_name(dest.name + ".iosops-tmp")
    tmp.write_bytes(data)
    tmp.replace(dest)
    return f"restored {name}"


def prefetch(env, store, names: list[str], spool: Path, workers: int = 4) -> int:
    """Fetch (verify, decrypt, decompress) many WAL files in parallel into `spool`, so that
    restore_command is a `cp` instead of one interpreter start per segment (as pgBackRest's async
    archive-get does). Returns how many were spooled; anything missing is fetched on demand later."""
    from concurrent.futures import ThreadPoolExecutor

    spool.mkdir(parents=True, exist_ok=True)

    def one(name: str) -> bool:
        try:
            fetch(env, store, name, spool / name)
            return True
        except (FileNotFoundError, OperationFailed):
            return False

    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(one, names))


def restore_command(env, spool: Path) -> str:
    """`cp` from the prefetch spool when the file is there, else fetch it from the store. A copy, not a
    move: recovery asks for some files twice (the last segment, the timeline history), and every miss
    costs an interpreter start. With a local-directory store a file the archive does not hold (recovery
    probes for the next segment and for newer timelines) is answered by the shell at once: the archive
    writes <name>.json last, so its absence is exactly "not archived". The spool is removed when the
    restore ends."""
    import shlex

    q = shlex.quote(str(spool))
    fallback = command_line(env, "fetch")
    absent = ""
    if env.cfg.backup.store.kind == "local":
        from .store import local_path

        wal_dir = shlex.quote(str(local_path(env) / WAL))
        absent = f"elif [ ! -f {wal_dir}/%f.json ] && [ ! -f {wal_dir}/%f{PARTIAL}.json ]; then exit 1; "
    return f"if [ -f {q}/%f ]; then cp {q}/%f %p; {absent}else {fallback}; fi"


def archived_segments(store) -> dict[str, dict]:
    """name -> {size} for every complete archived WAL file (has its .json); a streamer's partial copy of a
    segment appears as `<name>.partial`."""
    out = {}
    for obj in store.list(WAL + "/"):
        if obj.key.endswith(".json"):
            out[obj.key[len(WAL) + 1:-5]] = {"size": obj.size}
    return out


def flatten(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        if isinstance(v, dict):
            out += flatten(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}={json.dumps(v)}")
    return out


def command_line(env, action: str) -> str:
    """The archive_command / restore_command for postgresql.conf: this project's own interpreter with
    the env's name and every override layer, since PostgreSQL starts it without our environment."""
    import shlex

    from .. import REPO_ROOT

    py = str(REPO_ROOT / ".venv/bin/python")
    args = [py, "-m", "iosops.backup.wal", action, "--env", env.name]
    for s in flatten(env.overrides):
        args += ["--set", s]
    tail = "%p %f" if action == "push" else "%f %p"  # %p is relative to the data directory: no cd
    return f"{shlex.join(args)} {tail}"


def wal_metrics(env, ok: bool, runner) -> None:
    """iosops_wal_archive_last_success_timestamp_seconds / iosops_wal_archive_failures_total in a textfile
    beside backup.metrics_file. Best effort: archiving must never fail because metrics could not be written."""
    from .metrics import read_textfile, write_metrics

    try:
        path = env.path(env.cfg.backup.metrics_file).with_name("iosops_wal.prom")
        failures = read_textfile(path).get(f'iosops_wal_archive_failures_total{{env="{env.name}"}}', 0.0)
        values = {"iosops_wal_archive_failures_total": failures + (0 if ok else 1)}
        if ok:
            values["iosops_wal_archive_last_success_timestamp_seconds"] = time.time()
        write_metrics(env, runner, values, path=path)
    except (OSError, ValueError):
        pass


def parse_sets(items: list[str]) -> dict:
    """`--set a.b=<json>` (what `flatten` writes) back into an override tree."""
    overrides: dict = {}
    for item in items:
        path, _, value = item.partition("=")
        node = overrides
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = json.loads(value)
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iosops.backup.wal")
    parser.add_argument("action", choices=["push", "fetch"])
    parser.add_argument("--env", required=True)
    parser.add_argument("--set", action="append", default=[], help="config override key.path=value")
    parser.add_argument("a")
    parser.add_argument("b")
    args = parser.parse_args(argv)
    from ..config import load_env
    from .store import open_store

    from ..runner import Runner

    overrides = parse_sets(args.set)
    runner = Runner(say=lambda line: None)  # archive_command's entry point: its one runner (metrics file)
    env = None
    try:
        env = load_env(args.env, overrides=overrides)
        store = open_store(env)
        if args.action == "push":
            msg = push(env, store, Path(args.a), args.b)
            wal_metrics(env, True, runner)
        else:
            msg = fetch(env, store, args.a, Path(args.b))
    except FileNotFoundError:
        return 1  # restore_command: "not in the archive" is an expected answer, quietly
    except IosopsError as exc:
        print(f"iosops wal {args.action}: {exc}", file=sys.stderr)
        if env is not None and args.action == "push":
            wal_metrics(env, False, runner)
        return 1
    print(f"iosops wal {args.action} {args.b if args.action == 'push' else args.a}: {msg}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
