"""python3 argv builders for code run inside the stack's containers (the API image, the ops image)."""
from __future__ import annotations


def script(code: str, *args: str) -> list[str]:
    """`python3 -c CODE ARGS...`: the code is a constant of the calling module, the arguments are data."""
    return ["python3", "-c", code, *args]


def stackops(action: str, env_name: str, *args: str) -> list[str]:
    """The backup engine inside the ops container (iosops.backup.stackops), one action for one env."""
    return ["python3", "-m", "iosops.backup.stackops", action, "--env", env_name, *args]
