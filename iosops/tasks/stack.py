from invoke import task

from ._common import DRY_HELP, ENV_HELP, JSON_HELP, confirm_typed, emit, emit_plan, mutating


@task(help={"env": ENV_HELP, "tag": "Run this API image tag instead of building one",
            "dry_run": DRY_HELP, "json_": JSON_HELP})
def up(c, env=None, tag="", dry_run=False, json_=False):
    """Build what is missing and run the API with PostgreSQL and Redis locally (docker/compose.yml, profile
    quick: the env's compose project, as `inv deploy` runs it); applies migrations, waits until /ready."""
    from iosops.images.image import build_image, image_ref
    from iosops.images.offline import build_offline
    from iosops.stack.local import up as stack_up

    with mutating("up", env, {"tag": tag}, dry_run=dry_run, as_json=json_, here=True) as (e, runner):
        if tag:
            image = image_ref(e, tag)
        else:
            build_offline(e, runner, ("python", "postgres", "redis"))
            image = build_image(e, runner).image
        result = stack_up(e, runner, image)
    if dry_run:
        emit_plan(runner, json_)
        return
    emit(result.__dict__, json_, [
        f"stack {result.stack} is ready in {result.seconds}s: {result.url} (image {result.api_image})",
        f"changed: {', '.join(result.changed) or 'nothing'}; {result.migrations or ''}".rstrip("; "),
        f"try: curl {result.url}/ready   ·   stop: inv down --env {e.name}"])


@task(help={"env": ENV_HELP, "volumes": "Also delete the data volumes (the database!); asks for the env name",
            "yes": "Skip the typed confirmation of --volumes", "dry_run": DRY_HELP})
def down(c, env=None, volumes=False, yes=False, dry_run=False):
    """Stop and remove the local stack (its compose project, every profile; then by label what an older
    `inv up` left); data volumes are kept."""
    from iosops.stack.local import down as stack_down

    with mutating("down", env, {"volumes": volumes}, dry_run=dry_run, here=True) as (e, runner):
        if volumes:
            confirm_typed(e.name, f"deletes the data volumes of stack {e.cfg.stack.name} (the database)",
                          f"inv down --env {e.name} --volumes", yes=yes, dry_run=dry_run)
        removed = stack_down(e, runner, volumes=volumes)
    if dry_run:
        emit_plan(runner, False)
        return
    print(f"removed {', '.join(removed)}" if removed else f"no change: stack {e.cfg.stack.name} is not running")
