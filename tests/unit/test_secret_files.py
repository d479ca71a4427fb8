"""Secret files that exist but cannot be used are bad input naming the reference, never a value."""
import os
from pathlib import Path

import pytest

from iosops.errors import BadInput
from iosops.secretref import SecretRef

VALUE = "s3cr\u00e9t-value-7d21"  # pragma: allowlist secret - test value, not a credential


def test_a_directory_is_bad_input_even_with_generate(tmp_path):
    (tmp_path / "pw").mkdir()
    for ref in (SecretRef(file="pw"), SecretRef(file="pw", generate=True)):
        with pytest.raises(BadInput, match=rf"secret backup.postgres.password: {tmp_path}/pw is a directory, not a "
                                           r"file; point backup.postgres.password at"):
            ref.reveal("backup.postgres.password", tmp_path)
    assert (tmp_path / "pw").is_dir() and not list((tmp_path / "pw").iterdir())


def test_a_file_that_is_not_utf8_is_bad_input_without_the_value(tmp_path):
    (tmp_path / "pw").write_bytes(VALUE.encode("latin-1"))
    with pytest.raises(BadInput, match=rf"secret secrets.db: file {tmp_path}/pw is not UTF-8 text") as info:
        SecretRef(file="pw").reveal("secrets.db", tmp_path)
    text = str(info.value)
    assert "s3cr" not in text and "value-7d21" not in text and "0xe9" not in text


def test_an_unreadable_file_is_bad_input(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text(VALUE)

    def denied(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(BadInput, match=rf"secret secrets.db: file {tmp_path}/pw is not readable by uid "
                                       rf"{os.geteuid()}.*give that user read access"):
        SecretRef(file="pw").reveal("secrets.db", tmp_path)


def test_a_file_below_a_path_that_cannot_be_searched_is_bad_input(tmp_path, monkeypatch):
    def denied(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(os, "stat", denied)
    with pytest.raises(BadInput, match=rf"secret secrets.db: file {tmp_path}/sub/pw is not readable"):
        SecretRef(file="sub/pw").reveal("secrets.db", tmp_path)


def test_a_fifo_is_refused_instead_of_blocking(tmp_path):
    os.mkfifo(tmp_path / "pw")
    with pytest.raises(BadInput, match=rf"{tmp_path}/pw is not a regular file"):
        SecretRef(file="pw").reveal("secrets.db", tmp_path)


def test_a_good_file_still_reads_and_strips(tmp_path):
    (tmp_path / "pw").write_text(VALUE + "\n")
    assert SecretRef(file="pw").reveal("secrets.db", tmp_path).get() == VALUE


@pytest.mark.parametrize("how", ["file", "env"])
def test_a_short_secret_is_bad_input_without_the_value(tmp_path, monkeypatch, how):
    """A 5-character secret is refused (weak; and masking it would garble every output line holding it)."""
    short = "Zq7xk"  # pragma: allowlist secret - test value
    (tmp_path / "pw").write_text(short + "\n")
    monkeypatch.setenv("IOSOPS_T_SHORT", short)
    ref = SecretRef(file="pw") if how == "file" else SecretRef(env="IOSOPS_T_SHORT")
    with pytest.raises(BadInput, match=r"secret secrets.db: .* holds 5 characters, fewer than 8; use a longer") as info:
        ref.reveal("secrets.db", tmp_path)
    assert short not in str(info.value)
    long_enough = "Zq7xk-8c"  # pragma: allowlist secret - test value
    monkeypatch.setenv("IOSOPS_T_SHORT", long_enough)
    (tmp_path / "pw").write_text(long_enough)
    assert ref.reveal("secrets.db", tmp_path).get() == long_enough
