"""Plan tests for the Kubernetes deploy, rollback and scale-down: each file in k8s_plans/ is one case.

A scripted executor stands in for the cluster: it answers each kubectl command with the output a
cluster gave for it (recorded in the case file) and the test compares the exact, ordered command
sequence the library produced. This proves the decisions and the argv, not that a cluster accepts
them (tests/e2e/test_k8s_live.py does that where a cluster exists). The executor is the suite's one
kubectl replay (tests/kubectl_replay.py). Cases that render the overlays run `kubectl kustomize` and
kubernetes-validate for real on the committed files: those are in the tools tier
(tests/tools/test_k8s_plan.py); the rest run here, in-process.
"""
import datetime as dt
import json
import re
import sys
from pathlib import Path

import pytest

from iosops.commands.kubectl import SMOKE_SCRIPT
from iosops.config import load_env
from iosops.errors import IosopsError
from iosops.k8s import backup as kbackup
from iosops.k8s import deploy as kdeploy
from iosops.runner import by_argv, Runner
from tests.kubectl_replay import ScriptedCluster

CASES = sorted((Path(__file__).parent / "k8s_plans").glob("*.json"))


def renders(case: Path) -> bool:
    """The case reaches `kubectl kustomize`: it needs the real local tools (the tools tier runs it)."""
    return any(line.startswith("kubectl kustomize ") for line in json.loads(case.read_text())["expected_commands"])


IN_PROCESS = [c for c in CASES if not renders(c)]
RENDERING = [c for c in CASES if renders(c)]


def normalize(line: str, state: Path) -> str:
    line = line.replace(str(state), "$STATE")
    line = re.sub(r"/tmp/iosops-k8s-[A-Za-z0-9_-]+", "$TMP", line)
    line = re.sub(r"\(\d+ bytes,", "(N bytes,", line)  # the size changes with every manifest edit
    line = line.replace(str(Path(sys.executable).parent / "kubernetes-validate"), "kubernetes-validate")
    import shlex
    line = line.replace(shlex.quote(SMOKE_SCRIPT), "$SMOKE")
    return line


def ticking(start):
    t = [start - dt.timedelta(seconds=1)]

    def now():
        t[0] += dt.timedelta(seconds=1)
        return t[0]
    return now


def no_sleep(_s):
    return None


