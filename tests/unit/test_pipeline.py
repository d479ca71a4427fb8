"""The CI/CD pipeline, offline: the workflow's six stages, the Makefile's targets and .ci/run/README call
exactly the expected `inv` commands, so the three cannot drift apart. (The workflow's schema is checked
by `inv ci.lint`, scanner workflow-schema.)"""
import re
import shlex
import subprocess

import yaml

from iosops.ci.scan import SCANNERS, names
from tests.conftest import ROOT

WORKFLOW = ROOT / ".github/workflows/ci-cd.yml"
# stage (workflow job id == Makefile target) -> the one inv call it makes, in pipeline order
STAGES = {
    "lint": "inv ci.lint",
    "test": "inv ci.test",
    "scan": "inv ci.scan",
    "build": "inv build --push",
    "deploy-staging": "inv deploy --env staging",
    "deploy-prod": "inv deploy --env prod",
}
INV_CALL = re.compile(r"^(?:\.venv/bin/)?inv\b")


def _inv(command: str) -> str:
    """`.venv/bin/inv ci.lint` -> `inv ci.lint`; anything else unchanged."""
    return INV_CALL.sub("inv", command.strip())


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _make_targets() -> list[str]:
    return re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M)


def _make_dry_run(target: str) -> list[str]:
    """What make itself would run for TARGET (make -n), with the inv path set to plain `inv`."""
    proc = subprocess.run(["make", "--no-print-directory", "-n", "-C", str(ROOT), target, "INV=inv"],
                          capture_output=True, text=True, check=True)
    return proc.stdout.strip().splitlines()


def test_every_stage_is_one_job_making_exactly_its_inv_call():
    jobs = _workflow()["jobs"]
    assert list(jobs) == list(STAGES)
    for job_id, expected in STAGES.items():
        runs = [s["run"] for s in jobs[job_id]["steps"] if "run" in s]
        inv_calls = [_inv(r) for r in runs if _inv(r).startswith("inv ")]
        assert inv_calls == [expected], job_id
        # the only other step is the machine setup, the same one a laptop runs
        assert [r for r in runs if not _inv(r).startswith("inv ")] == ["./scripts/bootstrap.sh"], job_id


def test_stages_are_chained_in_order_and_only_main_builds_and_deploys():
    jobs = _workflow()["jobs"]
    order = list(STAGES)
    assert "needs" not in jobs["lint"]
    for prev, job_id in zip(order, order[1:], strict=False):
        assert jobs[job_id]["needs"] == prev
    assert "refs/heads/main" in jobs["build"]["if"] and "push" in jobs["build"]["if"]


def test_deploys_are_serialised_per_env_and_prod_waits_for_approval():
    jobs = _workflow()["jobs"]
    assert jobs["deploy-staging"]["concurrency"] == {"group": "deploy-staging", "cancel-in-progress": False}
    assert jobs["deploy-prod"]["concurrency"] == {"group": "deploy-prod", "cancel-in-progress": False}
    # required reviewers are a property of the `production` GitHub environment
    assert jobs["deploy-prod"]["environment"]["name"] == "production"
    assert jobs["deploy-staging"]["environment"]["name"] == "staging"


def test_secrets_only_arrive_as_env_vars_from_the_secrets_context():
    text = WORKFLOW.read_text()
    wf = _workflow()
    for job_id, job in wf["jobs"].items():
        for name, value in (job.get("env") or {}).items():
            if "secrets." in str(value):
                assert value == f"${{{{ secrets.{name} }}}}", f"{job_id}: {name}"
        for step in job["steps"]:
            assert "secrets." not in str(step.get("run", "")), f"{job_id}: a secret inlined into a command"
            assert "secrets." not in str(step.get("with", "")), f"{job_id}: a secret passed to an action"
    assert text.count("secrets.") == sum(1 for j in wf["jobs"].values() for v in (j.get("env") or {}).values()
                                         if "secrets." in str(v))
    assert wf["permissions"] == {"contents": "read"}


def test_actions_are_pinned_to_a_commit():
    for job in _workflow()["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]


def test_makefile_targets_map_one_to_one_onto_the_stages():
    assert _make_targets() == ["bootstrap", *STAGES]
    assert _make_dry_run("bootstrap") == ["./scripts/bootstrap.sh"]
    for target, expected in STAGES.items():
        assert _make_dry_run(target) == [expected], target
    # by default a target uses the checkout's .venv, like the workflow's steps
    assert subprocess.run(["make", "--no-print-directory", "-n", "-C", str(ROOT), "scan"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[-1] == ".venv/bin/inv ci.scan"


def test_ci_run_runs_the_readme_test_command_verbatim():
    ci_run = (ROOT / ".ci/run").read_text().strip().splitlines()[-1]
    assert ci_run == "./scripts/bootstrap.sh && .venv/bin/inv ci.lint && .venv/bin/inv ci.test && .venv/bin/inv ci.scan"
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, flags=re.S)
    assert blocks[0] == "./scripts/bootstrap.sh && .venv/bin/inv deploy --env local"
    assert blocks[1] == ci_run
    # each piece is one of the pipeline's own stages
    pieces = [_inv(p) for p in ci_run.split("&&")][1:]
    assert pieces == [STAGES["lint"], STAGES["test"], STAGES["scan"]]
    assert all(shlex.split(p)[0] == "inv" for p in pieces)


def test_scan_covers_every_scanner_the_issue_names_and_lint_is_the_fast_subset():
    assert set(names("scan")) >= {"ruff", "shellcheck", "hadolint", "yamllint", "bandit", "detect-secrets",
                                  "checkov-docker", "checkov-k8s", "pip-audit"}
    assert set(names("lint")) == {"ruff", "yamllint", "shellcheck", "hadolint", "workflow-schema", "promtool-rules"}
    assert len({s.name for s in SCANNERS}) == len(SCANNERS)  # each scanner is defined once
