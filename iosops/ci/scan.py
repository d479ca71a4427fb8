"""The linters and security scanners of `inv ci.lint` and `inv ci.scan`, defined once in SCANNERS.

Each scanner says which of the checkout's files it covers, how its argv is built (iosops.commands.scan)
and how its machine-readable report becomes findings ("path:line CODE message"). A finding is anything
the tool reports; a tool that exits without a readable report is a finding too, so a crash can never pass
the gate. Suppressions live where they are made, each with its reason: `# noqa: X  why`,
`# nosec BXXX # why`, `# hadolint ignore=DLxxxx` under a reason comment, `# shellcheck disable=SCxxxx`,
`#checkov:skip=CKV_X:why`, `# pragma: allowlist secret - why`.
"""
from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from ..commands import promtool
from ..commands import scan as cmd
from ..errors import BadInput
from ..runner import Result, Runner, error_line

CHECKOV = ".venv-checkov/bin/checkov"
APP_REQUIREMENTS = "app/requirements.txt"
MAX_LISTED = 50  # findings listed per scanner in the human output (all of them are in --json)


@dataclass
class Outcome:
    name: str
    covers: str
    files: int
    findings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    status: str = "ok"  # ok | findings | unavailable (the tool ran but could not check: note says why)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "count": len(self.findings)}


@dataclass
class Ctx:
    root: Path
    runner: Runner
    environ: Optional[Mapping[str, str]] = None  # None: os.environ (the scanners' settings, e.g. PIP_AUDIT_REQUIRED)

    def run(self, argv: Sequence[str]) -> Result:
        return self.runner.run([tool(argv[0]), *argv[1:]], mutating=False, check=False, cwd=self.root)


def tool(program: str) -> str:
    """Tools pinned in pyproject.toml live next to the running interpreter (.venv/bin), which need not be
    on PATH when `.venv/bin/inv` is called directly; anything else is looked up on PATH."""
    local = Path(sys.executable).parent / program
    return str(local) if "/" not in program and local.exists() else program


# -- which files ---------------------------------------------------------------------------------------
def repo_files(root: Path, runner: Runner) -> list[str]:
    res = runner.run(cmd.tracked_files(), mutating=False, check=False, cwd=root)
    if res.rc != 0:
        raise BadInput(f"{root} is not a git checkout ({error_line(res.stderr)}); the gates scan the files git "
                       "tracks: run them inside a clone")
    return sorted({p for p in res.stdout.split("\0") if p and (root / p).is_file() and not (root / p).is_symlink()})


def _shebang_shell(root: Path, path: str) -> bool:
    try:
        with open(root / path, "rb") as fh:
            first = fh.readline(80)
    except OSError:
        return False
    return first.startswith(b"#!") and any(s in first for s in (b"/sh", b"bash", b"env sh"))


def py(root: Path, files: list[str]) -> list[str]:
    return [f for f in files if f.endswith(".py")]


def py_app(root: Path, files: list[str]) -> list[str]:
    return [f for f in py(root, files) if f.startswith(("iosops/", "app/"))]


def yaml_files(root: Path, files: list[str]) -> list[str]:
    return [f for f in files if f.endswith((".yml", ".yaml"))]


def shell_scripts(root: Path, files: list[str]) -> list[str]:
    """*.sh plus extension-less files with a shell shebang (.ci/run)."""
    return [f for f in files if f.endswith(".sh") or ("." not in Path(f).name and _shebang_shell(root, f))]


def dockerfiles(root: Path, files: list[str]) -> list[str]:
    return [f for f in files if Path(f).name.startswith("Dockerfile")]


def docker_dockerfiles(root: Path, files: list[str]) -> list[str]:
    return [f for f in dockerfiles(root, files) if f.startswith("docker/")]


def k8s_manifests(root: Path, files: list[str]) -> list[str]:
    return [f for f in yaml_files(root, files) if f.startswith("k8s/")]


def workflows(root: Path, files: list[str]) -> list[str]:
    return [f for f in yaml_files(root, files) if f.startswith(".github/workflows/")]


def alert_rules(root: Path, files: list[str]) -> list[str]:
    return [f for f in yaml_files(root, files) if f.startswith("monitoring/prometheus/rules/")]


def every_file(root: Path, files: list[str]) -> list[str]:
    return list(files)


def requirements(root: Path, files: list[str]) -> list[str]:
    return [f for f in files if f == APP_REQUIREMENTS]