def run_case(spec, tmp_path, monkeypatch, local=None):
    for k_, v in spec.get("environ", {}).items():
        monkeypatch.setenv(k_, v)
    env = load_env(spec["env"], environ={"IOSOPS_STATE_DIR": str(tmp_path)}, overrides=spec.get("overrides"))
    cluster = ScriptedCluster(spec["responses"], local=local)
    runner = Runner(executor=by_argv(cluster), say=lambda _l: None, dry_run=spec.get("dry_run", False))
    now = dt.datetime.strptime(spec.get("now", "2026-11-27T22:00:00Z"), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    fn = {"deploy": lambda: kdeploy.deploy(env, runner, spec.get("tag", ""), now=lambda: now),
          "rollback": lambda: kdeploy.rollback(env, runner, now=lambda: now),
          "scale_down": lambda: kdeploy.scale_down(env, runner, force=spec.get("force", False), now=lambda: now),
          # backups (iosops/k8s/backup.py): the clock ticks a second per Job name; polls never sleep
          "backup": lambda: kbackup.backup(env, runner, spec.get("only", ""), now=ticking(now), sleep=no_sleep),
          "restore": lambda: kbackup.restore(env, runner, backup_id=spec.get("backup", ""), to_time=spec.get("to_time", ""),
                                             latest=spec.get("latest", False), only=spec.get("only", ""),
                                             now=ticking(now), sleep=no_sleep),
          "backups_list": lambda: kbackup.list_backups(env, runner, now=ticking(now), sleep=no_sleep),
          "backups_verify": lambda: kbackup.verify(env, runner, spec.get("id", ""), spec.get("all", False),
                                                   now=ticking(now), sleep=no_sleep),
          "backups_prune": lambda: kbackup.prune(env, runner, spec.get("force", False), now=ticking(now), sleep=no_sleep),
          }[spec["action"]]
    error, code, result = None, 0, None
    try:
        result = fn()
    except IosopsError as exc:
        error, code = str(exc), exc.exit_code
    spec["_result"] = result
    plan = [normalize(str(a), tmp_path) for a in runner.actions]
    return plan, error, code, cluster


@pytest.mark.parametrize("case", IN_PROCESS, ids=lambda p: p.stem)
def test_plan(case, tmp_path, monkeypatch):
    check_case(case, tmp_path, monkeypatch)


def check_case(case, tmp_path, monkeypatch, local=None):
    spec = json.loads(case.read_text())
    plan, error, code, cluster = run_case(spec, tmp_path, monkeypatch, local)
    assert code == spec["expected_exit"], error
    if spec.get("expected_error"):
        assert spec["expected_error"] in (error or ""), error
        assert "\n" not in error
    assert plan == spec["expected_commands"]
    assert not cluster.responses, f"recorded answers never asked for: {cluster.responses}"
    if spec.get("dry_run"):  # only the reads reached the executor (it has no answer for anything else)
        assert not (tmp_path / "k8s").exists() and cluster.stdin == []
    if code == 2:  # bad input: nothing that changes anything ran (but the Job whose container said so)
        job_plumbing = re.compile(r"^(write \$STATE/k8s/\w+/ios-[\w-]+\.json |kubectl .* (create --filename|logs --follow) )")
        assert all(line.endswith("# read") or job_plumbing.match(line) for line in plan), plan
    for value in filter(None, spec.get("environ", {}).values()):  # secret values never in plan or error
        assert value not in "\n".join(plan) + (error or "")
    if "expected_result" in spec:  # the in-container JSON (or the restore's summary), as returned
        got = spec["_result"]
        assert {k_: got.get(k_) for k_ in spec["expected_result"]} == spec["expected_result"], got
    if spec.get("expected_jobs"):  # the Job manifests written for `kubectl create`: what each pod runs
        for name, want in spec["expected_jobs"].items():
            job = json.loads((tmp_path / "k8s" / spec["env"] / f"{name}.json").read_text())
            pod = job["spec"]["template"]["spec"]
            c = pod["containers"][0]
            got = {"args": c["args"], "backoffLimit": job["spec"]["backoffLimit"],
                   "ttlSecondsAfterFinished": job["spec"]["ttlSecondsAfterFinished"],
                   "secret_keys": [i["key"] for v in pod["volumes"] if v["name"] == "ops-secrets"
                                   for i in v["secret"]["items"]],
                   "volumes": sorted(v["name"] for v in pod["volumes"]),
                   "runAsUser": pod["securityContext"]["runAsUser"]}
            assert {k_: got[k_] for k_ in want} == want, (name, got)
    if spec.get("expected_stdin_keys"):
        docs = [json.loads(s) for s in cluster.stdin]
        assert [(d["kind"], d["metadata"]["name"], sorted(d["data"])) for d in docs] == \
            [tuple(x[:2]) + (x[2],) for x in spec["expected_stdin_keys"]]


def test_there_are_plan_cases():
    names = {c.stem for c in CASES}
    assert {"deploy_good", "deploy_rollout_fails", "deploy_smoke_fails", "rollback_in_window"} <= names
    assert IN_PROCESS and RENDERING and sorted(IN_PROCESS + RENDERING) == CASES


if __name__ == "__main__":  # record: print a case's plan to review and paste into expected_commands
    import tempfile
    from _pytest.monkeypatch import MonkeyPatch

    from tests.tools.test_k8s_plan import run_for_real

    spec = json.loads(Path(sys.argv[1]).read_text())
    with tempfile.TemporaryDirectory() as d:
        plan, error, code, _ = run_case(spec, Path(d), MonkeyPatch(), run_for_real)
    print(json.dumps({"expected_exit": code, "error": error, "expected_commands": plan}, indent=1))
