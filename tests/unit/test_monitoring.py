"""Monitoring as code, offline: promtool/amtool on the real files, the coverage rule (every alert has a
firing and a quiet promtool test), runbooks, dashboards' structure, and that each checker really fails
on a broken input (a checker that cannot fail proves nothing).
The checks that run the real programs are in the tools tier: tests/tools/test_monitoring.py."""
import json
import shutil
from pathlib import Path

import pytest
import yaml

from iosops.config import load_env
from iosops.errors import BadInput
from iosops.monitoring import (ALERTMANAGER_DIR, DASHBOARDS_DIR, PROVISIONING_DIR, RULE_TESTS_DIR, RULES_DIR,
                               RUNBOOKS_DIR, dashboards, grafana, rules, static)
from iosops.monitoring import stack as mstack
from iosops.runner import by_argv, Result, Runner


@pytest.fixture
def copy_tree(tmp_path):
    """Copies of rules, tests and runbooks that a test may break."""
    for src, name in ((RULES_DIR, "rules"), (RULE_TESTS_DIR, "tests"), (RUNBOOKS_DIR, "runbooks")):
        shutil.copytree(src, tmp_path / name)
    return tmp_path


# -- alerts, tests, runbooks --------------------------------------------------------------------------
def test_at_least_25_alerts_each_with_firing_and_quiet_test_and_runbook():
    problems, found, cov = rules.problems()
    assert problems == []
    assert len(found) >= 25
    assert all(cov.firing[a.name] >= 1 and cov.quiet[a.name] >= 1 for a in found)
    areas = {Path(a.file).stem for a in found}
    assert {"api", "postgres", "redis", "elasticsearch", "kubernetes", "backup", "platform"} <= areas


def test_an_alert_without_tests_fails_the_coverage_check(copy_tree):
    f = copy_tree / "rules" / "api.yml"
    data = yaml.safe_load(f.read_text())
    data["groups"][0]["rules"].append({"alert": "IosApiUntested", "expr": "up == 0", "labels": {"severity": "warning"},
                                       "annotations": {"summary": "s", "description": "d",
                                                       "runbook_url": "docs/runbooks/IosApiUntested.md"}})
    f.write_text(yaml.safe_dump(data))
    problems, _, _ = rules.problems(copy_tree / "rules", copy_tree / "tests", copy_tree / "runbooks")
    assert any("IosApiUntested: no promtool test case where it fires" in p for p in problems)
    assert any("IosApiUntested: no promtool test case where it stays quiet" in p for p in problems)
    assert any("IosApiUntested: runbook docs/runbooks/IosApiUntested.md does not exist" in p for p in problems)


def test_an_alert_with_only_a_firing_test_fails(copy_tree):
    f = copy_tree / "tests" / "redis_test.yml"
    data = yaml.safe_load(f.read_text())
    data["tests"] = [t for t in data["tests"] if t["name"] != "RedisDown stays quiet while redis_up is 1"]
    f.write_text(yaml.safe_dump(data))
    problems, _, _ = rules.problems(copy_tree / "rules", copy_tree / "tests", copy_tree / "runbooks")
    assert problems == ["RedisDown: no promtool test case where it stays quiet (exp_alerts: [])"]


def test_a_runbook_must_say_what_to_do(copy_tree):
    rb = copy_tree / "runbooks" / "RedisDown.md"
    rb.write_text(rb.read_text().split("## Fix")[0])
    problems, _, _ = rules.problems(copy_tree / "rules", copy_tree / "tests", copy_tree / "runbooks")
    assert problems == ["RedisDown: docs/runbooks/RedisDown.md needs a 'Fix' section with steps"]


def test_alert_needs_severity_and_annotations(copy_tree):
    f = copy_tree / "rules" / "redis.yml"
    data = yaml.safe_load(f.read_text())
    rule = data["groups"][0]["rules"][0]
    rule["labels"]["severity"] = "page"
    del rule["annotations"]["description"]
    f.write_text(yaml.safe_dump(data))
    problems, _, _ = rules.problems(copy_tree / "rules", copy_tree / "tests", copy_tree / "runbooks")
    assert any("RedisDown" in p and "severity must be one of" in p for p in problems)
    assert any("RedisDown" in p and "missing annotation description" in p for p in problems)


def test_targets_come_from_config_and_unknown_jobs_are_refused():
    env = load_env("local", environ={}, overrides={"monitoring": {"targets": {"nginx": ["edge:9113"]}}})
    assert mstack.targets(env)["nginx"] == ["edge:9113"]
    bad = load_env("local", environ={}, overrides={"monitoring": {"targets": {"ngnix": ["edge:9113"]}}})
    with pytest.raises(BadInput, match="unknown job.*ngnix"):
        mstack.targets(bad)


