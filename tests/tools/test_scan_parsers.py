"""The tools-tier half of tests/unit/test_scan_parsers.py: these tests run real programs (see tests/tools/__init__.py)."""


def test_ci_scan_with_an_unreadable_pip_audit_setting_is_one_line_exit_2_before_scanning():
    from tests.conftest import run_inv

    proc = run_inv("ci.scan", "--only", "pip-audit", env={"IOSOPS_PIP_AUDIT_REQUIRED": "maybe"})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: IOSOPS_PIP_AUDIT_REQUIRED='maybe'")
    assert proc.stdout == ""  # no scanner ran
