"""The local store on a real temporary directory: what it refuses at open, and what it makes durable."""
import pytest

from iosops.backup.store import LocalStore, open_store
from iosops.config import load_env
from iosops.errors import BadInput


def env_at(path):
    return load_env("local", environ={}, overrides={"backup": {"store": {"kind": "local", "path": str(path)}}})


def test_a_store_path_that_is_a_file_or_under_one_is_bad_input_naming_it(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    for path in (f, f / "below"):
        with pytest.raises(BadInput, match=rf"backup.store.path {path} is not a directory.*point backup.store.path at a"):
            open_store(env_at(path))
    assert f.read_text() == "x"


def test_a_missing_store_path_below_a_directory_is_fine_and_not_created_at_open(tmp_path):
    store = open_store(env_at(tmp_path / "new" / "store"))
    assert isinstance(store, LocalStore) and list(store.list("backups/")) == []
    assert not (tmp_path / "new").exists()


@pytest.fixture
def durability_log(monkeypatch):
    """Every mkdir, fsync (by the path its fd points at) and rename, in order."""
    import os

    events = []
    real_fsync, real_replace, real_mkdir = os.fsync, os.replace, os.mkdir

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, *a, **k):
        real_replace(src, dst, *a, **k)
        events.append(("replace", str(dst)))

    def mkdir(path, *a, **k):
        real_mkdir(path, *a, **k)
        events.append(("mkdir", str(path)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "mkdir", mkdir)
    return events


def assert_durable(events, dest, new_dirs):
    """The object's data, then its directory entry after the rename, then every new directory's entry."""
    kinds = list(events)
    rename = kinds.index(("replace", str(dest)))
    assert any(e[0] == "fsync" and e[1].startswith(str(dest.parent) + "/.") for e in kinds[:rename]), kinds
    assert ("fsync", str(dest.parent)) in kinds[rename + 1:], f"directory not fsynced after the rename: {kinds}"
    for d in new_dirs:
        made = kinds.index(("mkdir", str(d)))
        assert ("fsync", str(d.parent)) in kinds[made + 1:], f"parent of new directory {d} not fsynced: {kinds}"


@pytest.mark.parametrize("how", ["put_stream", "put_bytes"])
def test_an_object_is_durable_once_put_returns(tmp_path, durability_log, how):
    import io

    store = LocalStore(tmp_path / "store")
    key = "backups/20261202T000000Z-abcd/redis.rdb.zst"
    put = (lambda k, b: store.put_stream(k, io.BytesIO(b))) if how == "put_stream" else store.put_bytes
    put(key, b"first")
    dest = (tmp_path / "store" / key)
    assert dest.read_bytes() == b"first"
    assert_durable(durability_log, dest, [tmp_path / "store", tmp_path / "store" / "backups", dest.parent])
    durability_log.clear()
    put("backups/20261202T000000Z-abcd/manifest.json", b"{}")  # into an existing directory: no mkdir
    assert not [e for e in durability_log if e[0] == "mkdir"]
    assert_durable(durability_log, dest.parent / "manifest.json", [])


def test_local_store_list_skips_files_gone_since_the_listing(tmp_path, monkeypatch):
    """WAL archiving writes `.NAME.partial` then renames it: a concurrent listing (restore's WAL prefetch) saw
    the temporary name and failed on its stat (FileNotFoundError in a CI rehearsal). A partial file still
    there is listed: a killed upload's debris, which prune sweeps."""
    from pathlib import Path

    (tmp_path / "wal").mkdir()
    (tmp_path / "wal" / "000000010000000000000001").write_bytes(b"x")
    (tmp_path / "wal" / ".000000010000000000000002.partial").write_bytes(b"half")
    (tmp_path / "wal" / "000000010000000000000003").write_bytes(b"y")
    real_is_file = Path.is_file

    def vanishing(p):
        if p.name.endswith("3"):
            raise FileNotFoundError(2, "gone", str(p))
        return real_is_file(p)
    monkeypatch.setattr(Path, "is_file", vanishing)
    assert [o.key for o in LocalStore(tmp_path).list("wal/")] == ["wal/.000000010000000000000002.partial",
                                                                  "wal/000000010000000000000001"]
