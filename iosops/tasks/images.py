from invoke import task

from ._common import DRY_HELP, ENV_HELP, JSON_HELP, emit, emit_plan, mutating


@task(help={"env": ENV_HELP, "only": "Comma-separated image keys to build besides the base (e.g. python,postgres)",
            "dry_run": DRY_HELP, "json_": JSON_HELP})
def offline(c, env=None, only="", dry_run=False, json_=False):
    """Build every image the stack needs from Debian packages (debootstrap + docker import); no registry."""
    from iosops.build.offline import DERIVED, build_offline
    from iosops.errors import BadInput

    keys = tuple(k.strip() for k in only.split(",") if k.strip())
    with mutating("images.offline", env, {"only": only}, dry_run=dry_run, as_json=json_, here=True) as (e, runner):
        unknown = [k for k in keys if k not in DERIVED]
        if unknown:
            raise BadInput(f"--only: unknown image(s) {', '.join(unknown)}; known: {', '.join(DERIVED)}")
        outcomes = build_offline(e, runner, keys)
    if dry_run:
        emit_plan(runner, json_)
        return
    built = [o for o in outcomes if o.action == "built"]
    lines = [f"{o.action:9} {o.ref:40} {o.size_mb:7.1f} MB" for o in outcomes]
    lines.append(f"{len(built)} built, {len(outcomes) - len(built)} unchanged"
                 + ("" if built else ": nothing to do, every image matches its recipe"))
    emit([o.__dict__ for o in outcomes], json_, lines)
