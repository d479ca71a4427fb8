"""ci.lint / ci.scan, pure parts: which files each scanner covers, and how each tool's report (captured
from the pinned versions) becomes findings; a tool that leaves no report is a finding, never a pass."""
import json
from pathlib import Path

import pytest

from iosops.ci import scan
from iosops.errors import BadInput
from iosops.runner import Result

ROOT = Path("/repo")


def res(stdout, rc=0, stderr=""):
    return Result(rc, stdout if isinstance(stdout, str) else json.dumps(stdout), stderr)


def test_selection_by_kind(tmp_path):
    files = ["a.py", "iosops/x.py", "app/y.py", "tests/t.py", "k8s/base/a.yaml", "envs/p.yml", "docker/Dockerfile",
             "docker/offline/redis/Dockerfile", "Dockerfile.dev", "scripts/b.sh", ".ci/run", "tools/noext",
             ".github/workflows/ci-cd.yml", "monitoring/prometheus/rules/api.yml", "README.md", "app/requirements.txt"]
    (tmp_path / ".ci").mkdir()
    (tmp_path / ".ci/run").write_text("#!/usr/bin/env bash\nset -e\n")
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools/noext").write_text("plain text, no shebang\n")
    assert scan.py(tmp_path, files) == ["a.py", "iosops/x.py", "app/y.py", "tests/t.py"]
    assert scan.py_app(tmp_path, files) == ["iosops/x.py", "app/y.py"]
    assert scan.shell_scripts(tmp_path, files) == ["scripts/b.sh", ".ci/run"]
    assert scan.dockerfiles(tmp_path, files) == ["docker/Dockerfile", "docker/offline/redis/Dockerfile", "Dockerfile.dev"]
    assert scan.docker_dockerfiles(tmp_path, files) == ["docker/Dockerfile", "docker/offline/redis/Dockerfile"]
    assert scan.k8s_manifests(tmp_path, files) == ["k8s/base/a.yaml"]
    assert scan.workflows(tmp_path, files) == [".github/workflows/ci-cd.yml"]
    assert scan.alert_rules(tmp_path, files) == ["monitoring/prometheus/rules/api.yml"]
    assert scan.requirements(tmp_path, files) == ["app/requirements.txt"]
    assert scan.every_file(tmp_path, files) == files


def test_ruff_report():
    out = res([{"code": "F401", "filename": "/repo/iosops/f.py", "location": {"column": 8, "row": 1},
                "message": "`os` imported but unused"}], rc=1)
    assert scan.parse_ruff(ROOT, out) == ["iosops/f.py:1 F401 `os` imported but unused"]
    assert scan.parse_ruff(ROOT, res([])) == []


def test_line_reports_of_yamllint_and_shellcheck():
    sc = ('x.sh:2:8: warning: Use "${var:?}" to ensure this never expands to /* . [SC2115]\n'
          "x.sh:2:8: note: Double quote to prevent globbing and word splitting. [SC2086]\n")
    assert len(scan.parse_lines(ROOT, res(sc, rc=1))) == 2
    assert scan.parse_lines(ROOT, res("", rc=0)) == []
    with pytest.raises(scan.NoReport, match="exited 2"):  # crashed: no report is not "clean"
        scan.parse_lines(ROOT, res("", rc=2, stderr="yamllint: error: unrecognized arguments"))


def test_hadolint_report():
    out = [{"code": "DL3008", "column": 1, "file": "Dockerfile", "level": "warning", "line": 2,
            "message": "Pin versions in apt get install."}]
    assert scan.parse_hadolint(ROOT, res(out, rc=1)) == ["Dockerfile:2 DL3008 Pin versions in apt get install."]


def test_bandit_report_counts_unparsed_files_too():
    out = {"errors": [{"filename": "./app/bad.py", "reason": "syntax error while parsing AST from file"}],
           "results": [{"filename": "./s.py", "line_number": 2, "test_id": "B602",
                        "issue_text": "subprocess call with shell=True"}]}
    assert scan.parse_bandit(ROOT, res(out, rc=1)) == [
        "s.py:2 B602 subprocess call with shell=True", "./app/bad.py: not scanned: syntax error while parsing AST from file"]


def test_detect_secrets_report():
    out = {"results": {"k.txt": [{"type": "AWS Access Key", "filename": "k.txt", "is_verified": False, "line_number": 1}]}}
    assert scan.parse_detect_secrets(ROOT, res(out)) == ["k.txt:1 AWS Access Key"]
    assert scan.parse_detect_secrets(ROOT, res({"results": {}})) == []


