"""The CI/CD pipeline, offline: the workflow's seven stages, the Makefile's targets and .ci/run/README call
exactly the expected `inv` commands, so the three cannot drift apart; and the tag the build job made is the
one every later job ships (job outputs, not a rebuild or a missing --tag). (The workflow's schema is checked
by `inv ci.lint`, scanner workflow-schema.)
The checks that run the real programs are in the tools tier: tests/tools/test_pipeline.py."""
import re
import shlex

import yaml

from iosops.ci.scan import SCANNERS, names
from tests.conftest import ROOT

WORKFLOW = ROOT / ".github/workflows/ci-cd.yml"
# stage (workflow job id == Makefile target) -> the one inv call it makes, in pipeline order.
# "$TAG" is the job's TAG env var (the build job's output) in the workflow, make's TAG=... on a laptop.
STAGES = {
    "lint": "inv ci.lint",
    "test": "inv ci.test",
    "scan": "inv ci.scan",
    "build": "inv build --push",
    "deploy-staging": 'inv deploy --env staging --tag "$TAG"',
    "promote-prod": 'inv images.promote --tag "$TAG" --from-env staging --to-env prod',
    "deploy-prod": 'inv deploy --env prod --tag "$TAG"',
}
# The jobs that ship the build's release: each gets the tag from the build job's outputs.
RELEASE = ("deploy-staging", "promote-prod", "deploy-prod")
TAG_FROM_BUILD = "${{ needs.build.outputs.tag }}"
INV_CALL = re.compile(r"^(?:\.venv/bin/)?inv\b")


def _inv(command: str) -> str:
    """`.venv/bin/inv ci.lint` -> `inv ci.lint`; anything else unchanged."""
    return INV_CALL.sub("inv", command.strip())


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _needs(job: dict) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs)


def test_every_stage_is_one_job_making_exactly_its_inv_call():
    jobs = _workflow()["jobs"]
    assert list(jobs) == list(STAGES)
    for job_id, expected in STAGES.items():
        runs = [s["run"] for s in jobs[job_id]["steps"] if "run" in s]
        inv_calls = [_inv(r) for r in runs if _inv(r).startswith("inv ")]
        assert inv_calls == [expected], job_id
        # the only other step is the machine setup, the same one a laptop runs
        assert [r for r in runs if not _inv(r).startswith("inv ")] == ["./scripts/bootstrap.sh"], job_id
        # no ${{ }} expression is spliced into a command line (script injection): values arrive as env vars
        assert all("${{" not in r for r in runs), job_id


def test_stages_are_chained_in_order_and_only_main_builds_and_deploys():
    jobs = _workflow()["jobs"]
    order = list(STAGES)
    assert "needs" not in jobs["lint"]
    for prev, job_id in zip(order, order[1:], strict=False):
        needs = _needs(jobs[job_id])
        assert prev in needs, job_id
        # besides its predecessor a job may only need the build (for the tag output)
        assert set(needs) <= {prev, "build"}, job_id
    assert "refs/heads/main" in jobs["build"]["if"] and "push" in jobs["build"]["if"]


def test_the_tag_the_build_made_flows_to_staging_promotion_and_prod():
    """The bug this guards: `inv deploy --env prod` without --tag exits 2 on a Kubernetes env ("image tag
    missing"), and staging without --tag rebuilt the tree on its runner instead of shipping the build."""
    jobs = _workflow()["jobs"]
    build = jobs["build"]
    # the build job exports what its `inv build --push` step wrote to $GITHUB_OUTPUT
    (step,) = [s for s in build["steps"] if _inv(s.get("run", "")) == STAGES["build"]]
    assert build["outputs"] == {"tag": f"${{{{ steps.{step['id']}.outputs.tag }}}}"}
    for job_id in RELEASE:
        job = jobs[job_id]
        # `needs` carries outputs of direct dependencies only: the build must be one of them
        assert "build" in _needs(job), job_id
        assert job["env"]["TAG"] == TAG_FROM_BUILD, job_id
        (run,) = [_inv(s["run"]) for s in job["steps"] if _inv(s.get("run", "")).startswith("inv ")]
        argv = shlex.split(run)
        assert argv[argv.index("--tag") + 1] == "$TAG", job_id
    # prod deploys only what was promoted into its registry, and promotion only what staging deployed
    assert "promote-prod" in _needs(jobs["deploy-prod"]) and "deploy-staging" in _needs(jobs["promote-prod"])
    assert jobs["promote-prod"]["runs-on"] == jobs["deploy-prod"]["runs-on"] == ["self-hosted", "ios-prod"]


def test_scan_job_requires_pip_audit_to_audit():
    # hosted runners reach the vulnerability services; offline machines (this one, .ci/run) do not set it
    assert _workflow()["jobs"]["scan"]["env"]["IOSOPS_PIP_AUDIT_REQUIRED"] == "1"
    assert "IOSOPS_PIP_AUDIT_REQUIRED" not in (ROOT / ".ci/run").read_text()


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


def test_each_deploy_job_gets_every_secret_its_env_names():
    """`inv deploy` reads every secret of its env (the datastores' roles, backups to the store, notifications):
    a reference the job does not set exits 2 on the first real deploy, which no test on this machine sees."""
    wf = _workflow()["jobs"]
    for job, env in (("deploy-staging", "staging"), ("deploy-prod", "prod")):
        wanted = set(re.findall(r"\{env: *(IOS_[A-Z0-9_]+)\}", (ROOT / f"envs/{env}.yaml").read_text()))
        assert len(wanted) >= 10, (env, wanted)  # the reader found the references
        given = wf[job].get("env", {})
        missing = sorted(v for v in wanted if given.get(v) != f"${{{{ secrets.{v} }}}}")
        assert not missing, f"{job}: add to its env (NAME: ${{{{ secrets.NAME }}}}): {', '.join(missing)}"


def test_actions_are_pinned_to_a_commit():
    for job in _workflow()["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]


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