# -- reports into findings (pure) ----------------------------------------------------------------------
class NoReport(ValueError):
    """The tool exited without the report it was asked for."""


def _json(res: Result) -> Any:
    try:
        return json.loads(res.stdout)
    except ValueError:
        raise NoReport(f"exited {res.rc} without a report: {error_line(res.stderr or res.stdout)}") from None


def _rel(root: Path, path: str) -> str:
    p = Path(path)
    return str(p.relative_to(root)) if p.is_absolute() and p.is_relative_to(root) else path.removeprefix("./")


def parse_ruff(root: Path, res: Result) -> list[str]:
    return [f"{_rel(root, d['filename'])}:{d['location']['row']} {d['code']} {d['message']}" for d in _json(res)]


def parse_lines(root: Path, res: Result) -> list[str]:
    """yamllint --format parsable / shellcheck --format gcc: one finding per line, exit 0 when clean."""
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    if res.rc != 0 and not lines:
        raise NoReport(f"exited {res.rc} without a report: {error_line(res.stderr)}")
    return lines


def parse_hadolint(root: Path, res: Result) -> list[str]:
    return [f"{d['file']}:{d['line']} {d['code']} {d['message']}" for d in _json(res)]


def parse_bandit(root: Path, res: Result) -> list[str]:
    data = _json(res)
    return ([f"{_rel(root, r['filename'])}:{r['line_number']} {r['test_id']} {r['issue_text']}" for r in data["results"]]
            + [f"{e['filename']}: not scanned: {e['reason']}" for e in data.get("errors", [])])


def parse_detect_secrets(root: Path, res: Result) -> list[str]:
    return [f"{path}:{s['line_number']} {s['type']}" for path, found in sorted(_json(res)["results"].items())
            for s in found]


def parse_checkov(root: Path, res: Result) -> list[str]:
    data = _json(res)
    reports = data if isinstance(data, list) else [data]
    out: list[str] = []
    for rep in reports:
        results = rep.get("results", {})
        for f in results.get("failed_checks", []):
            out.append(f"{f['file_path'].lstrip('/')}:{f['file_line_range'][0]} {f['check_id']} {f['check_name']}")
        for s in results.get("skipped_checks", []):  # a skip must say why, where it is made
            if not (s.get("check_result", {}).get("suppress_comment") or "").strip():
                out.append(f"{s['file_path'].lstrip('/')} {s['check_id']} skipped without a reason")
        if rep.get("summary", {}).get("parsing_errors"):
            out.append(f"{rep['summary']['parsing_errors']} file(s) checkov could not parse")
    return out


def parse_workflow_schema(root: Path, res: Result) -> list[str]:
    data = _json(res)
    out = [f"{_rel(root, e['filename'])} {e.get('path', '')}: "
           f"{(e.get('best_deep_match') or e).get('message', '')}" for e in data.get("errors", [])]
    return out + [f"{_rel(root, e.get('filename', ''))}: {e.get('message', 'parse error')}"
                  for e in data.get("parse_errors", [])]


def parse_promtool(root: Path, res: Result) -> list[str]:
    if res.rc == 0:
        return []
    text = res.stdout + res.stderr
    found = [line.strip() for line in text.splitlines() if "FAILED" in line or line.strip().startswith(("error", "  "))]
    return [f for f in found if f] or [f"promtool exited {res.rc}: {error_line(text)}"]


def parse_pip_audit(res: Result, source: str) -> tuple[list[str], int, int]:
    """Vulnerable pins as findings; also (dependencies, skipped) so a run that audited nothing is told apart."""
    deps = _json(res)["dependencies"]
    findings = [f"{source}: {d['name']}=={d['version']} {v['id']} (fixed in {', '.join(v.get('fix_versions') or ['-'])})"
                for d in deps for v in d.get("vulns", [])]
    return findings, len(deps), sum(1 for d in deps if d.get("skip_reason"))


# -- scanners that are more than one argv --------------------------------------------------------------
def run_checkov_k8s(ctx: Ctx, files: list[str]) -> tuple[list[str], str, str]:
    """What `inv k8s.policy` checks: each env's overlay rendered by kustomize (namespace, image tag and
    labels only exist after rendering, so the raw bases are not what runs), checked by checkov with the
    skips and reasons written next to the resources."""
    from ..config import known_envs, load_env
    from ..k8s.render import policy, render

    findings, notes = [], []
    for name in known_envs(ctx.root):
        env = load_env(name, root=ctx.root, environ={})
        if not env.cfg.k8s.overlay:
            continue
        out = policy(env, ctx.runner, render(env, ctx.runner, "ci-scan"))
        s = out["summary"]
        findings += [f"k8s/overlays/{out['overlay']}: {f['check']} {f['resource']}: {f['name']}" for f in out["failed"]]
        notes.append(f"{out['overlay']}: {s['passed']} passed, {s['skipped']} skipped with reasons")
    return findings, "ok", "; ".join(notes) or "no env has a Kubernetes overlay"


