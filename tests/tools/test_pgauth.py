"""The tools-tier half of tests/unit/test_pgauth.py: these tests run real programs (see tests/tools/__init__.py)."""
import json

import pytest

from iosops.errors import OperationFailed
from iosops.runner import Runner
from tests.unit.test_deploy_plan import APP1, APP2, DB1, IMAGE, Hosts, staging  # noqa: F401 - fixture


def test_a_failed_inline_program_is_one_line_without_its_source():
    program = "import sys\nx = 1\nsys.exit('fatal error: boom')\n"
    with pytest.raises(OperationFailed) as exc:
        Runner().run(["python3", "-c", program])
    msg = str(exc.value)
    assert msg == "command failed (exit 1): python3 -c '<3-line script>': fatal error: boom"
    assert json.dumps(msg).count("\\n") == 0
