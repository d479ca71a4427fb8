#!/usr/bin/env python3
"""Image figures, each as a ratio against a baseline measured in the same run (issue: foundation).

  size      runtime image (multi-stage) vs a single-stage build of the same app on the same base
  rebuild   rebuild after a code-only change vs a clean (--no-cache) build of the same Dockerfile
  inv-list  `inv --list` vs a bare `python -c pass` (what laziness leaves: invoke + our task modules)

Targets (issue #2): runtime <= 250 MB and <= 0.6x single-stage; rebuild <= 10 s; `inv --list` < 1 s.
Run: .venv/bin/python benchmarks/image.py [--json]. Needs the Docker engine and `inv images.offline`.
"""
from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Imports below waive E402: run as a script, they need ROOT on sys.path first.
from iosops import dockerx  # noqa: E402
from iosops.images.image import build_image  # noqa: E402
from iosops.images.offline import build_offline  # noqa: E402
from iosops.config import load_env  # noqa: E402
from iosops.runner import Runner  # noqa: E402


def quiet_runner() -> Runner:
    return Runner(say=lambda line: None)


def copy_context(dest: Path) -> None:
    """The build context only (what .dockerignore lets through), so the repo is never modified."""
    for rel in ("app", "docker/Dockerfile", "docker/Dockerfile.single", "docker/.build-ca/README.md", ".dockerignore"):
        src, dst = ROOT / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dst)


def timed_build(env, tag: str, **kw) -> tuple[float, float]:
    start = time.monotonic()
    result = build_image(env, quiet_runner(), tag=tag, **kw)
    return time.monotonic() - start, result.size_mb


def median_seconds(argv: list[str], n: int = 7) -> float:
    samples = []
    for _ in range(n):
        start = time.monotonic()
        subprocess.run(argv, cwd=ROOT, capture_output=True, check=True)
        samples.append(time.monotonic() - start)
    return statistics.median(samples)


def main() -> int:
    as_json = "--json" in sys.argv
    with tempfile.TemporaryDirectory(prefix="iosops-bench-") as tmp:
        ctx = Path(tmp)
        copy_context(ctx)
        env = load_env("local", overrides={"build": {"context": str(ctx), "max_image_mb": 10_000},
                                           "state_dir": str(ctx / ".state")})
        build_offline(env, quiet_runner(), ("python",))
        api = dockerx.client(env.cfg.docker.host).api
        tags = ["bench-clean", "bench-single", "bench-code"]
        try:
            clean_s, multi_mb = timed_build(env, tags[0], no_cache=True)
            _, single_mb = timed_build(env, tags[1], dockerfile="docker/Dockerfile.single")
            main_py = ctx / "app/iosapi/main.py"
            main_py.write_text(main_py.read_text() + f"\n# benchmark code-only change {time.time()}\n")
            rebuild_s, _ = timed_build(env, tags[2])
        finally:
            for t in tags:
                try:
                    api.remove_image(f"iosops/api:{t}", noprune=False)
                except Exception:  # an image that failed to build has nothing to remove
                    pass
    inv = [str(ROOT / ".venv/bin/inv"), "--list"]
    list_s = median_seconds(inv)
    python_s = median_seconds([sys.executable, "-c", "pass"])
    rows = {
        "runtime_image_mb": round(multi_mb, 1), "single_stage_mb": round(single_mb, 1),
        "size_ratio": round(multi_mb / single_mb, 3),
        "clean_build_s": round(clean_s, 1), "code_only_rebuild_s": round(rebuild_s, 1),
        "rebuild_ratio": round(rebuild_s / clean_s, 3),
        "inv_list_s": round(list_s, 3), "python_startup_s": round(python_s, 3),
        "inv_list_ratio": round(list_s / python_s, 2),
    }
    checks = {
        "runtime <= 250 MB": multi_mb <= 250, "size ratio <= 0.6": multi_mb / single_mb <= 0.6,
        "code-only rebuild <= 10 s": rebuild_s <= 10, "inv --list < 1 s": list_s < 1,
    }
    if as_json:
        print(json.dumps({"figures": rows, "targets": checks}, indent=2))
    else:
        print(f"runtime image      {multi_mb:7.1f} MB   single-stage {single_mb:7.1f} MB   ratio {rows['size_ratio']}")
        print(f"code-only rebuild  {rebuild_s:7.1f} s    clean build  {clean_s:7.1f} s    ratio {rows['rebuild_ratio']}")
        print(f"inv --list         {list_s:7.3f} s    python -c pass {python_s:5.3f} s  ratio {rows['inv_list_ratio']}")
        for name, ok in checks.items():
            print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
