import sys

from invoke import task
from invoke.exceptions import Exit


@task(help={"tier": "unit, integration, e2e, infra or all (default)", "k": "pytest -k expression",
            "x": "Stop at the first failure"})
def test(c, tier="all", k="", x=False):
    """Run the test suite (all tiers: unit, integration against real services, e2e, infra)."""
    from iosops import REPO_ROOT
    from iosops.runner import Runner

    tiers = ("unit", "integration", "e2e", "infra")
    if tier != "all" and tier not in tiers:
        raise Exit(f"error: --tier {tier!r} is not one of {', '.join(tiers)}, all", code=2)
    paths = [f"tests/{t}" for t in (tiers if tier == "all" else (tier,))]
    argv = [sys.executable, "-m", "pytest", *paths, *(["-k", k] if k else []), *(["-x"] if x else [])]
    result = Runner(verbose=True).run(argv, mutating=False, check=False, stream=True, cwd=REPO_ROOT)
    if result.rc:
        raise Exit(code=result.rc)
