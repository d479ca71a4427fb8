"""`inv images.offline`: every image the stack needs, from Debian packages, with no registry.

base:   debootstrap --variant=minbase (the release) -> apt sources: release + -updates + -security ->
        `apt-get full-upgrade` in the rootfs -> slimmed rootfs -> `tar | docker import`
others: docker/offline/<name>/Dockerfile FROM the base (apt over plain HTTP works inside builds; the base's
        sources make every `apt-get install` take security and point updates too)

Every image is labelled with its installed package set (iosops.packages: name=version ..., with its
sha256 and count), read from the built image's own /var/lib/dpkg/status.

Look, then act: each image carries an `iosops.fingerprint` label (hash of its recipe and of its base's
id). An image whose label matches is left alone ("no change"), so a rerun does nothing and needs no
network. With refresh (`--refresh`), an image whose recorded packages have newer versions in the archive
(iosops.images.archive) is rebuilt too: the base from scratch, a derived image without the build cache.
`check_stale` (`inv images.stale`) reports the same decision and builds nothing.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from .. import dockerx
from ..commands import debootstrap as dbs
from ..config import Env
from ..errors import OperationFailed
from ..runner import Runner
from . import debpkg
from .archive import Archive, sources_list

FINGERPRINT = "iosops.fingerprint"
# 2: apt sources with -updates and -security, full-upgrade in the base, package-set labels
RECIPE_VERSION = "2"
# image key in config `images:` -> folder under docker/offline/ (python first: the API builds on it)
DERIVED = ("python", "postgres", "redis", "nginx", "prometheus", "alertmanager", "postgres_exporter",
           "redis_exporter", "node_exporter", "sshd")
KEYS = ("base", *DERIVED)
DPKG_STATUS = "/var/lib/dpkg/status"
# Docker's architecture names -> Debian's (where they differ)
DEBIAN_ARCH = {"386": "i386", "arm": "armhf"}


@dataclass
class ImageOutcome:
    key: str
    ref: str
    action: str  # built | no change | planned
    fingerprint: str
    size_mb: float = 0.0
    reason: str = ""  # why it was (or would be) built: not built | recipe or base changed | N package update(s) ...
    updates: list[str] = field(default_factory=list)  # "package installed -> available (suite)"


@dataclass
class ImageStatus:
    """`inv images.stale`: one image's package set against what the archive offers."""
    key: str
    ref: str
    state: str  # fresh | stale | missing | unlabelled
    packages: int = 0
    updates: list[debpkg.Update] = field(default_factory=list)
    reason: str = ""

    def as_dict(self) -> dict:
        return {**asdict(self), "updates": [asdict(u) for u in self.updates]}


@dataclass
class Current:
    id: Optional[str]
    labels: dict
    arch: str


def base_fingerprint(env: Env) -> str:
    o = env.cfg.offline
    recipe = "\n".join([RECIPE_VERSION, o.suite, o.mirror, o.security_mirror, sources_list(o),
                        " ".join(dbs.debootstrap("R", o.suite, o.mirror)), " ".join(dbs.chroot_apt_upgrade("R")),
                        dbs.DPKG_NODOC, dbs.APT_SLIM, " ".join(dbs.SLIM_PATHS)])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def recipe_dir(env: Env, key: str) -> Path:
    return env.path(env.cfg.offline.dockerfiles) / key.replace("_", "-")


def derived_fingerprint(folder: Path, base_id: str) -> str:
    h = hashlib.sha256(f"{RECIPE_VERSION}\n{base_id}\n".encode())
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _current(api, ref: str) -> Current:
    """The image behind ref (id None when absent), its labels and its Debian architecture."""
    from docker.errors import ImageNotFound

    try:
        attrs = api.inspect_image(ref)
    except ImageNotFound:
        return Current(None, {}, "")
    arch = attrs.get("Architecture") or "amd64"
    return Current(attrs["Id"], dict((attrs.get("Config") or {}).get("Labels") or {}), DEBIAN_ARCH.get(arch, arch))


def _why_build(cur: Current, fp: str, archive: Optional[Archive]) -> tuple[str, list[debpkg.Update]]:
    """"" when the image is up to date, else why to (re)build it (and the package updates, if that is why).
    The archive is asked only with refresh and only when the recipe has not changed anyway."""
    if cur.id is None:
        return "not built", []
    if cur.labels.get(FINGERPRINT) != fp:
        return "recipe or base changed", []
    if archive is None:
        return "", []
    try:
        updates = debpkg.updates_for(debpkg.packages_from_labels(cur.labels), archive.available(cur.arch))
    except debpkg.LabelProblem as exc:
        return str(exc), []
    return (f"{len(updates)} package update(s) in the archive", updates) if updates else ("", [])