# pip-audit needs a vulnerability service (PyPI's JSON API or OSV). Offline machines (this repository's own
# test machines) have none, so by default a run that could not audit says UNAVAILABLE and passes; a runner
# that has the network sets this, and then "could not audit" is a finding (fail closed).
PIP_AUDIT_REQUIRED = "IOSOPS_PIP_AUDIT_REQUIRED"
_YES, _NO = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def pip_audit_mode(environ: Optional[Mapping[str, str]] = None) -> tuple[bool, str]:
    """(required, how the scan line names the mode); an unreadable value is bad input, not a guess."""
    raw = (os.environ if environ is None else environ).get(PIP_AUDIT_REQUIRED)
    value = (raw or "").strip().lower()
    if value in _YES:
        return True, f"required ({PIP_AUDIT_REQUIRED}={raw})"
    if value in _NO:
        return False, f"best-effort ({PIP_AUDIT_REQUIRED}={raw})" if raw else f"best-effort ({PIP_AUDIT_REQUIRED} unset)"
    raise BadInput(f"{PIP_AUDIT_REQUIRED}={raw!r} is neither on nor off: set 1 where the runner reaches a vulnerability "
                   "service (pip-audit must audit), 0 or unset on offline machines (UNAVAILABLE passes)")


def _audit(ctx: Ctx, files: list[str]) -> tuple[list[str], str, str]:
    runs = [(".venv", cmd.pip_audit_env())] + [(f, cmd.pip_audit_requirements(f)) for f in files]
    findings, deps, skipped, errors = [], 0, 0, []
    for source, argv in runs:
        res = ctx.run(argv)
        try:
            found, n, s = parse_pip_audit(res, source)
        except (NoReport, KeyError) as exc:
            errors.append(f"{source}: {exc}")
            continue
        findings, deps, skipped = findings + found, deps + n, skipped + s
    if errors and not deps:
        line = "; ".join(errors)
        if any(w in line for w in ("Connection", "resolve", "Max retries", "timed out")):
            return findings, "unavailable", f"no vulnerability service reachable: {line}"
        return findings + errors, "ok", ""
    if deps and skipped == deps:
        return findings, "unavailable", (
            f"nothing audited: the vulnerability service answered 'not found' for all {deps} packages (here "
            "PyPI serves only the package index, not its JSON API, and OSV is unreachable); on a networked "
            "runner the same step audits")
    note = f"{deps} packages audited" + (f", {skipped} not on PyPI (local)" if skipped else "")
    return findings + errors, "ok", note


def run_pip_audit(ctx: Ctx, files: list[str]) -> tuple[list[str], str, str]:
    """Audit, then apply the mode: "could not audit" passes as UNAVAILABLE (best-effort) or is a finding
    (required). The note starts with the mode, so the scan line says which one applied."""
    required, mode = pip_audit_mode(getattr(ctx, "environ", None))
    findings, status, note = _audit(ctx, files)
    if status == "unavailable" and required:
        return findings + [f"pip-audit could not audit, and {PIP_AUDIT_REQUIRED} says this runner must (give it "
                           f"access to PyPI's JSON API or OSV; unset it only on offline machines): {note}"], "findings", mode
    return findings, status, f"{mode}: {note}" if note else mode


# -- the table -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scanner:
    name: str
    covers: str
    select: Callable[[Path, list[str]], list[str]]
    gates: frozenset[str]  # "lint" (fast style/validity), "scan" (every scanner of issue #7)
    argv: Optional[Callable[[Path, list[str]], list[str]]] = None
    parse: Optional[Callable[[Path, Result], list[str]]] = None
    custom: Optional[Callable[[Ctx, list[str]], tuple[list[str], str, str]]] = None


LINT, SCAN, BOTH = frozenset({"lint"}), frozenset({"scan"}), frozenset({"lint", "scan"})

