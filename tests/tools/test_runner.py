"""The tools-tier half of tests/unit/test_runner.py: these tests run real programs (see tests/tools/__init__.py)."""
import subprocess

import pytest

from iosops.errors import OperationFailed
from iosops.runner import Runner
from iosops.secretref import Secret


def test_real_command_and_failure_message():
    r = Runner()
    assert r.run(["echo", "hi"]).stdout == "hi\n"
    with pytest.raises(OperationFailed, match=r"command failed \(exit 3\): sh -c 'echo bad >&2; exit 3': bad"):
        r.run(["sh", "-c", "echo bad >&2; exit 3"])
    assert r.run(["false"], check=False).rc == 1


def test_missing_program_is_one_line():
    with pytest.raises(OperationFailed, match=r"no-such-prog-x is not installed"):
        Runner().run(["no-such-prog-x"])


def test_pipeline_runs_and_fails_on_inner_stage():
    r = Runner()
    assert r.pipe(["printf", "a\\nb\\n"], ["wc", "-l"]).stdout.strip() == "2"
    with pytest.raises(OperationFailed):
        r.pipe(["sh", "-c", "exit 4"], ["cat"])


def test_failure_output_is_redacted():
    Secret("leaky-sentinel-123")
    with pytest.raises(OperationFailed) as err:
        Runner().run(["sh", "-c", "echo leaky-sentinel-123 >&2; exit 1"])
    assert "leaky" not in str(err.value) and "***" in str(err.value)


def test_a_stage_that_exits_early_never_kills_the_cli_process():
    """Under the signal setup `inv` uses (tasks.py), pumping into a stage that stops reading (zstd/tar
    giving up on a corrupt backup) is an ordinary exit code, never a silent death by SIGPIPE."""
    import sys

    from tests.conftest import ROOT

    code = ("import io, signal, tasks\n"
            "from iosops.runner import Runner\n"
            "assert signal.getsignal(signal.SIGPIPE) is not signal.SIG_DFL\n"
            "r = Runner(say=lambda s: None).stream(['head', '-c', '1'], source=io.BytesIO(b'x' * (8 << 20)),\n"
            "                                      sink=lambda f: f.read())\n"
            "print(r.rc, r.value)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "0 b'x'\n"), (proc.returncode, proc.stderr[-500:])
