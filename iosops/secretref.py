"""Secrets are references in config (env var or file); values are wrapped so they print as ***.

Every revealed value is registered with the module-level redactor, and everything the runner, the
audit log and the tasks print goes through `redact()` as a second line of defence.
"""
from __future__ import annotations

import os
import secrets as _pysecrets  # the standard library (this module is iosops.secretref)
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, model_validator

from .errors import BadInput

MASK = "***"
_revealed: set[str] = set()


# A configured secret shorter than this is refused: it is weak, and masking it would garble output (every
# "ab" in a log line would print as ***).
MIN_SECRET_LEN = 8


def _checked(value: str, name: str, where: str) -> "Secret":
    if len(value) < MIN_SECRET_LEN:
        raise BadInput(f"secret {name}: {where} holds {len(value)} characters, fewer than {MIN_SECRET_LEN}; use a "
                       f"longer value (e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(24))'`) and retry")
    return Secret(value, name)


def redact(text: str) -> str:
    """Replace every secret value this process has revealed with ***."""
    if not text:
        return text
    for value in sorted(_revealed, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


class Secret:
    """A revealed secret value: repr/str/format print ***; `.get()` is the only way to the value."""

    __slots__ = ("_value", "name")

    def __init__(self, value: str, name: str = "secret"):
        self._value = value
        self.name = name
        if value:
            _revealed.add(value)

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.name}={MASK})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK


class SecretRef(BaseModel):
    """Where a secret lives: `{env: VAR}` or `{file: path}`. `generate: true` (local envs only) creates
    a random value in the file on first use, so a laptop needs no hand-made secrets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: Optional[str] = None
    file: Optional[str] = None
    generate: bool = False

    @model_validator(mode="after")
    def _exactly_one(self) -> "SecretRef":
        if bool(self.env) == bool(self.file):
            raise ValueError("a secret reference needs exactly one of `env: VAR` or `file: PATH`")
        if self.generate and not self.file:
            raise ValueError("`generate: true` only works with `file:`")
        return self

    def describe(self) -> str:
        return f"env {self.env}" if self.env else f"file {self.file}"

    def available(self, base: Path) -> bool:
        if self.env:
            return bool(os.environ.get(self.env))
        return self.generate or (base / self.file).is_file()

    def reveal(self, name: str, base: Path) -> Secret:
        """Read the value; a missing reference is bad input naming the reference, never a value."""
        if self.env:
            value = os.environ.get(self.env)
            if not value:
                raise BadInput(f"secret {name}: environment variable {self.env} is not set; export it "
                               f"(or point {name} at a file) and retry")
            return _checked(value, name, f"environment variable {self.env}")
        path = (base / self.file) if not os.path.isabs(self.file) else Path(self.file)
        try:
            if path.is_dir():
                raise BadInput(f"secret {name}: {path} is a directory, not a file; point {name} at the file "
                               "holding the value and retry")
            if path.exists() and not path.is_file():  # a FIFO or device would block or read garbage
                raise BadInput(f"secret {name}: {path} is not a regular file; point {name} at the file holding "
                               "the value and retry")
            if not path.exists():
                if not self.generate:
                    raise BadInput(f"secret {name}: file {path} does not exist; create it (mode 600) and retry")
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(_pysecrets.token_urlsafe(24))
            raw = path.read_bytes()
        except PermissionError:
            raise BadInput(f"secret {name}: file {path} is not readable by uid {os.geteuid()}; give that user read "
                           "access (mode 600, owned by it) and retry") from None
        except OSError as exc:  # strerror only: never the exception's text, which could quote file content
            raise BadInput(f"secret {name}: file {path} cannot be read ({exc.strerror}); fix it and retry") from None
        try:
            value = raw.decode("utf-8").strip()
        except UnicodeDecodeError:  # its message quotes a byte of the value: not shown
            raise BadInput(f"secret {name}: file {path} is not UTF-8 text; save the value as UTF-8 and retry") from None
        if not value:
            raise BadInput(f"secret {name}: file {path} is empty; put the value in it and retry")
        return _checked(value, name, f"file {path}")
