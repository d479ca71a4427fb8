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


@task(help={"tag": "The release to promote (required): the tag `inv build --push` made in --from-env",
            "to_env": "Env whose registry receives the release (required), e.g. prod",
            "from_env": "Env whose registry has the tested release (default: staging, where CI's build pushes)",
            "dry_run": "Read both registries and print the exact copies; copy nothing", "json_": JSON_HELP})
def promote(c, tag="", to_env="", from_env="staging", dry_run=False, json_=False):
    """Copy a release (API + ops image of --tag) to another env's registry by digest, then verify the digests.

    Registry to registry over the HTTP API (byte for byte, like skopeo copy: no Docker engine, no re-compression),
    so --to-env runs exactly what --from-env tested. A destination tag holding another image is refused;
    one already holding the same digest is "no change"."""
    from iosops.build.promote import check_request, promote as do_promote, summary

    from ._common import task_env

    with task_env(from_env) as src:  # flags and the source env: bad input is exit 2 before the lock is taken
        check_request(tag, to_env, src.name)
    args = {"tag": tag, "from_env": from_env, "to_env": to_env}
    with mutating("images.promote", to_env, args, dry_run=dry_run, as_json=json_) as (dst, runner):
        result = do_promote(src, dst, runner, tag)
    if dry_run:
        plan = runner.plan()
        emit({"plan": plan, **result.as_dict()}, json_,
             [*summary(result), f"dry-run: {len(plan)} action(s) would run, nothing was copied"])
        return
    emit(result.as_dict(), json_, summary(result))


@task(help={"env": ENV_HELP, "keep": "Keep this many newest tags of each repository (at least 1; default 3)",
            "dry_run": DRY_HELP, "json_": JSON_HELP})
def prune(c, env=None, keep=3, dry_run=False, json_=False):
    """Remove old API and ops image tags on every host; never one a container uses or state.json names (live, rollback)."""
    from invoke.exceptions import Exit

    from iosops.day2.images import prune as do_prune
    from iosops.errors import BadInput

    from ._common import fail

    if int(keep) < 1:
        raise fail(BadInput(f"--keep {keep}: keep at least 1 image per repository; nothing was removed"))
    with mutating("images.prune", env, {"keep": int(keep)}, dry_run=dry_run, as_json=json_) as (e, runner):
        out = do_prune(e, runner, int(keep))
    verb = "would remove" if dry_run else "removed"
    lines = []
    for h in out:
        lines += [f"[{h.host}] {verb} {ref}" for ref in h.removed]
        lines += [f"[{h.host}] kept {k['ref']} ({k['why']})" for k in h.kept]
        lines += [f"[{h.host}] FAILED to remove {f['ref']}: {f['error']}" for f in h.failed]
        if not h.removed and not h.failed:
            lines.append(f"[{h.host}] no change: nothing to prune (keep {keep})")
    data = {"dry_run": dry_run, "hosts": [h.as_dict() for h in out]}
    if dry_run:
        data["plan"] = runner.plan()
    emit(data, json_, lines)
    failed = [f"{h.host}: {f['ref']}" for h in out for f in h.failed]
    if failed:
        raise Exit(f"error: images.prune: {len(failed)} image(s) could not be removed ({', '.join(failed)})", code=1)
