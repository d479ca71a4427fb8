from invoke import task

from ._common import DRY_HELP, ENV_HELP, JSON_HELP, emit, emit_plan, fail, mutating, task_env, new_runner


def _kubernetes():
    from iosops.errors import BadInput

    try:
        from iosops.k8s import deploy as k8s_deploy  # written for the Kubernetes target (another module)
    except ImportError:
        raise BadInput("the Kubernetes target is not available in this build (iosops.k8s.deploy is missing); "
                       "use a compose env or a build that includes it") from None
    return k8s_deploy


TAG_HELP = ("API image tag to deploy (the ops image of the same tag goes with it). Per target: local and compose "
            "(SSH hosts): optional, default builds the current tree (short git sha, -dirty when changed) and "
            "deploys that; kubernetes (prod): required, the tag `inv build --push` made (exit 2 without it)")


@task(help={"env": ENV_HELP, "tag": TAG_HELP,
            "allow_destructive": "Allow migrations marked `-- iosops: destructive` (contract step)",
            "dry_run": DRY_HELP, "json_": JSON_HELP})
def deploy(c, env=None, tag="", allow_destructive=False, dry_run=False, json_=False):
    """Blue-green deploy: start the idle colour, check it, switch nginx, roll back automatically on failure."""
    from iosops.images.image import build_image, image_ref

    args = {"tag": tag, "allow_destructive": allow_destructive}
    with mutating("deploy", env, args, dry_run=dry_run, as_json=json_) as (e, runner):
        if e.cfg.target == "kubernetes":
            k8s = _kubernetes()
            result = k8s.deploy(e, runner, tag=tag or None)
            data = result.as_dict()
            lines = [f"{e.name}: {result.tag} is live on {result.live}", *result.steps]
        else:
            from iosops.deploy.bluegreen import deploy as bg_deploy

            if e.cfg.target == "local":  # this machine: images come from Debian packages, built if missing
                from iosops.images.offline import build_offline

                build_offline(e, runner, ("python", "postgres", "redis", "nginx"))
            image = image_ref(e, tag) if tag else build_image(e, runner).image
            result = bg_deploy(e, runner, image, allow_destructive=allow_destructive)
            data = result.__dict__
            lines = [f"deployed {result.image} as {result.colour} on {', '.join(result.hosts)} in {result.seconds}s"
                     + (f" (previous: {result.previous}, kept for `inv rollback --env {e.name}`)" if result.previous else "")]
    if dry_run:
        emit_plan(runner, json_)
        return
    emit(data, json_, lines)


@task(help={"env": ENV_HELP, "dry_run": DRY_HELP, "json_": JSON_HELP})
def rollback(c, env=None, dry_run=False, json_=False):
    """Switch traffic back to the previous colour (still running since the last deploy): seconds."""
    with mutating("rollback", env, {}, dry_run=dry_run, as_json=json_) as (e, runner):
        if e.cfg.target == "kubernetes":
            result = _kubernetes().rollback(e, runner)
            data = result.as_dict()
            lines = [f"{e.name}: rolled back to {result.live} ({result.tag})", *result.steps]
        else:
            from iosops.deploy.bluegreen import rollback as bg_rollback

            result = bg_rollback(e, runner)
            data = result.__dict__
            lines = [f"rolled back to {result.colour} ({result.image or 'image unknown'}) in {result.seconds}s; "
                     f"{result.previous} keeps running for a redeploy"]
    if dry_run:
        emit_plan(runner, json_)
        return
    emit(data, json_, lines)


@task(help={"env": ENV_HELP, "dry_run": DRY_HELP, "json_": JSON_HELP})
def provision(c, env=None, dry_run=False, json_=False):
    """Prepare the env's SSH hosts (user, dirs, packages, sysctl, limits, logrotate, firewall, Docker); idempotent."""
    from iosops.hosts.provision import provision as do_provision
    from iosops.hosts.verify import verify

    with mutating("provision", env, {}, dry_run=dry_run, as_json=json_) as (e, runner):
        outcomes = do_provision(e, runner)
        report = None if dry_run else verify(e, runner)
    if dry_run:
        emit_plan(runner, json_)
        return
    lines = []
    for o in outcomes:
        lines.append(f"{o.host}: " + ("changed: " + "; ".join(o.changed) if o.changed else "no change"))
        lines += [f"  note: {n}" for n in o.notes]
    lines.append(f"verify-hosts: {report.summary()}")
    emit({"hosts": [o.__dict__ for o in outcomes], "verify": report.as_dict()}, json_, lines)


@task(name="verify-hosts", help={"env": ENV_HELP, "colour": "Also check this API colour's containers",
                                 "json_": JSON_HELP})
def verify_hosts(c, env=None, colour="", json_=False):
    """testinfra checks of the env's hosts (users, modes, packages, sockets, services, container health)."""
    from iosops.errors import IosopsError
    from iosops.hosts.verify import verify

    with task_env(env) as e:
        try:
            report = verify(e, new_runner(as_json=json_), colour=colour or None, raise_on_failure=False)
        except IosopsError as exc:
            raise fail(exc) from None
    lines = [f"[{h}] {'ok  ' if ch.ok else 'FAIL'} {ch.name}" + (f": {ch.detail}" if ch.detail else "")
             for h, cs in report.hosts.items() for ch in cs]
    emit(report.as_dict(), json_, lines + [report.summary()])
    if report.failed():
        from invoke.exceptions import Exit

        raise Exit(f"error: verify-hosts: {report.summary()}", code=1)
