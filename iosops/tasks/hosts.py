from invoke import task

from ._common import DRY_HELP, ENV_HELP, JSON_HELP, emit, fail, task_env, new_runner


@task(iterable=["replace"], help={
    "env": ENV_HELP,
    "replace": "Replace the recorded keys of this host (ADDRESS, ADDRESS:PORT or [ADDRESS]:PORT) with what it "
               "offers now; only after checking the new fingerprint out of band. Repeatable",
    "dry_run": DRY_HELP, "json_": JSON_HELP})
def trust(c, env=None, replace=None, dry_run=False, json_=False):
    """Record the SSH host keys of the env's hosts in its known_hosts file (envs/<env>.known_hosts; commit it).

    Connects to each host (key exchange only, no login), prints every key's SHA256 fingerprint, adds keys of
    hosts the file does not know; a re-run changes nothing. A key that differs from the recorded one is
    refused (exit 2, nothing written) unless its host is named with --replace."""
    from iosops.errors import IosopsError
    from iosops.hosts.trust import trust as do_trust

    with task_env(env) as e:
        runner = new_runner(dry_run=dry_run, as_json=json_)
        try:
            result = do_trust(e, runner, replace=list(replace or []))
        except IosopsError as exc:
            raise fail(exc) from None
    lines = []
    for o in result.hosts:
        lines.append(f"{o.host}: {o.status}")
        lines += [f"  {t} {fp}" for t, fp in o.offered]
    changed = any(o.status != "no change" for o in result.hosts)
    if dry_run:
        lines.append(f"dry-run: would write {result.file}; nothing was changed" if changed
                     else f"dry-run: no change: {result.file} already holds these keys")
    elif result.written:
        lines.append(f"wrote {result.file}: check these fingerprints out of band, then commit it")
    else:
        lines.append(f"no change: {result.file} already holds these keys")
    emit({**result.as_dict(), "dry_run": dry_run}, json_, lines)
