"""The Kubernetes plan cases that render the overlays (tests/unit/test_k8s_plan.py has the scripted executor and
the rest): `kubectl kustomize` and kubernetes-validate run for real on the committed overlays, every cluster
command is answered by the recording."""
import subprocess

import pytest

from iosops.runner import Result
from tests.unit import test_k8s_plan as plans


def run_for_real(argv: list[str]) -> Result:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return Result(p.returncode, p.stdout, p.stderr)


@pytest.mark.parametrize("case", plans.RENDERING, ids=lambda p: p.stem)
def test_plan(case, tmp_path, monkeypatch):
    plans.check_case(case, tmp_path, monkeypatch, local=run_for_real)