SCANNERS: tuple[Scanner, ...] = (
    Scanner("ruff", "*.py", py, BOTH, lambda root, f: cmd.ruff(f), parse_ruff),
    Scanner("yamllint", "*.yml, *.yaml", yaml_files, BOTH, lambda root, f: cmd.yamllint(f), parse_lines),
    Scanner("shellcheck", "*.sh and shell-shebang scripts (.ci/run)", shell_scripts, BOTH,
            lambda root, f: cmd.shellcheck(f), parse_lines),
    Scanner("hadolint", "Dockerfile*", dockerfiles, BOTH, lambda root, f: cmd.hadolint(f), parse_hadolint),
    Scanner("workflow-schema", ".github/workflows/*.yml (GitHub's workflow schema)", workflows, LINT,
            lambda root, f: cmd.workflow_schema(f), parse_workflow_schema),
    Scanner("promtool-rules", "monitoring/prometheus/rules/*.yml", alert_rules, LINT,
            lambda root, f: promtool.check_rules(f), parse_promtool),
    Scanner("bandit", "iosops/**.py, app/**.py", py_app, SCAN, lambda root, f: cmd.bandit(f), parse_bandit),
    Scanner("detect-secrets", "every tracked file", every_file, SCAN, lambda root, f: cmd.detect_secrets(f),
            parse_detect_secrets),
    Scanner("checkov-docker", "docker/**/Dockerfile*", docker_dockerfiles, SCAN,
            lambda root, f: cmd.checkov_dockerfiles(str(root / CHECKOV), f), parse_checkov),
    Scanner("checkov-k8s", "k8s/ rendered per env overlay", k8s_manifests, SCAN, custom=run_checkov_k8s),
    Scanner("pip-audit", ".venv packages + app/requirements.txt", requirements, SCAN, custom=run_pip_audit),
)


def names(gate: str) -> list[str]:
    return [s.name for s in SCANNERS if gate in s.gates]


def pick(gate: str, only: str = "") -> list[Scanner]:
    chosen = [s for s in SCANNERS if gate in s.gates]
    if not only:
        return chosen
    wanted = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in {s.name for s in chosen}]
    if unknown:
        raise BadInput(f"--only {','.join(unknown)}: not a ci.{gate} scanner; pick from {', '.join(s.name for s in chosen)}")
    return [s for s in chosen if s.name in wanted]


def run_one(ctx: Ctx, scanner: Scanner, all_files: list[str]) -> Outcome:
    files = scanner.select(ctx.root, all_files)
    out = Outcome(scanner.name, scanner.covers, len(files))
    start = time.monotonic()
    if scanner.custom is not None:
        out.findings, out.status, out.note = scanner.custom(ctx, files)
    elif files:
        assert scanner.argv is not None and scanner.parse is not None  # nosec B101 # the table gives both
        res = ctx.run(scanner.argv(ctx.root, files))
        try:
            out.findings = scanner.parse(ctx.root, res)
        except (NoReport, KeyError, TypeError) as exc:
            out.findings = [f"{scanner.name} {exc}"]
    else:
        out.note = "no files to check"
    out.seconds = round(time.monotonic() - start, 2)
    if out.findings:
        out.status = "findings"
    return out


def run_gate(gate: str, root: Path, runner: Runner, only: str = "", workers: int = 0) -> list[Outcome]:
    """Every scanner of the gate, concurrently (they are separate processes); results in table order."""
    scanners = pick(gate, only)
    if any(s.name == "pip-audit" for s in scanners):
        pip_audit_mode()  # a bad setting is exit 2 before any scanner runs
    files = repo_files(root, runner)
    ctx = Ctx(root, runner)
    workers = workers or min(len(scanners), max(2, (os.cpu_count() or 2) * 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda s: run_one(ctx, s, files), scanners))


def summary_lines(outcomes: list[Outcome]) -> list[str]:
    width = max(len(o.name) for o in outcomes)
    lines = []
    for o in outcomes:
        state = {"ok": "", "findings": "  FAIL", "unavailable": "  UNAVAILABLE"}[o.status]
        note = f"  ({o.note})" if o.note else ""
        lines.append(f"{o.name:<{width}}  {o.files:>4} files  {len(o.findings):>3} findings  {o.seconds:6.1f}s"
                     f"{state}{note}")
        lines += [f"    {f}" for f in o.findings[:MAX_LISTED]]
        if len(o.findings) > MAX_LISTED:
            lines.append(f"    ... {len(o.findings) - MAX_LISTED} more (see --json)")
    return lines