def test_checkov_failures_and_skips_without_reason_are_findings():
    out = {"check_type": "dockerfile", "summary": {"parsing_errors": 0}, "results": {
        "failed_checks": [{"check_id": "CKV_DOCKER_2", "check_name": "Ensure that HEALTHCHECK instructions have been added",
                           "file_path": "/docker/Dockerfile", "file_line_range": [1, 9]}],
        "skipped_checks": [{"check_id": "CKV_DOCKER_7", "file_path": "docker/a/Dockerfile",
                            "check_result": {"result": "SKIPPED", "suppress_comment": "ARG-pinned base"}},
                           {"check_id": "CKV_DOCKER_3", "file_path": "docker/b/Dockerfile",
                            "check_result": {"result": "SKIPPED", "suppress_comment": " "}}]}}
    assert scan.parse_checkov(ROOT, res(out, rc=1)) == [
        "docker/Dockerfile:1 CKV_DOCKER_2 Ensure that HEALTHCHECK instructions have been added",
        "docker/b/Dockerfile CKV_DOCKER_3 skipped without a reason"]
    out["summary"]["parsing_errors"] = 1
    assert scan.parse_checkov(ROOT, res([out]))[-1] == "1 file(s) checkov could not parse"


def test_workflow_schema_report():
    out = {"status": "fail", "parse_errors": [], "errors": [{
        "filename": "/repo/.github/workflows/ci-cd.yml", "path": "$.jobs.a", "message": "is not valid",
        "best_deep_match": {"path": "$.jobs.a.steps[0]", "message": "Additional properties are not allowed ('bogus' was unexpected)"}}]}
    assert scan.parse_workflow_schema(ROOT, res(out, rc=1)) == [
        ".github/workflows/ci-cd.yml $.jobs.a: Additional properties are not allowed ('bogus' was unexpected)"]


def test_promtool_report():
    assert scan.parse_promtool(ROOT, res("Checking a.yml\n  SUCCESS: 3 rules found\n")) == []
    bad = scan.parse_promtool(ROOT, res("Checking a.yml\n  FAILED:\n", rc=1, stderr="a.yml: 4:11: group \"x\", rule 1: could not parse expression\n"))
    assert bad and any("FAILED" in f for f in bad)


def test_a_tool_without_a_report_is_a_finding_not_a_pass():
    with pytest.raises(scan.NoReport, match="exited 2 without a report: Traceback boom"):
        scan.parse_ruff(ROOT, res("", rc=2, stderr="Traceback boom"))


def test_pip_audit_vulnerabilities_and_the_nothing_audited_case():
    vuln = {"dependencies": [{"name": "jinja2", "version": "3.1.2", "vulns": [
        {"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"], "aliases": ["CVE-2024-22195"]}]},
        {"name": "iosops", "skip_reason": "Dependency not found on PyPI and could not be audited: iosops (0.1.0)"}]}
    assert scan.parse_pip_audit(res(vuln, rc=1), ".venv") == (
        [".venv: jinja2==3.1.2 GHSA-h5c8-rqwp-cp95 (fixed in 3.1.3)"], 2, 1)
    assert scan.parse_pip_audit(res({"dependencies": [{"name": "a", "skip_reason": "not found"}]}), "r") == ([], 1, 1)


class FakeCtx:
    """Replays pip-audit reports by argv (a fake runner for the pure decision; the real run is in
    tests/integration/test_scan_gate.py)."""

    def __init__(self, by_flag, environ=None):
        self.by_flag, self.root, self.environ = by_flag, ROOT, {} if environ is None else environ

    def run(self, argv):
        return self.by_flag["--local" if "--local" in argv else "--requirement"]


def test_pip_audit_that_could_not_reach_a_vulnerability_service_says_so_and_why():
    skipped = res({"dependencies": [{"name": n, "skip_reason": f"Dependency not found on PyPI: {n}"} for n in "abc"]})
    findings, status, note = scan.run_pip_audit(FakeCtx({"--local": skipped, "--requirement": skipped}),
                                                ["app/requirements.txt"])
    assert (findings, status) == ([], "unavailable") and "nothing audited" in note
    assert note.startswith("best-effort (IOSOPS_PIP_AUDIT_REQUIRED unset): ")
    offline = res("", rc=1, stderr="requests.exceptions.ConnectionError: Max retries exceeded")
    findings, status, note = scan.run_pip_audit(FakeCtx({"--local": offline, "--requirement": offline}), [])
    assert (findings, status) == ([], "unavailable") and "Max retries" in note


