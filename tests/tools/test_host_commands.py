"""(tools tier: runs the local sh) iosops.commands.host: the sh -c builders keep a path one word, whatever it contains (run with the
local sh: the argv cases in tests/unit/cases/host_*.json pin the strings, this proves what they do)."""
import hashlib
import subprocess  # nosec B404 # runs the builders' own argv with the local sh

from iosops.commands import host as hc

NASTY = "my files/it's \"quoted\"; touch PWNED $(touch PWNED2)"


def test_stat_and_sha256_keeps_a_nasty_path_one_word(tmp_path):
    path = tmp_path / NASTY
    path.parent.mkdir()
    path.write_text("hello\n")
    path.chmod(0o640)
    out = subprocess.run(hc.stat_and_sha256("%a", str(path)), cwd=tmp_path, capture_output=True, text=True,  # nosec B603 # argv list
                         check=True).stdout.split()
    assert out[:2] == ["640", hashlib.sha256(b"hello\n").hexdigest()]
    assert not list(tmp_path.glob("PWNED*"))


def test_put_writes_stdin_atomically_to_a_nasty_path(tmp_path):
    path = tmp_path / "new dir" / NASTY
    subprocess.run(hc.put(str(path), 0o600), input="secret\n", cwd=tmp_path, text=True, check=True)  # nosec B603 # argv list
    assert path.read_text() == "secret\n" and oct(path.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left
    assert not list(tmp_path.glob("PWNED*"))
