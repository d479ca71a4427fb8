"""The unit tier stays in-process: no module under tests/unit runs a program, calls `inv` as a subprocess,
looks for a tool on PATH, or talks to the Docker engine. Such a test belongs in tests/tools (a real program,
no service) or tests/integration (a real service). tests/unit/conftest.py enforces the same at run time;
this check also catches a path that a given run did not take."""
import ast
from pathlib import Path

UNIT = Path(__file__).resolve().parent
SPAWNING = {"subprocess": {"run", "call", "check_call", "check_output", "Popen", "getoutput", "getstatusoutput"},
            "os": {"system", "popen", "posix_spawn", "posix_spawnp", "fork", "forkpty", "execv", "execve", "execvp",
                   "execvpe", "execl", "execlp", "spawnv", "spawnvp", "spawnl", "spawnlp"},
            "asyncio": {"create_subprocess_exec", "create_subprocess_shell"},
            "shutil": {"which"}, "pty": {"spawn"},
            # the Docker engine: the SDK's clients, and iosops' one way to make one
            "docker": {"from_env", "DockerClient", "APIClient"}, "dockerx": {"client"}}
# Clients of a real service or host. (docker.errors, paramiko's key classes and the like are plain data.)
FORBIDDEN_MODULES = {"testinfra", "fabric", "requests", "httpx", "urllib.request", "pexpect", "tests.netns_hosts",
                     "tests.integration"}
FORBIDDEN_NAMES = {"run_inv", "INV", "free_port"}


def findings(path: Path) -> list[str]:
    """`file:line what` for each way the module leaves the process (pure: reads the source only)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = path.relative_to(UNIT.parent.parent) if path.is_relative_to(UNIT.parent.parent) else path.name
    out = []
    stubbed = set()  # `monkeypatch.setattr(subprocess, ...)`: the test replaces the module's functions
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "setattr"
                and node.args and isinstance(node.args[0], ast.Name)):
            stubbed.add(id(node.args[0]))
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for m in mods:
                if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_MODULES):
                    out.append(f"{where} imports {m}")
            if isinstance(node, ast.ImportFrom):
                for a in node.names:
                    module = (node.module or "").rpartition(".")[2]  # iosops.dockerx -> dockerx
                    if a.name in FORBIDDEN_NAMES or a.name in SPAWNING.get(module, ()):
                        out.append(f"{where} imports {a.name} from {node.module}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.attr in SPAWNING.get(node.value.id, ()) and id(node.value) not in stubbed:
                out.append(f"{where} uses {node.value.id}.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            out.append(f"{where} uses {node.id}")
        elif isinstance(node, ast.FunctionDef) and node.name.startswith("test") and any(
                a.arg == "inv" for a in node.args.args):
            out.append(f"{where} takes the `inv` fixture (runs inv as a subprocess)")
    # `import subprocess` is there only to stub it out (monkeypatch.setattr(subprocess, "Popen", boom))
    names = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "subprocess"]
    imported = any(isinstance(n, ast.Import) and any(a.name == "subprocess" for a in n.names) for n in ast.walk(tree))
    if imported and not (names and all(id(n) in stubbed for n in names)):
        out.append(f"{rel}: imports subprocess other than to stub it out with monkeypatch.setattr")
    return sorted(set(out))


def test_no_unit_module_leaves_the_process():
    modules = sorted(UNIT.rglob("*.py"))
    assert len(modules) > 20
    found = [f for m in modules if m.name not in ("test_tier_guard.py", "conftest.py") for f in findings(m)]
    assert not found, ("these belong in tests/tools (a real program) or tests/integration (a service):\n"
                       + "\n".join(found))


def test_the_guard_sees_each_way_out(tmp_path):
    probe = tmp_path / "test_probe.py"
    cases = {"import subprocess\nsubprocess.run(['ls'])\n": "uses subprocess.run",
             "from tests.conftest import run_inv\n": "imports run_inv from tests.conftest",
             "import docker\ndocker.from_env()\n": "uses docker.from_env",
             "from iosops import dockerx\ndockerx.client('unix:///x')\n": "uses dockerx.client",
             "from iosops.dockerx import client\n": "imports client from iosops.dockerx",
             "import requests\n": "imports requests",
             "import shutil\nshutil.which('nginx')\n": "uses shutil.which",
             "def test_x(inv):\n    pass\n": "takes the `inv` fixture",
             "import subprocess\n\ndef test_x(monkeypatch):\n    monkeypatch.setattr(subprocess, 'Popen', None)\n": None}
    for source, want in cases.items():
        probe.write_text(source)
        got = "\n".join(findings(probe))
        assert (want in got) if want else got == "", (source, got)
