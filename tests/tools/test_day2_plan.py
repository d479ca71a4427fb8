"""The tools-tier half of tests/unit/test_day2_plan.py: these tests run real programs (see tests/tools/__init__.py)."""
import pytest

from tests.unit.test_stack_backup_plan import SENTINELS


# -- as users type it: one `error:` line, exit 2, before any host is asked anything ------------------------------
@pytest.mark.parametrize("args,why", [
    (["exec", "--env", "staging"], "error: inv exec needs a command after --"),
    (["exec", "--env", "staging", "--colour", "red", "--", "ls"], "error: --colour 'red': blue or green"),
    (["logs", "--env", "staging", "--since", "last tuesday"], "error: --since 'last tuesday': not a duration"),
    (["logs", "--env", "staging", "--tail", "-3"], "error: --tail '-3'"),
    (["logs", "--env", "staging", "--service", "mysql"], "error: --service 'mysql': unknown"),
    (["images.prune", "--env", "staging", "--keep", "0"], "error: --keep 0: keep at least 1"),
    (["maintenance", "sideways", "--env", "staging"], "error: maintenance 'sideways': say `on` or `off`"),
    (["maintenance", "on", "--env", "staging", "--reason", "it's"], "error: --reason: ' cannot go into"),
    (["db.psql", "--env", "staging"], "error: db.psql: stdin is not a terminal: pass -c SQL"),
])
def test_cli_refusals_are_one_line_exit_2(args, why, tmp_path):
    from tests.conftest import run_inv

    p = run_inv(*args, env={**SENTINELS, "IOSOPS_STATE_DIR": str(tmp_path)})
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith(why), (p.returncode, p.stderr)
    assert not (tmp_path / "audit.log").exists() and not (tmp_path / "locks").exists()
