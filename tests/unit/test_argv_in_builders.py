"""Argv lists are built in iosops/commands/ (pure builders, each pinned by a case in tests/unit/cases/), not
inline: a list literal elsewhere in iosops that starts with a program the builders run is a finding. The
program names come from the cases themselves, so a new builder widens the check on its own."""
import ast
import json

from tests.conftest import ROOT

# Lists that start with such a word but are not commands, with the reason.
NOT_ARGV = {
    ("iosops/hosts/provision.py", "docker"): "group names for useradd/usermod (the docker group)",
    ("iosops/deploy/bluegreen.py", "nginx"): "compose service names",
    ("iosops/backup/drill.py", "nginx"): "compose service names the drill keeps",
    ("iosops/dockerx.py", "true"): "the command of a container that is created, never started (files are copied out)",
    ("iosops/hosts/verify.py", "true"): "the expected output of `docker network inspect` (one word per network)",
}


def programs() -> set[str]:
    out = set()
    for f in (ROOT / "tests/unit/cases").glob("*.json"):
        spec = json.loads(f.read_text())
        argv = spec.get("expected")
        if isinstance(argv, list) and argv and isinstance(argv[0], str):
            out.add(argv[0].rsplit("/", 1)[-1])
    return out


def inline_argv(progs: set[str]) -> list[str]:
    found = []
    for path in sorted((ROOT / "iosops").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel.startswith("iosops/commands/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.List) and node.elts and isinstance(node.elts[0], ast.Constant)
                    and isinstance(node.elts[0].value, str)):
                word = node.elts[0].value.rsplit("/", 1)[-1]
                if word in progs and (rel, word) not in NOT_ARGV:
                    found.append(f"{rel}:{node.lineno} {ast.unparse(node)[:80]}")
    return found


def test_the_programs_are_read_from_the_cases():
    assert {"psql", "docker", "sh", "kubectl", "mkdir", "mv", "rm", "cat"} <= programs()


def test_no_argv_list_is_built_outside_the_builders():
    found = inline_argv(programs())
    assert not found, "build these in iosops/commands/ (with a case in tests/unit/cases/):\n" + "\n".join(found)


def test_every_exception_is_still_needed():
    progs = programs()
    for (rel, word) in NOT_ARGV:
        text = (ROOT / rel).read_text()
        assert f'["{word}"' in text or f"['{word}'" in text, f"remove the stale exception {rel}: {word}"
    assert progs  # the check above would pass vacuously without cases
