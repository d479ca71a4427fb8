"""Webhook notifications against a real local HTTP receiver (tests/webhook_receiver.py stands in for
Slack, which is not reachable here): delivery and contents, retries on 500, a dead port, a hanging and a
trickling receiver (bounded), dry-run sends nothing; then through the real `inv k8s.deploy`,
`inv deploy --env prod` and `inv k8s.rollback` tasks, with a FAKE kubectl (tests/kubectl_replay.py, no
Kubernetes API server exists here) replaying recorded cluster answers. The compose path's messages are
checked in test_deploy_stack.py on its real stack; backups' in test_backup_reliability.py."""
import json
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

from iosops import notify
from iosops.config import load_env
from iosops.errors import BadInput, OperationFailed
from iosops.ops import AuditLog, operation
from iosops.runner import Runner
from iosops.secretref import redact
from tests.conftest import ROOT, free_port, run_inv
from tests.webhook_receiver import Receiver

CASES = ROOT / "tests/unit/k8s_plans"


@pytest.fixture(autouse=True)
def fresh_notifier_state():
    notify._degraded.clear()
    notify._warned.clear()


def env_with(tmp_path, url: str, **cfg):
    hook = tmp_path / "hook"
    hook.write_text(url)
    return load_env("local", environ={}, overrides={"state_dir": str(tmp_path / "state"), "notify": {
        "webhook_url": {"file": str(hook)}, "required": True, **cfg}})


def quiet_runner(dry_run=False):
    lines: list[str] = []
    return Runner(say=lines.append, dry_run=dry_run, plan_to_stdout=False), lines


def test_a_deploy_sends_start_then_success_naming_its_audit_line(tmp_path, monkeypatch):
    monkeypatch.setenv("IOSOPS_ACTOR", "alice@laptop")
    with Receiver() as rx:
        env = env_with(tmp_path, rx.url)
        runner, said = quiet_runner()
        with operation(env.state_dir, env.name, "deploy", {"tag": "abc123"}, dry_run=False):
            with notify.tracked(env, runner, "deploy", version="abc123", target="compose on local") as ev:
                ev.start(previous="old111")
                ev.set(summary="green is live")
    assert said == []  # no warning
    assert [m["attachments"][0]["title"] for m in rx.got] == ["Deploy started: local", "Deploy succeeded: local"]
    assert rx.paths == [rx.secret_path] * 2
    f = rx.fields()
    assert (f["Version"], f["Previous"], f["Who"], f["Outcome"]) == ("`abc123`", "`old111`", "alice@laptop", "succeeded")
    assert f["Target"] == "compose on local" and f["Summary"] == "green is live" and f["Duration"].endswith(" s")
    run = AuditLog(env.state_dir).tail(1)[0]["run"]
    # redact(): other tests in this process may have revealed short secrets ("test") that mask path parts
    assert f"run {run} in " in f["Audit"] and redact(str(env.state_dir / "audit.log")) in f["Audit"]
    assert rx.secret_path not in json.dumps(rx.got)


def test_failure_after_a_change_is_reported_as_rolled_back(tmp_path):
    with Receiver() as rx:
        env = env_with(tmp_path, rx.url)
        runner, _ = quiet_runner()
        with pytest.raises(OperationFailed):
            with notify.tracked(env, runner, "deploy", version="abc123") as ev:
                ev.start()
                raise OperationFailed("green answered 5xx; rolled back: traffic back on blue",
                                      rolled_back="traffic back on blue")
        with pytest.raises(OperationFailed):  # failed, nothing to undo
            with notify.tracked(env, runner, "rollback"):
                raise OperationFailed("nginx is not running; traffic stays on blue")
        with pytest.raises(BadInput):  # refused before anything started: the person sees it, no message
            with notify.tracked(env, runner, "deploy", version="abc123"):
                raise BadInput("unknown image")
    titles = [m["attachments"][0]["title"] for m in rx.got]
    assert titles == ["Deploy started: local", "Deploy FAILED, rolled back automatically: local",
                      "Rollback FAILED: local"]
    assert rx.fields(1)["Rolled back"] == "traffic back on blue" and "5xx" in rx.fields(1)["Error"]
    assert rx.fields(2)["Error"] == "nginx is not running; traffic stays on blue"


def test_retries_on_500_then_delivers(tmp_path):
    with Receiver(statuses=[500, 503, 200]) as rx:
        env = env_with(tmp_path, rx.url)
        runner, said = quiet_runner()
        assert notify.send(env, runner, notify.Event("backup", "success", "local", version="b1"))
    assert len(rx.got) == 3 and said == []


def test_a_4xx_is_final_one_warning_no_retry(tmp_path):
    with Receiver(statuses=[404]) as rx:
        env = env_with(tmp_path, rx.url)
        runner, said = quiet_runner()
        assert not notify.send(env, runner, notify.Event("backup", "success", "local", version="b1"))
    assert len(rx.got) == 1
    assert said == ["warning: notification (backup success) not delivered to the webhook (HTTP 404 after 1 "
                    "attempt); the backup itself is unaffected"]


