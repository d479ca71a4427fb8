"""The day-2 tasks' SSH paths that the scripted plans cannot prove: a followed stream over a real SSH
channel (lines as they come; stop() leaves nothing running on the host) and an attached command whose exit
code comes back. Against a real sshd container (iosops/sshd-host) on 127.0.0.1, its host key trusted first."""
import time

from iosops.day2.attach import Stream, interactive
from iosops.runner import Runner
from tests.integration.test_remote_runner import ssh_host  # noqa: F401 - the fixture

def ticks(lines: list[str]) -> list[str]:
    # The test host's sshd runs with -e (logs to stderr) and has no /var/log/lastlog: with a pty it writes
    # "lastlog_openseek: ..." into the session. A real host's sshd logs to syslog.
    return [line for line in lines if line.startswith("day2-tick")]


TICKER = ["sh", "-c", "i=0; while :; do i=$((i+1)); echo day2-tick $i; sleep 0.2; done"]


def test_followed_stream_over_ssh_delivers_lines_and_stop_ends_the_remote_command(ssh_host):  # noqa: F811
    host, _ = ssh_host
    seen: list[str] = []
    remote = Runner(say=lambda s: None).on(host)
    s = Stream(remote, TICKER, seen.append).start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(ticks(seen)) < 5:
        time.sleep(0.1)
    s.stop()
    assert ticks(seen)[:3] == ["day2-tick 1", "day2-tick 2", "day2-tick 3"] and s.error is None
    assert not s.alive()
    check = Runner(say=lambda s: None).on(host)
    try:
        left = ""
        for _ in range(20):  # the hang-up reaches the remote shell within moments
            left = check.run(["sh", "-c", "ps -eo args | grep '[d]ay2-tick' || true"], mutating=False).stdout
            if not left.strip():
                break
            time.sleep(0.2)
        assert left.strip() == "", f"still running on the host after stop(): {left}"
    finally:
        check.close()


def test_attached_command_over_ssh_returns_its_exit_code(ssh_host, monkeypatch):  # noqa: F811
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    host, _ = ssh_host
    remote = Runner(say=lambda s: None).on(host)
    try:
        assert interactive(remote, ["sh", "-c", "exit 3"]) == 3
        assert interactive(remote, ["true"]) == 0
    finally:
        remote.close()