def test_walstream_is_scraped_on_compose_and_kubernetes():
    """Job `walstream` on both variants: the compose service from staging's targets, the ios-walstream pods
    on port 9898 in the cluster; a local stack has none (WalStreamDown then says "no walstream target")."""
    staging = yaml.safe_load(mstack.render_prometheus(load_env("staging", environ={}))["targets/walstream.yml"])
    assert staging == [{"targets": ["walstream:9898"], "labels": {"env": "staging"}}]
    assert yaml.safe_load(mstack.render_prometheus(load_env("local", environ={}))["targets/walstream.yml"]) == []
    k8s = yaml.safe_load((static.PROMETHEUS_DIR / "prometheus-k8s.yml").read_text())
    job = next(sc for sc in k8s["scrape_configs"] if sc["job_name"] == "walstream")
    keeps = {r["source_labels"][0]: r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"}
    assert keeps == {"__meta_kubernetes_pod_label_app_kubernetes_io_name": "ios-walstream",
                     "__meta_kubernetes_pod_container_port_number": "9898"}


def test_bad_monitoring_setting_is_bad_input():
    with pytest.raises(BadInput, match="monitoring.scrape_interval"):
        load_env("local", environ={}, overrides={"monitoring": {"scrape_interval": "fast"}})


def test_alertmanager_config_holds_no_webhook_and_inhibits_latency_when_api_is_down():
    text = (ALERTMANAGER_DIR / "alertmanager.yml").read_text()
    cfg = yaml.safe_load(text)
    assert "hooks.slack.com" not in text and "api_url:" not in text
    slack = [sc for r in cfg["receivers"] for sc in r.get("slack_configs", [])]
    assert slack and all(sc["api_url_file"] == mstack.SLACK_IN_CONTAINER for sc in slack)
    api_down = [r for r in cfg["inhibit_rules"] if r["source_matchers"] == ['alertname="IosApiDown"']]
    assert api_down and "IosApiHighLatency" in api_down[0]["target_matchers"][0]
    # every alert name an inhibition mentions exists
    names = {a.name for a in rules.alerts()}
    import re
    mentioned = {n for r in cfg["inhibit_rules"] for m in r["source_matchers"] + r["target_matchers"]
                 for n in re.findall(r"[A-Z][A-Za-z]+", m.split("=", 1)[1]) if m.startswith("alertname")}
    assert mentioned <= names


def test_missing_slack_secret_is_bad_input_unless_optional(tmp_path):
    env = load_env("staging", environ={})
    with pytest.raises(BadInput, match="secrets.slack_webhook_url is not available \\(env IOS_STAGING_SLACK_WEBHOOK_URL\\)"):
        mstack.slack_secret(env)
    local = load_env("local", environ={}, overrides={"secrets": {"slack_webhook_url": {"file": str(tmp_path / "none")}}})
    secret, note = mstack.slack_secret(local)
    assert secret is None and "Slack notifications will fail" in note


def test_monitoring_up_dry_run_plan_names_secrets_never_values(tmp_path):
    """Dry-run with probes answered by an executor: the plan starts the monitoring profile's five services of
    docker/compose.yml in the stack's compose project (no container defined here), the webhook URL goes
    to the project's secret file only, and neither it nor the DB password appears in the plan."""
    hook = tmp_path / "hook"
    hook.write_text("https://hooks.example.invalid/services/T0/B0/sekrit-webhook-value")
    pw = tmp_path / "pw"
    pw.write_text("sekrit-db-password")
    env = load_env("local", environ={"IOSOPS_STATE_DIR": str(tmp_path / "state")}, overrides={
        "secrets": {"slack_webhook_url": {"file": str(hook)}, "postgres_password": {"file": str(pw)}}})

    def executor(argv, **kw):
        if "ps" in argv and "label=com.docker.compose.service=postgres" in argv:
            return Result(0, "cid0123456789\n")
        return Result(1, "", "No such object")

    runner = Runner(dry_run=True, executor=by_argv(executor), say=lambda s: None)
    mstack.up(env, runner)
    plan = "\n".join(runner.plan())
    ups = [line for line in runner.plan() if " up --detach " in line]
    assert len(ups) == 1 and ups[0].endswith("up --detach --no-deps --no-build " + " ".join(mstack.MON_SERVICES))
    assert "--project-name iosops-local " in ups[0] and "--profile monitoring" in ups[0]
    assert " run " not in plan  # no plain container anywhere
    assert "sekrit" not in plan
    assert any(line.startswith("write ") and line.split()[1].endswith("secrets/slack_webhook_url")
               for line in runner.plan())
    assert not (tmp_path / "state").exists()  # dry-run wrote nothing


def test_monitoring_up_refuses_without_the_stack(tmp_path):
    env = load_env("local", environ={"IOSOPS_STATE_DIR": str(tmp_path / "state")})
    runner = Runner(executor=by_argv(lambda argv, **kw: Result(0, "")), say=lambda s: None)
    with pytest.raises(BadInput, match="is not running .*inv monitoring.up --env local"):
        mstack.up(env, runner)


# -- dashboards ------------------------------------------------------------------------------------------
def test_five_dashboards_valid_and_generated():
    assert grafana.problems() == []
    dashes = grafana.load_dashboards()
    assert {d["uid"] for d in dashes.values()} == {"ios-api", "ios-postgres", "ios-redis", "ios-elasticsearch", "ios-platform"}
    platform = next(d for d in dashes.values() if d["uid"] == "ios-platform")
    assert any("backup" in p["title"].lower() for p in platform["panels"])


def test_dashboard_validator_catches_broken_dashboards(tmp_path):
    d = tmp_path / "dashboards"
    shutil.copytree(DASHBOARDS_DIR, d)
    f = d / "ios-redis.json"
    dash = json.loads(f.read_text())
    dash["panels"][1]["gridPos"] = dict(dash["panels"][0]["gridPos"])        # overlap
    dash["panels"][2]["datasource"] = {"type": "prometheus", "uid": "nope"}  # unprovisioned datasource
    dash["panels"][3]["targets"][0]["expr"] = 'redis_up{instance=~"$host"}'  # undeclared variable
    f.write_text(json.dumps(dash))
    problems = grafana.problems(d, PROVISIONING_DIR)
    assert any("overlaps another panel" in p for p in problems)
    assert any("datasource uid 'nope' is not provisioned" in p for p in problems)
    assert any("undeclared variable $host" in p for p in problems)
    assert any("ios-redis.json differs from iosops/monitoring/dashboards.py" in p for p in problems)


def test_provisioning_files_are_checked(tmp_path):
    prov = tmp_path / "prov"
    shutil.copytree(PROVISIONING_DIR, prov)
    (prov / "datasources" / "prometheus.yml").write_text("apiVersion: 1\ndatasources:\n  - name: P\n    type: prometheus\n")
    problems = grafana.problems(DASHBOARDS_DIR, prov)
    assert any("lacks uid" in p for p in problems) and any("lacks url" in p for p in problems)


def test_variables_are_substituted_like_grafana():
    dash = dashboards.render("ios-postgres")
    qs = grafana.queries(dash)
    assert qs[0].ref == "var" and qs[0].expr == "group by (instance) (pg_up)"
    assert all("$" not in q.expr for q in qs)
    assert grafana.substitute('rate(x{a=~"$v"}[$__rate_interval])', {"v": ".+", "__rate_interval": "1m"}) == 'rate(x{a=~".+"}[1m])'


# -- the live check's backup services ----------------------------------------------------------------------
def test_the_check_requires_the_backup_row_of_the_platform_dashboard():
    """The platform dashboard's Backups row must show data on the check stack (its drill panels excused
    by name, with a reason); its Kubernetes and hosts rows are reported only."""
    backups = [p[0] for p in dashboards.DASHBOARDS["ios-platform"]["panels"][1:7]]
    assert all(dashboards.live_required("ios-platform", t) for t in backups)
    assert {t for t in backups if dashboards.expected_empty("ios-platform", t)} == {"Last drill RTO", "Last drill RPO"}
    assert not dashboards.live_required("ios-platform", "CPU busy")
    assert not dashboards.live_required("ios-platform", "Pods not running")
    assert dashboards.live_required("ios-api", "Request rate")
    assert not dashboards.live_required("ios-elasticsearch", "Nodes")


def test_check_stack_runs_compose_walstream_in_the_stack_project(tmp_path):
    """ops.start with every command answered by an executor: compose.yml's walstream is started in the check
    stack's own compose project (the one `inv up` made: same networks and volumes, no override), with the
    ops profile; the check's store and metrics folder live in that project's directory."""
    from iosops.monitoring import live
    from iosops.monitoring import ops as mops
    from iosops.stack.local import project_dir

    base = load_env("local", environ={"IOSOPS_STATE_DIR": str(tmp_path / "state")})
    env = live.check_env(base)
    name, pdir = env.cfg.stack.name, Path(project_dir(env))
    assert mstack.targets(env)["walstream"] == ["walstream:9898"]
    assert env.path(env.cfg.backup.store.path) == pdir / "check" / "store"
    assert env.path(env.cfg.backup.metrics_file).parent == pdir / "check" / "metrics"
    assert mstack.config_dir(env) == pdir / "monitoring"

    calls = []

    def executor(argv, **kw):
        calls.append(list(map(str, argv)))
        if "ps" in argv and "--quiet" in argv:
            return Result(0, "cid0123456789\n")
        if argv[1:3] == ["inspect", "--format"]:
            return Result(0, "healthy\n" if "Health" in argv[3] else "sha256:x\n")
        return Result(0, "")

    t, res = mops.start(env, Runner(executor=by_argv(executor), say=lambda s: None), "iosops/ops:t1", 5)
    assert res.walstream == ["cid0123456789"] and res.project_dir == str(pdir)
    up = [a for a in calls if "up" in a and "walstream" in a]
    assert len(up) == 1 and "--no-deps" in up[0] and up[0][-1] == "walstream"
    assert up[0][up[0].index("--project-name") + 1] == name and "ops" in up[0]
    assert str(pdir / "compose.yml") in up[0]