def test_dead_webhook_one_warning_and_the_operation_goes_on(tmp_path):
    port = free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}/services/T0/B0/dead-hook-path-3e9"
    env = env_with(tmp_path, url)
    runner, said = quiet_runner()
    with notify.tracked(env, runner, "rollback", version="old111") as ev:
        ev.set(summary="traffic on blue")
        done = "the rollback's own work"
    assert done
    assert len(said) == 1 and said[0].startswith("warning: notification (rollback success) not delivered") \
        and "ConnectionError after 3 attempts" in said[0]
    assert "dead-hook-path" not in said[0] and str(port) not in said[0]
    # a later message of the same process gets a single attempt (the webhook is known dead)
    notify.send(env, runner, notify.Event("backup", "failure", "local"))
    assert "after 1 attempt)" in said[1]


@pytest.mark.parametrize("mode", ["hang", "trickle"])
def test_hanging_or_trickling_receiver_costs_a_bounded_time(tmp_path, mode):
    """A receiver that never answers, or answers one byte every 0.5 s (which per-read timeouts never
    catch): send() returns within notify.max_total_s, by the deadline join, with one warning."""
    with Receiver(mode=mode) as rx:
        env = env_with(tmp_path, rx.url, max_total_s=2, timeout_s=1)
        runner, said = quiet_runner()
        box = {}
        t = threading.Thread(target=lambda: box.update(ok=notify.send(
            env, runner, notify.Event("deploy", "start", "local", version="t"))), daemon=True)
        t0 = time.monotonic()
        t.start()
        t.join(30)  # the suite must not hang if the bound is broken
        took = time.monotonic() - t0
        assert not t.is_alive(), "send() did not return: the time bound is broken"
    assert box["ok"] is False and len(said) == 1 and "not delivered" in said[0], said
    assert took < 2 + 3  # the bound itself (2 s) plus thread start/teardown slack; not a speed goal
    assert rx.got  # it did reach the receiver


def test_dry_run_sends_nothing_and_shows_the_masked_webhook(tmp_path):
    with Receiver() as rx:
        env = env_with(tmp_path, rx.url)
        runner, said = quiet_runner(dry_run=True)
        with notify.tracked(env, runner, "deploy", version="abc123") as ev:
            ev.start(previous="old111")
    assert rx.got == []
    plan = runner.plan()
    assert len(plan) == 2 and all(p.startswith(f"notify: POST http://127.0.0.1:{rx.port}/*** (deploy ") for p in plan)
    assert "Deploy started · local · abc123 (was old111)" in plan[0]
    assert rx.secret_path not in "\n".join(plan + said)


def test_missing_webhook_secret_warns_once_or_stays_quiet(tmp_path):
    env = load_env("local", environ={}, overrides={"notify": {"webhook_url": {"file": str(tmp_path / "none")},
                                                              "required": True}})
    runner, said = quiet_runner()
    for _ in range(2):
        assert not notify.send(env, runner, notify.Event("deploy", "start", "local"))
    assert len(said) == 1 and "notify.webhook_url (file" in said[0] and "not available" in said[0]
    local = load_env("local", environ={}, overrides={"notify": {"webhook_url": {"file": str(tmp_path / "none")},
                                                                  "required": False}})
    runner, said = quiet_runner()
    assert not notify.send(local, runner, notify.Event("deploy", "start", "local")) and said == []


def test_backup_webhook_url_still_overrides_for_backups_only(tmp_path):
    with Receiver() as general, Receiver() as backups:
        hook = tmp_path / "backup-hook"
        hook.write_text(backups.url)
        env = env_with(tmp_path, general.url)
        env = load_env("local", environ={}, overrides={"notify": {"webhook_url": {"file": str(tmp_path / "hook")}},
                                                       "backup": {"webhook_url": {"file": str(hook)}}})
        runner, _ = quiet_runner()
        notify.send(env, runner, notify.Event("backup", "success", "local", version="b1"))
        notify.send(env, runner, notify.Event("deploy", "start", "local", version="t1"))
    assert [m["attachments"][0]["title"] for m in backups.got] == ["Backup OK: local"]
    assert [m["attachments"][0]["title"] for m in general.got] == ["Deploy started: local"]


# -- through the real tasks: `inv k8s.deploy`, `inv deploy --env prod`, `inv k8s.rollback` --------------

def fake_cluster(tmp_path, case: str, receiver_url: str) -> dict:
    """Env vars that make `inv --env prod` use the FAKE kubectl replaying `case`, and the receiver."""
    spec = tmp_path / f"{case}.json"
    shutil.copy(CASES / f"{case}.json", spec)
    wrapper = tmp_path / "kubectl"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {ROOT / 'tests/kubectl_replay.py'} \"$@\"\n")
    wrapper.chmod(0o755)
    return {"IOSOPS_K8S__KUBECTL": str(wrapper), "FAKE_KUBECTL_CASE": str(spec),
            "IOS_PROD_SLACK_WEBHOOK_URL": receiver_url, "IOSOPS_STATE_DIR": str(tmp_path / "state"),
            "IOSOPS_ACTOR": "carol@oncall"}


