import sys

from invoke import task
from invoke.exceptions import Exit


# Fastest first, so `all` fails early: in-process (seconds), real programs, real services, whole flows, the
# built container. A tier directory that another branch adds (tests/<name>/) joins `all` on its own.
TIERS = ("unit", "tools", "integration", "e2e", "infra", "podspec")
TIER_HELP = ("unit (in-process only: pure functions, plans with a scripted executor; seconds), tools (real "
             "programs such as inv, hadolint, promtool, nginx -t, kustomize; no service), integration (real "
             "services and Docker), e2e (whole flows), infra (the built container), podspec (the rendered staging overlay's pods under podman kube play), or all (default: every tier)")


def tiers_present(root) -> tuple[str, ...]:
    """The known tiers in order, then any other tests/<dir>/ that is a test package, alphabetically."""
    extra = sorted(d.name for d in (root / "tests").iterdir()
                   if d.is_dir() and d.name not in TIERS and (d / "__init__.py").exists() and any(d.glob("test_*.py")))
    return tuple(t for t in TIERS if (root / "tests" / t).is_dir()) + tuple(extra)


@task(help={"tier": TIER_HELP, "k": "pytest -k expression", "x": "Stop at the first failure"})
def test(c, tier="all", k="", x=False):
    """Run the test suite: one tier (tests/<tier>/) or all of them, fastest first."""
    from iosops import REPO_ROOT

    from ._common import new_runner

    tiers = tiers_present(REPO_ROOT)
    if tier != "all" and tier not in tiers:
        raise Exit(f"error: --tier {tier!r} is not one of {', '.join(tiers)}, all", code=2)
    paths = [f"tests/{t}" for t in (tiers if tier == "all" else (tier,))]
    argv = [sys.executable, "-m", "pytest", *paths, *(["-k", k] if k else []), *(["-x"] if x else [])]
    result = new_runner(verbose=True).run(argv, mutating=False, check=False, stream=True, cwd=REPO_ROOT)
    if result.rc:
        raise Exit(code=result.rc)


GATE_HELP = {"only": "Run only these scanners (comma-separated names; see the task's docstring)",
             "root": "Scan this git checkout instead of the one iosops runs from",
             "json_": "Print the result as JSON on stdout (for CI)"}


def _gate(gate: str, only: str, root: str, json_: bool) -> None:
    import time
    from pathlib import Path

    from iosops import REPO_ROOT
    from iosops.ci.scan import run_gate, summary_lines
    from iosops.errors import IosopsError

    from ._common import emit, fail, new_runner

    start = time.monotonic()
    try:  # a missing tool or a bad flag: one line and its exit code, never a traceback
        outcomes = run_gate(gate, Path(root).resolve() if root else REPO_ROOT, new_runner(), only=only)
    except IosopsError as exc:
        raise fail(exc) from None
    failed = [o for o in outcomes if o.findings]
    total = sum(len(o.findings) for o in outcomes)
    seconds = round(time.monotonic() - start, 1)
    emit({"gate": gate, "ok": not failed, "findings": total, "seconds": seconds,
          "scanners": [o.as_dict() for o in outcomes]}, json_,
         [*summary_lines(outcomes), f"ci.{gate}: {len(outcomes)} scanners, {total} findings in {seconds}s"])
    if failed:
        raise Exit(f"ci.{gate}: {total} finding(s): " + ", ".join(f"{o.name} {len(o.findings)}" for o in failed)
                   + "; fix them, or suppress one inline with its reason (docs/development.md: Scanners)", code=1)


@task(help=GATE_HELP)
def lint(c, only="", root="", json_=False):
    """Fast style/validity gate: ruff, yamllint, shellcheck, hadolint, GitHub workflow schema, promtool rules.

    One line per scanner (files covered, findings, seconds); exit 1 naming the findings when any."""
    _gate("lint", only, root, json_)


@task(help=GATE_HELP)
def scan(c, only="", root="", json_=False):
    """Security gate: ruff, shellcheck, hadolint, yamllint, bandit, detect-secrets, checkov (docker/ and the
    rendered k8s overlays), pip-audit. One line per scanner; exit 1 naming the findings when any."""
    _gate("scan", only, root, json_)
