"""build_image in dry-run: the exact plan, with no process, no Docker client and no file touched."""


from iosops.images.image import build_args, image_ref, resolve_tag
from iosops.config import load_env
from iosops.runner import by_argv, Runner


def test_image_ref_with_and_without_registry():
    env = load_env("local", environ={})
    assert image_ref(env, "abc") == "iosops/api:abc"
    env = load_env("local", environ={"IOSOPS_BUILD__REGISTRY": "127.0.0.1:5000/"})
    assert image_ref(env, "abc") == "127.0.0.1:5000/iosops/api:abc"


def test_build_args_carry_base_and_revision():
    env = load_env("local", environ={})
    assert build_args(env, "abc", "2026-01-01T00:00:00Z") == {
        "BASE_IMAGE": "iosops/python:3.11-bookworm", "GIT_SHA": "abc", "BUILD_CREATED": "2026-01-01T00:00:00Z"}


def test_tag_from_git_marks_dirty():
    from iosops.runner import Result

    outs = iter(["0123456789ab\n", " M x\n"])
    runner = Runner(executor=by_argv(lambda argv, **kw: Result(0, next(outs))))
    assert resolve_tag(load_env("local", environ={}), runner) == "0123456789ab-dirty"
