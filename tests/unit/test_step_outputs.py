"""`inv build` hands the release it made to later CI jobs through $GITHUB_OUTPUT (step outputs the build
job exports as `outputs.tag`); outside GitHub Actions nothing is written."""

import pytest

from iosops.ci import outputs
from iosops.errors import BadInput
from iosops.runner import Runner


def test_values_are_appended_as_name_value_lines(tmp_path):
    f = tmp_path / "github_output"
    f.write_text("earlier=step\n")
    assert outputs.write(Runner(), {"tag": "abc1234", "image": "r:5000/iosops/api:abc1234"},
                         environ={"GITHUB_OUTPUT": str(f)}) == f
    assert f.read_text() == "earlier=step\ntag=abc1234\nimage=r:5000/iosops/api:abc1234\n"


def test_nothing_is_written_outside_github_actions(tmp_path):
    runner = Runner()
    assert outputs.write(runner, {"tag": "abc1234"}, environ={}) is None
    assert runner.actions == []


@pytest.mark.parametrize("values", [{"tag": "a\nimage=evil"}, {"tag": "a\r"}, {"Tag=x": "a"}])
def test_a_value_that_could_forge_another_output_is_refused(tmp_path, values):
    f = tmp_path / "github_output"
    with pytest.raises(BadInput):
        outputs.write(Runner(), values, environ={"GITHUB_OUTPUT": str(f)})
    assert not f.exists()