def _updates_text(updates: list[debpkg.Update], limit: int = 5) -> str:
    if not updates:
        return ""
    more = f", +{len(updates) - limit} more" if len(updates) > limit else ""
    return ": " + ", ".join(str(u) for u in updates[:limit]) + more


def image_packages(api, image: str, labels: Optional[dict] = None) -> dict[str, str]:
    """{package: version} installed in image, from its own dpkg status file (the image is not run)."""
    cur = _current(api, image)
    text = dockerx.read_image_file(api, image, DPKG_STATUS, labels).decode("utf-8", errors="replace")
    return debpkg.parse_dpkg_status(text, cur.arch)


def label_with_packages(api, image: str, ref: str, labels: dict) -> str:
    """Tag ref as image plus labels and its package set (a FROM-only build: a new config, no new layer)."""
    packages = image_packages(api, image, labels)
    if not packages:
        raise OperationFailed(f"{ref}: no installed package in {DPKG_STATUS}; not tagging it")
    return dockerx.stream_build(api, lambda line: None, fileobj=io.BytesIO(f"FROM {image}\n".encode()), tag=ref,
                                labels={**labels, **debpkg.package_labels(packages)}, rm=True, forcerm=True)


def _finish(runner: Runner, api, image: str, ref: str, labels: dict) -> None:
    runner.call(f"docker-sdk build tag={ref} FROM {image} labels={sorted(labels)} + {debpkg.PACKAGES_LABEL} "
                f"(read from the image's {DPKG_STATUS})", label_with_packages, api, image, ref, labels)


def _plan_line(runner: Runner, ref: str, reason: str, updates: list[debpkg.Update], how: str) -> None:
    runner.info(f"{'would build' if runner.dry_run else 'building'} {ref} ({reason}{_updates_text(updates)}) {how}")


def build_base(env: Env, runner: Runner, api, archive: Optional[Archive] = None) -> ImageOutcome:
    ref, o = env.cfg.images.base, env.cfg.offline
    fp = base_fingerprint(env)
    reason, updates = _why_build(_current(api, ref), fp, archive)
    if not reason:
        runner.info(f"no change: {ref} (fingerprint {fp}{'; no package updates' if archive else ''})")
        return ImageOutcome("base", ref, "no change", fp)
    rootfs = f"{o.workdir.rstrip('/')}/rootfs-{fp}"
    _plan_line(runner, ref, reason, updates,
               f"with debootstrap {o.suite} from {o.mirror}, then {o.suite}-updates and -security (about a minute)")
    labels = {**o.labels, FINGERPRINT: fp, "iosops.image": "base"}
    runner.run(dbs.remove_tree(rootfs))
    try:
        runner.run(dbs.debootstrap(rootfs, o.suite, o.mirror), timeout=1800)
        # Before the upgrade, so upgraded packages unpack without docs and apt fetches no translations.
        runner.write_file(Path(rootfs) / "etc/dpkg/dpkg.cfg.d/01-iosops-nodoc", dbs.DPKG_NODOC)
        runner.write_file(Path(rootfs) / "etc/apt/apt.conf.d/01-iosops-slim", dbs.APT_SLIM)
        runner.write_file(Path(rootfs) / "etc/apt/sources.list", sources_list(o))
        runner.run(dbs.chroot_apt_update(rootfs), env=dbs.APT_ENV, timeout=900)
        runner.run(dbs.chroot_apt_upgrade(rootfs), env=dbs.APT_ENV, timeout=1800)
        runner.run(dbs.chroot_apt_clean(rootfs))
        runner.run(dbs.slim(rootfs))
        runner.run(dbs.slim_empty_dirs(rootfs))
        imported = runner.pipe(dbs.tar_rootfs(rootfs), dbs.docker_import("", labels))
    finally:
        runner.run(dbs.remove_tree(rootfs))
    image = "<imported image>" if runner.dry_run else imported.stdout.strip()
    _finish(runner, api, image, ref, labels)
    return ImageOutcome("base", ref, "planned" if runner.dry_run else "built", fp, reason=reason,
                        updates=[str(u) for u in updates])