def test_pip_audit_that_audited_reports_vulnerabilities():
    ok = res({"dependencies": [{"name": "a", "version": "1", "vulns": []}, {"name": "iosops", "skip_reason": "x"}]})
    vuln = res({"dependencies": [{"name": "b", "version": "2", "vulns": [{"id": "PYSEC-1", "fix_versions": []}]}]}, rc=1)
    findings, status, note = scan.run_pip_audit(FakeCtx({"--local": ok, "--requirement": vuln}), ["app/requirements.txt"])
    assert findings == ["app/requirements.txt: b==2 PYSEC-1 (fixed in -)"] and status == "ok"
    assert note == "best-effort (IOSOPS_PIP_AUDIT_REQUIRED unset): 3 packages audited, 1 not on PyPI (local)"


SKIPPED_ALL = res({"dependencies": [{"name": n, "skip_reason": f"Dependency not found on PyPI: {n}"} for n in "abc"]})
OFFLINE = res("", rc=1, stderr="requests.exceptions.ConnectionError: Max retries exceeded")


@pytest.mark.parametrize("report", [SKIPPED_ALL, OFFLINE], ids=["nothing-audited", "no-service"])
def test_pip_audit_required_fails_closed_when_it_could_not_audit(report):
    ctx = FakeCtx({"--local": report, "--requirement": report}, {"IOSOPS_PIP_AUDIT_REQUIRED": "1"})
    findings, status, note = scan.run_pip_audit(ctx, ["app/requirements.txt"])
    assert status == "findings" and note == "required (IOSOPS_PIP_AUDIT_REQUIRED=1)"
    assert len(findings) == 1 and findings[0].startswith(
        "pip-audit could not audit, and IOSOPS_PIP_AUDIT_REQUIRED says this runner must")
    # the gate's line: FAIL, the mode, and why it could not audit
    out = scan.run_one(ctx, next(s for s in scan.SCANNERS if s.name == "pip-audit"), ["app/requirements.txt"])
    line, finding = scan.summary_lines([out])
    assert "1 findings" in line and line.endswith("FAIL  (required (IOSOPS_PIP_AUDIT_REQUIRED=1))")
    assert ("nothing audited" in finding) or ("Max retries" in finding)


def test_pip_audit_required_passes_when_it_audited():
    ok = res({"dependencies": [{"name": "a", "version": "1", "vulns": []}]})
    findings, status, note = scan.run_pip_audit(FakeCtx({"--local": ok, "--requirement": ok},
                                                        {"IOSOPS_PIP_AUDIT_REQUIRED": "true"}), ["app/requirements.txt"])
    assert (findings, status, note) == ([], "ok", "required (IOSOPS_PIP_AUDIT_REQUIRED=true): 2 packages audited")


@pytest.mark.parametrize("value,required,mode", [
    (None, False, "best-effort (IOSOPS_PIP_AUDIT_REQUIRED unset)"),
    ("", False, "best-effort (IOSOPS_PIP_AUDIT_REQUIRED unset)"),
    ("0", False, "best-effort (IOSOPS_PIP_AUDIT_REQUIRED=0)"),
    ("no", False, "best-effort (IOSOPS_PIP_AUDIT_REQUIRED=no)"),
    ("1", True, "required (IOSOPS_PIP_AUDIT_REQUIRED=1)"),
    ("YES", True, "required (IOSOPS_PIP_AUDIT_REQUIRED=YES)"),
])
def test_pip_audit_mode_is_read_from_one_explicit_setting(value, required, mode):
    # CI=true alone changes nothing: .ci/run sets it on offline machines too
    environ = {"CI": "true"} | ({} if value is None else {"IOSOPS_PIP_AUDIT_REQUIRED": value})
    assert scan.pip_audit_mode(environ) == (required, mode)


def test_pip_audit_mode_that_is_neither_on_nor_off_is_bad_input():
    with pytest.raises(BadInput, match="IOSOPS_PIP_AUDIT_REQUIRED='maybe' is neither on nor off"):
        scan.pip_audit_mode({"IOSOPS_PIP_AUDIT_REQUIRED": "maybe"})


def test_only_picks_from_the_gate_and_rejects_unknown_names():
    assert [s.name for s in scan.pick("scan", "bandit, ruff")] == ["ruff", "bandit"]
    with pytest.raises(BadInput, match="not a ci.lint scanner; pick from ruff"):
        scan.pick("lint", "bandit")


def test_summary_lists_each_scanner_and_its_findings():
    outs = [scan.Outcome("ruff", "*.py", 3, [], 0.12), scan.Outcome("bandit", "py", 2, ["a.py:1 B602 x"], 1.5, "findings"),
            scan.Outcome("pip-audit", "env", 1, [], 2.0, "unavailable", "why")]
    assert scan.summary_lines(outs) == [
        "ruff          3 files    0 findings     0.1s",
        "bandit        2 files    1 findings     1.5s  FAIL",
        "    a.py:1 B602 x",
        "pip-audit     1 files    0 findings     2.0s  UNAVAILABLE  (why)"]
