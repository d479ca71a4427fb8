"""The tools-tier half of tests/unit/test_build_plan.py: these tests run real programs (see tests/tools/__init__.py)."""
import subprocess

from iosops import dockerx
from iosops.config import load_env
from iosops.runner import Runner


def test_dry_run_build_touches_nothing(monkeypatch, tmp_path):
    from iosops.images import image

    def boom(*a, **k):
        raise AssertionError("dry-run started a process or a Docker client")

    real_popen, reads = subprocess.Popen, []

    def only_git_reads(argv, *a, **k):  # read-only probes (git log) may run; nothing else may
        if list(argv[:2]) != ["git", "log"]:
            raise AssertionError(f"dry-run started {argv}")
        reads.append(argv)
        return real_popen(argv, *a, **k)

    monkeypatch.setattr(subprocess, "Popen", only_git_reads)
    monkeypatch.setattr(dockerx, "client", boom)
    ca = tmp_path / "ca"
    ca.mkdir()
    (ca / "corp.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    env = load_env("local", environ={"IOSOPS_BUILD__EXTRA_CA_DIR": str(ca), "IOSOPS_BUILD__REGISTRY": "127.0.0.1:5000"})
    runner = Runner(dry_run=True)
    result = image.build_image(env, runner, tag="t1", push=True)
    plan = runner.plan()
    assert plan[0].startswith("stage 1 extra CA certificate(s)")
    assert plan[1].startswith("docker-sdk build ") and "tag=127.0.0.1:5000/iosops/api:t1" in plan[1]
    # The ops image: same tag, same registry, its own Dockerfile, built after the API image.
    assert plan[2].startswith("docker-sdk build ") and "tag=127.0.0.1:5000/iosops/ops:t1" in plan[2] \
        and "dockerfile=docker/ops/Dockerfile" in plan[2]
    assert plan[3].startswith("remove staged CA certificates")
    assert plan[4:6] == ["docker-sdk push 127.0.0.1:5000/iosops/api:t1", "docker-sdk push 127.0.0.1:5000/iosops/ops:t1"]
    assert reads and all(str(a).endswith("# read") for a in runner.actions if a.text.startswith("git "))
    assert result.dry_run and not list((env.root / "docker/.build-ca").glob("*.crt"))
