"""`inv ci.scan` / `inv ci.lint` for real, on a temporary copy of this checkout with findings seeded into it:
the gates run every real scanner and must FAIL, naming exactly the seeded findings (the copy is otherwise
the clean repository, so every other scanner must still report zero). A missing scanner is the
one-line not-installed error."""
import json
import shutil
import subprocess

import pytest

from tests.conftest import ROOT, run_inv

# Built at run time so this file itself holds no key-shaped string for the secret scan to find:
# the documented AWS example key id.
FAKE_AWS_KEY = "AKIA" + "IOSFODNN7" + "EXAMPLE"

SEEDS = {
    "scripts/seeded.sh": '#!/usr/bin/env bash\n# Seeded: unquoted expansion under rm.\nset -euo pipefail\nrm -rf $1/*\n',
    "iosops/seeded_finding.py": 'import os\nimport subprocess\n\n\ndef go(cmd):\n    return subprocess.call(cmd, shell=True)\n',
    "docs/seeded-credentials.txt": f"aws_access_key_id = {FAKE_AWS_KEY}\n",
}


def _copy_checkout(dest):
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for rel in filter(None, files.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    # the checkout's own tool venvs, as a clone that ran scripts/bootstrap.sh has them
    (dest / ".venv").symlink_to(ROOT / ".venv")
    (dest / ".venv-checkov").symlink_to(ROOT / ".venv-checkov")
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)


@pytest.fixture
def seeded(tmp_path):
    _copy_checkout(tmp_path)
    for rel, text in SEEDS.items():
        (tmp_path / rel).write_text(text)
    (tmp_path / "scripts/seeded.sh").chmod(0o755)
    return tmp_path


def _gate(*args):
    proc = run_inv(*args, "--json", timeout=600)
    return proc, json.loads(proc.stdout)


def test_scan_fails_on_seeded_findings_and_names_them(seeded):
    proc, out = _gate("ci.scan", "--root", str(seeded))
    assert proc.returncode == 1, proc.stderr
    by_name = {s["name"]: s for s in out["scanners"]}
    failing = {n for n, s in by_name.items() if s["findings"]}
    assert failing == {"ruff", "shellcheck", "bandit", "detect-secrets"}, {n: by_name[n]["findings"] for n in failing}
    assert by_name["ruff"]["findings"] == ["iosops/seeded_finding.py:1 F401 `os` imported but unused"]
    assert all(f.startswith("scripts/seeded.sh:4:") for f in by_name["shellcheck"]["findings"])
    assert any("SC2086" in f for f in by_name["shellcheck"]["findings"])
    assert "iosops/seeded_finding.py:6 B602" in " ".join(by_name["bandit"]["findings"])
    assert by_name["detect-secrets"]["findings"] == ["docs/seeded-credentials.txt:1 AWS Access Key"]
    # the other scanners ran on the copy (real files, real tools) and found nothing
    for name in ("yamllint", "hadolint", "checkov-docker", "checkov-k8s"):
        assert by_name[name]["files"] > 0 and by_name[name]["findings"] == [], name
    assert "passed" in by_name["checkov-k8s"]["note"]
    # one line that names the findings, and no key material in any output
    assert "ruff 1" in proc.stderr and "detect-secrets 1" in proc.stderr and "shellcheck" in proc.stderr
    assert FAKE_AWS_KEY not in proc.stdout + proc.stderr


def test_scan_of_the_same_copy_without_the_seeds_passes(seeded):
    for rel in SEEDS:
        (seeded / rel).unlink()
    proc, out = _gate("ci.scan", "--root", str(seeded), "--only", "ruff,shellcheck,bandit,detect-secrets")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out["ok"] and out["findings"] == 0 and [s["name"] for s in out["scanners"]] == [
        "ruff", "shellcheck", "bandit", "detect-secrets"]


def test_lint_fails_on_an_invalid_workflow_and_a_bad_alert_rule(seeded):
    wf = seeded / ".github/workflows/ci-cd.yml"
    wf.write_text(wf.read_text().replace("    timeout-minutes: 30\n", "    timeout-minutes: 30\n    bogus-key: 1\n", 1))
    rules = seeded / "monitoring/prometheus/rules/api.yml"
    rules.write_text(rules.read_text().replace("expr: ", "expr: sum(( ", 1))
    proc, out = _gate("ci.lint", "--root", str(seeded))
    assert proc.returncode == 1
    by_name = {s["name"]: s for s in out["scanners"]}
    assert any("bogus-key" in f for f in by_name["workflow-schema"]["findings"]), by_name["workflow-schema"]
    assert by_name["promtool-rules"]["findings"], by_name["promtool-rules"]
    assert {n for n, s in by_name.items() if s["findings"]} == {"workflow-schema", "promtool-rules", "ruff",
                                                                  "shellcheck"}


def test_a_missing_scanner_is_the_not_installed_error(seeded):
    (seeded / ".venv-checkov").unlink()  # this "clone" never ran bootstrap's checkov step
    proc = run_inv("ci.scan", "--root", str(seeded), "--only", "checkov-docker")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {seeded}/.venv-checkov/bin/checkov is not installed or not on PATH; run scripts/bootstrap.sh")
    assert "Traceback" not in proc.stderr


def test_outside_a_git_checkout_is_bad_input(tmp_path):
    proc = run_inv("ci.lint", "--root", str(tmp_path))
    assert proc.returncode == 2 and "is not a git checkout" in proc.stderr and "Traceback" not in proc.stderr



def test_pip_audit_that_cannot_audit_passes_best_effort_and_fails_when_required():
    """The real pip-audit, twice: on this offline machine it cannot audit, which passes as UNAVAILABLE
    unless IOSOPS_PIP_AUDIT_REQUIRED=1 (the workflow's scan job) makes it a finding. On a networked
    runner both runs audit; either way each line names the mode that applied."""
    runs = {}
    for setting in ("", "1"):
        proc = run_inv("ci.scan", "--only", "pip-audit", "--json", env={"IOSOPS_PIP_AUDIT_REQUIRED": setting},
                       timeout=600)
        (line,) = json.loads(proc.stdout)["scanners"]
        runs[setting] = (proc.returncode, line)
    rc, line = runs[""]
    assert line["note"].startswith("best-effort (IOSOPS_PIP_AUDIT_REQUIRED unset)"), line
    audited = line["status"] == "ok" and "packages audited" in line["note"]
    assert rc == (1 if line["findings"] else 0) and line["status"] in ("ok", "unavailable", "findings")
    rc, line = runs["1"]
    assert line["note"].startswith("required (IOSOPS_PIP_AUDIT_REQUIRED=1)"), line
    if audited:  # a networked machine: the same result as best-effort
        assert line["status"] == runs[""][1]["status"] and line["findings"] == runs[""][1]["findings"]
    else:  # offline (here): fail closed, saying why
        assert rc == 1 and line["status"] == "findings" and line["findings"][-1].startswith(
            "pip-audit could not audit, and IOSOPS_PIP_AUDIT_REQUIRED says this runner must"), line
