"""`inv images.offline`: every image the stack needs, from Debian packages, with no registry.

base:   debootstrap --variant=minbase -> slimmed rootfs -> `tar | docker import`
others: docker/offline/<name>/Dockerfile FROM the base (apt over plain HTTP works inside builds)

Look, then act: each image carries an `iosops.fingerprint` label (hash of its recipe and of its base's
id). An image whose label matches is left alone ("no change"), so a rerun does nothing.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .. import dockerx
from ..commands import debootstrap as dbs
from ..config import Env
from ..runner import Runner

FINGERPRINT = "iosops.fingerprint"
RECIPE_VERSION = "1"
# image key in config `images:` -> folder under docker/offline/ (python first: the API builds on it)
DERIVED = ("python", "postgres", "redis", "nginx", "prometheus", "alertmanager", "postgres_exporter",
           "redis_exporter", "node_exporter", "sshd")


@dataclass
class ImageOutcome:
    key: str
    ref: str
    action: str  # built | no change | planned
    fingerprint: str
    size_mb: float = 0.0


def base_fingerprint(env: Env) -> str:
    o = env.cfg.offline
    recipe = "\n".join([RECIPE_VERSION, o.suite, o.mirror, " ".join(dbs.debootstrap("R", o.suite, o.mirror)),
                        dbs.DPKG_NODOC, dbs.APT_SLIM, " ".join(dbs.SLIM_PATHS)])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def recipe_dir(env: Env, key: str) -> Path:
    return env.path(env.cfg.offline.dockerfiles) / key.replace("_", "-")


def derived_fingerprint(folder: Path, base_id: str) -> str:
    h = hashlib.sha256(f"{RECIPE_VERSION}\n{base_id}\n".encode())
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _current(api, ref: str) -> tuple[Optional[str], Optional[str]]:
    """(image id, fingerprint label) of ref, or (None, None) when absent."""
    from docker.errors import ImageNotFound

    try:
        attrs = api.inspect_image(ref)
    except ImageNotFound:
        return None, None
    return attrs["Id"], ((attrs.get("Config") or {}).get("Labels") or {}).get(FINGERPRINT)


def build_base(env: Env, runner: Runner, api) -> ImageOutcome:
    ref, o = env.cfg.images.base, env.cfg.offline
    fp = base_fingerprint(env)
    _, have = _current(api, ref)
    if have == fp:
        runner.info(f"no change: {ref} (fingerprint {fp})")
        return ImageOutcome("base", ref, "no change", fp)
    rootfs = f"{o.workdir.rstrip('/')}/rootfs-{fp}"
    runner.info(f"{'would build' if runner.dry_run else 'building'} {ref} with debootstrap {o.suite} from {o.mirror} (about a minute)")
    runner.run(dbs.remove_tree(rootfs))
    try:
        runner.run(dbs.debootstrap(rootfs, o.suite, o.mirror), timeout=1800)
        runner.run(dbs.slim(rootfs))
        runner.run(dbs.slim_empty_dirs(rootfs))
        runner.write_file(Path(rootfs) / "etc/dpkg/dpkg.cfg.d/01-iosops-nodoc", dbs.DPKG_NODOC)
        runner.write_file(Path(rootfs) / "etc/apt/apt.conf.d/01-iosops-slim", dbs.APT_SLIM)
        runner.pipe(dbs.tar_rootfs(rootfs), dbs.docker_import(ref, {FINGERPRINT: fp, "iosops.image": "base"}))
    finally:
        runner.run(dbs.remove_tree(rootfs))
    return ImageOutcome("base", ref, "planned" if runner.dry_run else "built", fp)


def build_derived(env: Env, runner: Runner, api, key: str, base_id: str) -> ImageOutcome:
    ref = getattr(env.cfg.images, key)
    folder = recipe_dir(env, key)
    fp = derived_fingerprint(folder, base_id)
    _, have = _current(api, ref)
    if have == fp:
        runner.info(f"no change: {ref} (fingerprint {fp})")
        return ImageOutcome(key, ref, "no change", fp)
    runner.info(f"{'would build' if runner.dry_run else 'building'} {ref} from {folder.relative_to(env.root)}/Dockerfile")
    runner.call(f"docker-sdk build path={folder} tag={ref} buildargs={{'BASE_IMAGE': '{env.cfg.images.base}'}} "
                f"labels={{'{FINGERPRINT}': '{fp}'}} forcerm=True",
                dockerx.stream_build, api, runner.say, path=str(folder), tag=ref, rm=True, forcerm=True,
                buildargs={"BASE_IMAGE": env.cfg.images.base}, labels={FINGERPRINT: fp, "iosops.image": key})
    return ImageOutcome(key, ref, "planned" if runner.dry_run else "built", fp)


def build_offline(env: Env, runner: Runner, only: tuple[str, ...] = ()) -> list[ImageOutcome]:
    api = dockerx.client(env.cfg.docker.host, env.cfg.docker.timeout_s).api
    outcomes = [build_base(env, runner, api)]
    base_id, _ = _current(api, env.cfg.images.base)
    base_id = base_id or f"<planned {outcomes[0].fingerprint}>"
    for key in DERIVED:
        if only and key not in only:
            continue
        outcomes.append(build_derived(env, runner, api, key, base_id))
    if not runner.dry_run:
        for o in outcomes:
            o.size_mb = round(dockerx.image_size_mb(api, o.ref), 1)
    return outcomes
