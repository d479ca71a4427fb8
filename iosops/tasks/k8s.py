from invoke import task

from ._common import DRY_HELP, ENV_HELP, JSON_HELP, emit, emit_plan, mutating, task_env, new_runner

TAG_HELP = "Image tag to render (default: the short git sha, as `inv build` tags it)"


def _render(e, runner, tag):
    from iosops.images.image import resolve_tag
    from iosops.k8s.render import render

    return render(e, runner, resolve_tag(e, runner, tag))


@task(help={"env": ENV_HELP, "tag": TAG_HELP, "output": "Write to this file instead of stdout"})
def render(c, env=None, tag="", output=""):
    """Render the env's kustomize overlay with the image tag (same bytes every time for the same input)."""
    from pathlib import Path


    with task_env(env) as e:  # turns a foreseeable error into one line and exit 2/1
        r = _render(e, new_runner(), tag)
    if output:
        Path(output).write_text(r.text)
    else:
        print(r.text, end="")


@task(help={"env": ENV_HELP, "tag": TAG_HELP, "json_": JSON_HELP})
def validate(c, env=None, tag="", json_=False):
    """Validate the rendered overlay with kubernetes-validate --strict for every k8s.validate_versions."""
    from iosops.k8s.render import check_secrets, validate as run_validate

    with task_env(env) as e:
        runner = new_runner()
        r = _render(e, runner, tag)
        check_secrets(e, r)
        out = run_validate(e, runner, r)
    out["kinds"] = r.counts()
    emit(out, json_, [f"{e.name}: {out['objects']} objects in k8s/overlays/{r.overlay} valid (--strict) for "
                      f"Kubernetes {', '.join(out['versions'])}", *[f"  note: {n}" for n in out["notes"]]])


@task(help={"env": ENV_HELP, "tag": TAG_HELP, "json_": JSON_HELP})
def policy(c, env=None, tag="", json_=False):
    """Policy-check the rendered overlay with checkov (.venv-checkov, --skip-download); skips need reasons."""
    from invoke.exceptions import Exit

    from iosops.k8s.render import policy as run_policy

    with task_env(env) as e:
        runner = new_runner()
        out = run_policy(e, runner, _render(e, runner, tag))
    s = out["summary"]
    lines = [f"{e.name}: checkov {s['checkov_version']}: {s['passed']} passed, {s['failed']} failed, "
             f"{s['skipped']} skipped (each with its reason)"]
    lines += [f"  FAILED {f['check']} {f['resource']}: {f['name']}" for f in out["failed"]]
    lines += [f"  skipped {x['check']} {x['resource']}: {x['reason']}" for x in out["skipped"]]
    emit(out, json_, lines)
    if out["failed"]:
        raise Exit(code=1)


@task(help={"env": ENV_HELP, "tag": "Image tag to deploy (required: the tag `inv build --push` made)",
            "dry_run": DRY_HELP, "json_": JSON_HELP, "verbose": "Show every command as it runs"})
def deploy(c, env=None, tag="", dry_run=False, json_=False, verbose=False):
    """Blue-green deploy: apply the idle colour, wait for its rollout, smoke-test it, switch traffic."""
    from iosops.k8s.deploy import deploy as run_deploy

    with mutating("k8s.deploy", env, {"tag": tag}, dry_run=dry_run, verbose=verbose, as_json=json_, here=True) as (e, runner):
        out = run_deploy(e, runner, tag)
    if dry_run:
        emit_plan(runner, json_)
        return
    emit(out.as_dict(), json_, [f"{e.name}: {out.tag} is live on {out.live}", *out.steps])


@task(help={"env": ENV_HELP, "dry_run": DRY_HELP, "json_": JSON_HELP, "verbose": "Show every command as it runs"})
def rollback(c, env=None, dry_run=False, json_=False, verbose=False):
    """Send traffic back to the previous colour (scaled up again first if the window had passed)."""
    from iosops.k8s.deploy import rollback as run_rollback

    with mutating("k8s.rollback", env, {}, dry_run=dry_run, verbose=verbose, as_json=json_, here=True) as (e, runner):
        out = run_rollback(e, runner)
    if dry_run:
        emit_plan(runner, json_)
        return
    emit(out.as_dict(), json_, [f"{e.name}: rolled back to {out.live} ({out.tag})", *out.steps])


@task(name="scale-down", help={"env": ENV_HELP, "force": "Scale down even inside the rollback window",
                               "dry_run": DRY_HELP, "json_": JSON_HELP})
def scale_down(c, env=None, force=False, dry_run=False, json_=False):
    """Scale the old (non-live) colour to 0 once the rollback window (k8s.rollback_window_s) has passed."""
    from iosops.k8s.deploy import scale_down as run_scale_down

    with mutating("k8s.scale-down", env, {"force": force}, dry_run=dry_run, as_json=json_, here=True) as (e, runner):
        out = run_scale_down(e, runner, force=force)
    if dry_run:
        emit_plan(runner, json_)
        return
    emit(out.as_dict(), json_, [f"{e.name}: live {out.live}", *out.steps])
