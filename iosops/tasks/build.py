from invoke import task

from ._common import DRY_HELP, ENV_HELP, JSON_HELP, emit, emit_plan, mutating


@task(help={"env": ENV_HELP, "tag": "Image tag (default: short git sha, -dirty when the tree has changes)",
            "push": "Push to the env's registry (build.registry) after building",
            "no_cache": "Build without the layer cache", "dry_run": DRY_HELP, "json_": JSON_HELP,
            "verbose": "Show every build output line"})
def build(c, env=None, tag="", push=False, no_cache=False, dry_run=False, json_=False, verbose=False):
    """Build the API and ops images, check their size budgets, optionally push them.

    Under GitHub Actions ($GITHUB_OUTPUT set) the release is also appended there as step outputs
    (tag, image, ops_image): the build job exports `tag`, and staging, promotion and prod ship it."""
    from iosops.images.image import as_dict, build_image
    from iosops.ci import outputs

    args = {"tag": tag, "push": push, "no_cache": no_cache}
    with mutating("build", env, args, dry_run=dry_run, verbose=verbose, as_json=json_) as (e, runner):
        result = build_image(e, runner, tag=tag, push=push, no_cache=no_cache, verbose=verbose)
        outputs.write(runner, {"tag": result.tag, "image": result.image, "ops_image": result.ops_image})
    if dry_run:
        emit_plan(runner, json_)
        return
    emit(as_dict(result), json_, [f"image {result.image} {result.size_mb} MB (budget {result.budget_mb} MB)"
                                  f"{', pushed' if result.pushed else ''}"])