def build_derived(env: Env, runner: Runner, api, key: str, base_id: str,
                  archive: Optional[Archive] = None) -> ImageOutcome:
    ref = getattr(env.cfg.images, key)
    folder = recipe_dir(env, key)
    fp = derived_fingerprint(folder, base_id)
    reason, updates = _why_build(_current(api, ref), fp, archive)
    if not reason:
        runner.info(f"no change: {ref} (fingerprint {fp}{'; no package updates' if archive else ''})")
        return ImageOutcome(key, ref, "no change", fp)
    # Same recipe, same base: only a build without the layer cache reinstalls the packages at newer versions.
    nocache = bool(updates)
    where = folder.relative_to(env.root) if folder.is_relative_to(env.root) else folder
    _plan_line(runner, ref, reason, updates, f"from {where}/Dockerfile{' without the build cache' if nocache else ''}")
    built = runner.call(f"docker-sdk build path={folder} buildargs={{'BASE_IMAGE': '{env.cfg.images.base}'}} "
                        f"nocache={nocache} forcerm=True",
                        dockerx.stream_build, api, runner.say, path=str(folder), rm=True, forcerm=True, nocache=nocache,
                        buildargs={"BASE_IMAGE": env.cfg.images.base})
    image = "<built image>" if runner.dry_run else built.value
    _finish(runner, api, image, ref, {**env.cfg.offline.labels, FINGERPRINT: fp, "iosops.image": key})
    return ImageOutcome(key, ref, "planned" if runner.dry_run else "built", fp, reason=reason,
                        updates=[str(u) for u in updates])


def build_offline(env: Env, runner: Runner, only: tuple[str, ...] = (), refresh: bool = False) -> list[ImageOutcome]:
    """The base, then the derived images (all, or those in `only`; "base" alone: just the base).
    refresh: also rebuild images whose recorded packages have updates in the archive."""
    api = dockerx.client(env.cfg.docker.host, env.cfg.docker.timeout_s).api
    archive = Archive(env.cfg.offline, runner) if refresh else None
    outcomes = [build_base(env, runner, api, archive)]
    base_id = _current(api, env.cfg.images.base).id
    if outcomes[0].action == "planned" or not base_id:  # dry-run: the base would be new, so would its children
        base_id = f"<planned {outcomes[0].fingerprint}>"
    for key in DERIVED:
        if only and key not in only:
            continue
        outcomes.append(build_derived(env, runner, api, key, base_id, archive))
    if not runner.dry_run:
        for o in outcomes:
            o.size_mb = round(dockerx.image_size_mb(api, o.ref), 1)
    return outcomes


def check_stale(env: Env, runner: Runner, only: tuple[str, ...] = (), refs: tuple[str, ...] = ()) -> list[ImageStatus]:
    """Each offline image's recorded package set (all, or those in `only`) against the archive, read on this
    machine once per run. `refs`: any other images (e.g. the API and ops images), checked by the package set
    read from their own dpkg status: a label there may be inherited from the base and would under-report."""
    from ..errors import BadInput

    api = dockerx.client(env.cfg.docker.host, env.cfg.docker.timeout_s).api
    archive = Archive(env.cfg.offline, runner)
    out = []
    for ref in refs:
        cur = _current(api, ref)
        if cur.id is None:
            raise BadInput(f"--image {ref}: no such image on this engine")
    for key in KEYS:
        if (only and key not in only) or (refs and not only):
            continue
        ref = getattr(env.cfg.images, key)
        cur = _current(api, ref)
        if cur.id is None:
            out.append(ImageStatus(key, ref, "missing", reason="not built: `inv images.offline` builds it"))
            continue
        try:
            installed = debpkg.packages_from_labels(cur.labels)
        except debpkg.LabelProblem as exc:
            out.append(ImageStatus(key, ref, "unlabelled", reason=f"{exc}: `inv images.offline` rebuilds it"))
            continue
        out.append(_status(key, ref, installed, archive.available(cur.arch), "recorded"))
    for ref in refs:
        installed = runner.call(f"docker-sdk read {ref}:{DPKG_STATUS}", image_packages, api, ref,
                                env.cfg.offline.labels, mutating=False).value
        out.append(_status("image", ref, installed, archive.available(_current(api, ref).arch), "read from the image"))
    return out


def _status(key: str, ref: str, installed: dict[str, str], available: dict, how: str) -> ImageStatus:
    updates = debpkg.updates_for(installed, available)
    return ImageStatus(key, ref, "stale" if updates else "fresh", len(installed), updates,
                       f"{len(updates)} of {len(installed)} packages ({how}) have updates" if updates
                       else f"all {len(installed)} packages ({how}) at the archive's newest version")
