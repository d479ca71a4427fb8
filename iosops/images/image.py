"""`inv build`: the API image, built with the docker SDK from docker/Dockerfile, tagged with the git sha."""
from __future__ import annotations

import datetime as dt
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from .. import dockerx
from ..commands import git
from ..config import Env
from ..errors import BadInput, OperationFailed
from ..runner import Runner

TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
CA_STAGE = Path("docker/.build-ca")


@dataclass
class BuildResult:
    image: str
    tag: str
    image_id: str = ""
    size_mb: float = 0.0
    ops_image: str = ""  # the ops image (backups, restores, walstream), same tag
    ops_size_mb: float = 0.0
    budget_mb: int = 0
    seconds: float = 0.0
    pushed: bool = False
    dry_run: bool = False


def image_ref(env: Env, tag: str, repository: str = "") -> str:
    repo = repository or env.cfg.build.repository
    registry = env.cfg.build.registry.rstrip("/")
    return f"{registry}/{repo}:{tag}" if registry else f"{repo}:{tag}"


def resolve_tag(env: Env, runner: Runner, tag: str = "") -> str:
    if tag:
        if not TAG_RE.match(tag):
            raise BadInput(f"--tag {tag!r} is not a valid image tag (letters, digits, _ . -; max 128, "
                           "not starting with . or -); pick another")
        return tag
    try:
        sha = runner.run(git.rev_parse_short(), mutating=False, cwd=env.root).stdout
        porcelain = runner.run(git.status_porcelain(), mutating=False, cwd=env.root).stdout
    except OperationFailed:
        raise BadInput(f"{env.root} is not a git checkout with a commit, so no tag can be derived; pass --tag") from None
    return git.image_tag(sha, porcelain)


def created_time(env: Env, runner: Runner) -> str:
    probe = runner.run(git.commit_time(), mutating=False, check=False, cwd=env.root, env={"TZ": "UTC"})
    if probe.rc == 0 and probe.stdout.strip():
        return probe.stdout.strip()
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_args(env: Env, tag: str, created: str) -> dict[str, str]:
    return {"BASE_IMAGE": env.base_image, "GIT_SHA": tag, "BUILD_CREATED": created}


def staged_ca_files(env: Env) -> list[Path]:
    d = env.cfg.build.extra_ca_dir
    if not d:
        return []
    src = env.path(d)
    return sorted(src.glob("*.crt")) if src.is_dir() else []


def _stage_ca(files: list[Path], dest: Path) -> None:
    for f in files:
        shutil.copyfile(f, dest / f"extra-{f.name}")


def _unstage_ca(dest: Path) -> None:
    for f in dest.glob("*.crt"):
        f.unlink()


def build_image(env: Env, runner: Runner, *, tag: str = "", push: bool = False, no_cache: bool = False,
                dockerfile: Optional[str] = None, verbose: bool = False) -> BuildResult:
    tag = resolve_tag(env, runner, tag)
    ref = image_ref(env, tag)
    cfg = env.cfg.build
    created = created_time(env, runner)
    result = BuildResult(image=ref, tag=tag, budget_mb=cfg.max_image_mb, dry_run=runner.dry_run)
    if push and not cfg.registry:
        raise BadInput(f"env {env.name}: build.registry is empty, so there is nowhere to push; set it in "
                       f"envs/{env.name}.yaml or IOSOPS_BUILD__REGISTRY")
    api = None if runner.dry_run else dockerx.client(env.cfg.docker.host, env.cfg.docker.timeout_s).api
    if push and cfg.registry_password is not None and not runner.dry_run:
        cfg.registry_password.reveal("build.registry_password", env.root)  # missing: bad input before building

    ca_files = staged_ca_files(env)
    ca_dest = env.path(cfg.context) / CA_STAGE
    if ca_files:
        runner.call(f"stage {len(ca_files)} extra CA certificate(s) from {cfg.extra_ca_dir} into {CA_STAGE}/ "
                    "(git-ignored; builder stage only)", _stage_ca, ca_files, ca_dest)
    ops_ref = image_ref(env, tag, cfg.ops_repository)
    result.ops_image = ops_ref
    builds = [(ref, dockerfile or cfg.dockerfile, "api"), (ops_ref, cfg.ops_dockerfile, "ops")]
    start = time.monotonic()
    ids: dict[str, str] = {}
    try:
        for image, file, kind in builds:
            kwargs = dict(path=str(env.path(cfg.context)), dockerfile=file, tag=image,
                          buildargs=build_args(env, tag, created), nocache=no_cache, rm=True, forcerm=True,
                          labels={"iosops.image": kind})
            out = runner.call(
                f"docker-sdk build path={kwargs['path']} dockerfile={file} tag={image} "
                f"buildargs={kwargs['buildargs']} nocache={no_cache} forcerm=True",
                dockerx.stream_build, api, runner.say, verbose=verbose, **kwargs)
            ids[kind] = out.value
    finally:
        if ca_files:
            runner.call(f"remove staged CA certificates from {CA_STAGE}/", _unstage_ca, ca_dest)
    result.seconds = round(time.monotonic() - start, 1)
    if runner.dry_run:
        if push:
            runner.call(f"docker-sdk push {ref}", lambda: None)
            runner.call(f"docker-sdk push {ops_ref}", lambda: None)
        return result
    result.image_id = ids["api"]
    result.size_mb = round(dockerx.image_size_mb(api, ref), 1)
    result.ops_size_mb = round(dockerx.image_size_mb(api, ops_ref), 1)
    runner.info(f"built {ref} ({result.size_mb} MB, budget {cfg.max_image_mb} MB) and {ops_ref} "
                f"({result.ops_size_mb} MB, budget {cfg.max_ops_image_mb} MB) in {result.seconds}s")
    over = [(image, size, budget, key) for image, size, budget, key in (
        (ref, result.size_mb, cfg.max_image_mb, "build.max_image_mb"),
        (ops_ref, result.ops_size_mb, cfg.max_ops_image_mb, "build.max_ops_image_mb")) if size > budget]
    if over:
        # The two images are one release: neither tag stays behind (no half-built release to deploy).
        for image in (ref, ops_ref):
            runner.call(f"docker-sdk remove_image {image} (untag only)", api.remove_image, image, noprune=True)
        image, size, budget, key = over[0]
        raise OperationFailed(f"image {image} is {size} MB, over the {budget} MB budget ({key}); removed the tag "
                              f"(and {ops_ref if image == ref else ref}'s). Shrink the image or raise the budget")
    if push:
        push_image(env, runner, ref)
        push_image(env, runner, ops_ref)
        result.pushed = True
    return result


def push_image(env: Env, runner: Runner, ref: str) -> None:
    cfg = env.cfg.build
    api = dockerx.client(env.cfg.docker.host, env.cfg.docker.timeout_s).api
    auth = None
    if cfg.registry_password is not None:
        auth = {"username": cfg.registry_username,
                "password": cfg.registry_password.reveal("build.registry_password", env.root).get()}
    repo, _, tag = ref.rpartition(":")

    def _push() -> None:
        for chunk in api.push(repo, tag=tag, stream=True, decode=True, auth_config=auth):
            if "error" in chunk:
                raise OperationFailed(f"push of {ref} failed: {chunk['error'].strip()}; the image stays local")
            status = chunk.get("status", "")
            if status.startswith(tag + ": digest"):
                runner.info(f"  {status}")

    runner.call(f"docker-sdk push {ref}", _push)
    runner.info(f"pushed {ref}")


def as_dict(r: BuildResult) -> dict:
    return asdict(r)
