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
