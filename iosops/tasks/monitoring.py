from invoke import task
from invoke.exceptions import Exit

from ._common import DRY_HELP, ENV_HELP, JSON_HELP, emit, emit_plan, mutating, task_env, new_runner

MON_IMAGES = ("python", "postgres", "redis", "prometheus", "alertmanager", "postgres_exporter",
              "redis_exporter", "node_exporter")


@task(help={"env": ENV_HELP, "static_only": "Skip the live part (no containers): promtool, amtool, coverage, "
            "runbooks, dashboards only", "tag": "Run this API image tag in the live part instead of building one",
            "keep": "Leave the live check's throwaway stack running (remove it with `inv down`)",
            "dry_run": DRY_HELP, "json_": JSON_HELP})
def check(c, env=None, static_only=False, tag="", keep=False, dry_run=False, json_=False):
    """Check monitoring as code: promtool check/test, amtool, a firing and a quiet test per alert, runbooks,
    dashboards (for --env); then live, always on this machine: a throwaway local stack scraped by a real
    Prometheus must return data for every API, PostgreSQL and Redis dashboard query."""
    from iosops.monitoring import static

    with task_env(env) as e:
        report = static.run(e, new_runner(as_json=json_))
    data = {"static": {"ok": report.ok, "alerts": report.alerts, "test_cases": report.test_cases,
                       "firing_cases": report.firing_cases, "quiet_cases": report.quiet_cases,
                       "dashboards": report.dashboards, "dashboard_queries": report.dashboard_queries,
                       "checks": [c_.__dict__ for c_ in report.checks]}}
    lines = static.lines(report)
    if not report.ok or static_only:
        emit(data, json_, lines)
        if not report.ok:
            raise Exit(code=1)
        return
    from iosops.images.image import build_image, image_ref
    from iosops.images.offline import build_offline
    from iosops.monitoring import live

    # The live part always runs on this machine: a throwaway copy of the local env's stack.
    with mutating("monitoring.check", "local", {"tag": tag, "keep": keep, "env": env}, dry_run=dry_run,
                  as_json=json_, here=True) as (e, runner):
        build_offline(e, runner, MON_IMAGES)
        image = image_ref(e, tag) if tag else build_image(e, runner).image
        lreport = live.live_check(e, runner, image, keep=keep)
    if dry_run:
        emit_plan(runner, json_)
        return
    data["live"] = {"ok": lreport.ok, "stack": lreport.stack, "kept": keep, "targets": lreport.targets,
                    "rules_evaluated": lreport.rules_evaluated, "alertmanagers": lreport.alertmanagers,
                    "firing": lreport.firing, "problems": lreport.problems, "seconds": lreport.seconds,
                    "queries": [r.__dict__ for r in lreport.results]}
    emit(data, json_, lines + live.lines(lreport))
    if not lreport.ok:
        raise Exit(code=1)


@task(help={"env": ENV_HELP, "tag": "Run this API image tag instead of building one", "dry_run": DRY_HELP,
            "json_": JSON_HELP})
def up(c, env=None, tag="", dry_run=False, json_=False):
    """Run the local stack (as `inv up`) plus the `monitoring` profile of docker/compose.yml in the same
    compose project: Prometheus, Alertmanager, the PostgreSQL/Redis/node exporters (published on loopback:
    monitoring.prometheus_port, monitoring.alertmanager_port); `inv down` removes them with the stack."""
    from iosops.images.image import build_image, image_ref
    from iosops.images.offline import build_offline
    from iosops.monitoring.stack import up as mon_up
    from iosops.stack.local import QUICK
    from iosops.stack.local import up as stack_up

    with mutating("monitoring.up", env, {"tag": tag}, dry_run=dry_run, as_json=json_, here=True) as (e, runner):
        build_offline(e, runner, MON_IMAGES)
        image = image_ref(e, tag) if tag else build_image(e, runner).image
        stack = stack_up(e, runner, image, (QUICK, "monitoring"))
        result = mon_up(e, runner)
    if dry_run:
        emit_plan(runner, json_)
        return
    emit({"stack": stack.__dict__, "monitoring": result.__dict__}, json_, [
        f"stack {stack.stack}: API {stack.url}; Prometheus {result.prometheus_url}; Alertmanager {result.alertmanager_url}",
        f"changed: {', '.join(result.changed) or 'nothing'}; Slack webhook: {result.slack}",
        f"configs rendered in {result.config_dir}   ·   stop: inv down --env {e.name}"])


@task(help={"dry_run": DRY_HELP})
def dashboards(c, dry_run=False):
    """Regenerate monitoring/grafana/dashboards/*.json from iosops/monitoring/dashboards.py."""
    from iosops.monitoring import DASHBOARDS_DIR
    from iosops.monitoring.dashboards import all_rendered

    runner = new_runner(dry_run=dry_run)
    changed = []
    for name, text in all_rendered().items():
        path = DASHBOARDS_DIR / name
        if path.is_file() and path.read_text() == text:
            continue
        runner.write_file(path, text)
        changed.append(name)
    print(f"{'would write' if dry_run else 'wrote'} {', '.join(changed)}" if changed else "no change: dashboards are up to date")
