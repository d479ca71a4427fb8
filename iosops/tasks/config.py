from invoke import task

from ._common import ENV_HELP, JSON_HELP, emit, task_env


@task(help={"env": ENV_HELP, "json_": JSON_HELP})
def show(c, env=None, json_=False):
    """Print the merged config of an env, secrets redacted (shown as their reference and ***)."""
    import yaml

    with task_env(env) as e:
        data = e.redacted()
    if json_:
        emit(data, True)
    else:
        emit(None, False, [f"# env {e.name}: envs/defaults.yaml + envs/{e.name}.yaml + IOSOPS_* overrides",
                           yaml.safe_dump(data, sort_keys=False).rstrip()])


@task
def envs(c):
    """List the known envs (files in envs/)."""
    from iosops.config import known_envs

    print("\n".join(known_envs()))