def replayed_everything(vars_) -> None:
    spec = Path(vars_["FAKE_KUBECTL_CASE"])
    n = int(Path(str(spec) + ".n").read_text())
    assert n == len(json.loads(spec.read_text())["responses"]), "the deploy did not ask the cluster for everything"


@pytest.mark.parametrize("task", [("k8s.deploy",), ("deploy",)])
def test_k8s_deploy_task_sends_start_and_success(tmp_path, task):
    with Receiver() as rx:
        vars_ = fake_cluster(tmp_path, "deploy_good", rx.url)
        proc = run_inv(*task, "--env", "prod", "--tag", "abc123", env=vars_)
    assert proc.returncode == 0, proc.stderr[-2000:]
    replayed_everything(vars_)
    assert [m["attachments"][0]["title"] for m in rx.got] == ["Deploy started: prod", "Deploy succeeded: prod"]
    f = rx.fields()
    assert (f["Version"], f["Previous"], f["Who"]) == ("`abc123`", "`old111`", "carol@oncall")
    assert f["Target"] == "kubernetes context ios-prod, namespace ios-prod" and "live on green" in f["Summary"]
    audit = AuditLog(Path(vars_["IOSOPS_STATE_DIR"])).tail(1)[0]
    assert audit["task"] == task[0] and audit["outcome"] == "ok" and f"run {audit['run']} in " in f["Audit"]
    # the command the message names finds exactly that line
    cmd = f["Audit"].split("`")[1].split()
    assert cmd[:2] == ["inv", "lock.audit"]
    found = run_inv(*cmd[1:], "--json", env=vars_)
    assert found.returncode == 0, (cmd, found.stdout, found.stderr)
    assert [r["run"] for r in json.loads(found.stdout)] == [audit["run"]], found.stderr
    assert rx.url not in proc.stdout + proc.stderr and "warning" not in proc.stderr


def test_k8s_deploy_whose_rollout_fails_reports_the_automatic_rollback(tmp_path):
    with Receiver() as rx:
        vars_ = fake_cluster(tmp_path, "deploy_rollout_fails", rx.url)
        proc = run_inv("k8s.deploy", "--env", "prod", "--tag", "abc123", env=vars_)
    assert proc.returncode == 1, proc.stderr[-2000:]
    replayed_everything(vars_)
    assert [m["attachments"][0]["title"] for m in rx.got] == [
        "Deploy started: prod", "Deploy FAILED, rolled back automatically: prod"]
    f = rx.fields()
    assert f["Rolled back"] == "ios-api-green back to revision 8; ios-api-green back to 0 replica(s)"
    assert "failed at rollout" in f["Error"] and "progress deadline" in f["Error"]
    assert AuditLog(Path(vars_["IOSOPS_STATE_DIR"])).tail(1)[0]["outcome"] == "failed"


def test_k8s_rollback_task_sends_a_rollback_message(tmp_path):
    with Receiver() as rx:
        vars_ = fake_cluster(tmp_path, "rollback_in_window", rx.url)
        proc = run_inv("k8s.rollback", "--env", "prod", env=vars_)
    assert proc.returncode == 0, proc.stderr[-2000:]
    replayed_everything(vars_)
    assert [m["attachments"][0]["title"] for m in rx.got] == ["Rollback done: prod"]
    f = rx.fields()
    assert f["Version"].strip("`") and f["Rolled back from"].strip("`") and f["Version"] != f["Rolled back from"]


def test_k8s_deploy_dry_run_plans_the_message_and_sends_nothing(tmp_path):
    with Receiver() as rx:
        vars_ = fake_cluster(tmp_path, "deploy_dry_run", rx.url)
        proc = run_inv("k8s.deploy", "--env", "prod", "--tag", "abc123", "--dry-run", env=vars_)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert rx.got == []
    lines = [l for l in proc.stdout.splitlines() if "notify: POST" in l]
    assert len(lines) == 2 and all(f"http://127.0.0.1:{rx.port}/***" in l for l in lines), proc.stdout
    assert rx.secret_path not in proc.stdout + proc.stderr


def test_k8s_deploy_with_a_dead_webhook_still_deploys(tmp_path):
    vars_ = fake_cluster(tmp_path, "deploy_good", f"http://127.0.0.1:{free_port()}/services/T/B/deadhook")
    proc = run_inv("k8s.deploy", "--env", "prod", "--tag", "abc123", env=vars_)
    assert proc.returncode == 0, proc.stderr[-2000:]
    replayed_everything(vars_)
    warnings = [l for l in proc.stderr.splitlines() if l.startswith("warning: notification")]
    assert len(warnings) == 2 and "(deploy start)" in warnings[0] and "(deploy success)" in warnings[1], proc.stderr
    assert "after 1 attempt)" in warnings[1]  # the webhook was known dead: no second round of retries
    assert "deadhook" not in proc.stdout + proc.stderr
