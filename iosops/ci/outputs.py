"""Step outputs for GitHub Actions: a task that makes something later jobs need (`inv build`: the release's
tag) appends `name=value` lines to the file $GITHUB_OUTPUT names, which the job maps to its `outputs:`.
Outside Actions the variable is unset and nothing is written, so a laptop runs the same command."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional

from ..errors import BadInput
from ..runner import Runner

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


def output_file(environ: Optional[Mapping[str, str]] = None) -> Optional[Path]:
    path = (os.environ if environ is None else environ).get("GITHUB_OUTPUT", "")
    return Path(path) if path else None


def lines(values: Mapping[str, str]) -> str:
    """`name=value` lines; a value with a line break could forge another output, so it is refused."""
    for name, value in values.items():
        if not name or set(name) - NAME_CHARS:
            raise BadInput(f"step output name {name!r}: use lower-case letters, digits, _ and -")
        if "\n" in value or "\r" in value:
            raise BadInput(f"step output {name}: the value has a line break; refusing to write it")
    return "".join(f"{name}={value}\n" for name, value in values.items())


def write(runner: Runner, values: Mapping[str, str], environ: Optional[Mapping[str, str]] = None) -> Optional[Path]:
    """Append VALUES to $GITHUB_OUTPUT when it is set (GitHub Actions); a no-op elsewhere."""
    path = output_file(environ)
    if path is None:
        return None
    text = lines(values)

    def _append() -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)

    runner.call(f"append step outputs {', '.join(values)} to $GITHUB_OUTPUT ({path})", _append)
    return path
