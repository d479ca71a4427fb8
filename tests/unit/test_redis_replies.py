"""redis-cli exits 0 on an error reply: the backup recognises one (captured redis-cli 7.0 output)."""
import pytest

from iosops.commands.redis import reply_error


@pytest.mark.parametrize("stdout,expected", [
    ("NOAUTH Authentication required.\n", "NOAUTH Authentication required."),
    ("(error) NOAUTH Authentication required.\n", "NOAUTH Authentication required."),
    ("WRONGPASS invalid username-password pair or user is disabled.\n",
     "WRONGPASS invalid username-password pair or user is disabled."),
    ("ERR Background save already in progress\n", "ERR Background save already in progress"),
    ("# Persistence\r\nloading:0\r\nrdb_bgsave_in_progress:0\r\n", None),
    ("Background saving started\n", None),
    ("", None),
])
def test_reply_error(stdout, expected):
    assert reply_error(stdout) == expected
