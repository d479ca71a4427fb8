from invoke import task

from ._common import DRY_HELP, ENV_HELP, JSON_HELP, emit, emit_plan, mutating, new_runner


ONLY_HELP = "Comma-separated image keys besides the base (e.g. python,postgres); `base` alone: just the base"


def _keys(only: str) -> tuple[str, ...]:
    from iosops.images.offline import KEYS
    from iosops.errors import BadInput

    keys = tuple(k.strip() for k in only.split(",") if k.strip())
    unknown = [k for k in keys if k not in KEYS]
    if unknown:
        raise BadInput(f"--only: unknown image(s) {', '.join(unknown)}; known: {', '.join(KEYS)}")
    return keys


@task(help={"env": ENV_HELP, "only": ONLY_HELP,
            "refresh": "Also rebuild images whose recorded packages have newer versions in the archive "
                       "(security/point updates; reads the archive's signed indexes)",
            "dry_run": DRY_HELP, "json_": JSON_HELP})
def offline(c, env=None, only="", refresh=False, dry_run=False, json_=False):
    """Build every image the stack needs from Debian packages (debootstrap + docker import); no registry.

    Sources: the release, -updates and -security. An image is rebuilt when its recipe (or its base)
    changed; with --refresh also when the archive offers updates for its recorded packages."""
    from iosops.images.offline import build_offline

    from ._common import task_env

    with task_env(env):  # bad flags are exit 2 before the lock is taken
        keys = _keys(only)
    with mutating("images.offline", env, {"only": only, "refresh": refresh}, dry_run=dry_run, as_json=json_,
                  here=True) as (e, runner):
        outcomes = build_offline(e, runner, keys, refresh=refresh)
    if dry_run:
        emit_plan(runner, json_)
        return
    built = [o for o in outcomes if o.action == "built"]
    lines = [f"{o.action:9} {o.ref:40} {o.size_mb:7.1f} MB" + (f"  ({o.reason})" if o.reason else "")
             for o in outcomes]
    for o in built:
        lines += [f"          {o.key}: {u}" for u in o.updates]
    lines.append(f"{len(built)} built, {len(outcomes) - len(built)} unchanged"
                 + ("" if built else ": nothing to do, every image matches its recipe"
                    + (" and the archive" if refresh else "")))
    emit([o.__dict__ for o in outcomes], json_, lines)


@task(help={"env": ENV_HELP, "only": "Comma-separated image keys to check (default: base and every derived image)",
            "image": "Also check this image (repeatable; e.g. an API or ops release) by the packages in its own "
                     "dpkg status; alone, without --only, only these are checked",
            "json_": JSON_HELP}, iterable=["image"])
def stale(c, env=None, only="", image=None, json_=False):
    """Which offline images have security/point updates waiting, and why. Builds nothing.

    Compares each image's recorded package set (label iosops.packages) with the newest versions in the
    archive's signed indexes (release, -updates, -security), read on this machine; an --image by the
    packages installed in it (its labels may be inherited from its base). Exit 0: every image
    fresh; 1: an image is stale, not built or has no package label (`inv images.offline --refresh`
    rebuilds them), or the archive could not be read; 2: bad input."""
    from iosops.images.offline import check_stale

    from ._common import task_env

    with task_env(env) as e:  # one error line: exit 2 bad input, 1 archive unreadable
        statuses = check_stale(e, new_runner(as_json=json_), _keys(only), tuple(image or ()))
    bad = [s for s in statuses if s.state != "fresh"]
    lines = []
    for s in statuses:
        lines.append(f"{s.state:10} {s.key:17} {s.ref:40} {s.reason}")
        lines += [f"           {u.package} {u.installed} -> {u.available} ({u.suite})" for u in s.updates]
    fix = "run `inv images.offline --refresh`" + (", then rebuild the --image(s) on it (e.g. `inv build`)"
                                                   if any(s.key == "image" for s in bad) else "")
    lines.append(f"{len(bad)} of {len(statuses)} image(s) need a rebuild: {fix}"
                 if bad else f"all {len(statuses)} image(s) fresh: no package has a newer version in the archive")
    emit({"images": [s.as_dict() for s in statuses], "stale": [s.key for s in bad]}, json_, lines)
    if bad:
        from invoke.exceptions import Exit

        raise Exit(code=1)


@task(help={"tag": "The release to promote (required): the tag `inv build --push` made in --from-env",
            "to_env": "Env whose registry receives the release (required), e.g. prod",
            "from_env": "Env whose registry has the tested release (default: staging, where CI's build pushes)",
            "dry_run": "Read both registries and print the exact copies; copy nothing", "json_": JSON_HELP})
def promote(c, tag="", to_env="", from_env="staging", dry_run=False, json_=False):
    """Copy a release (API + ops image of --tag) to another env's registry by digest, then verify the digests.

    Registry to registry over the HTTP API (byte for byte, like skopeo copy: no Docker engine, no re-compression),
    so --to-env runs exactly what --from-env tested. A destination tag holding another image is refused;
    one already holding the same digest is "no change"."""
    from iosops.images.promote import check_request, promote as do_promote, summary

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
