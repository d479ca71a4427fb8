"""argv builders for the linters and scanners of `inv ci.lint` / `inv ci.scan` (all offline; pinned in
pyproject.toml's test extra, checkov in .venv-checkov). Paths are relative to the checkout they scan.
Every builder asks for a machine-readable report, so findings are counted by parsing, not by exit code."""
from __future__ import annotations

from typing import Sequence

# Secret values containing this word are deliberate test markers (the secrets-hygiene tests grep all
# output for them); they are fake by construction, so the secret scan does not report them.
FAKE_VALUE_MARKER = "sentinel"
# A Kubernetes `secretName:` names a Secret object, never holds a value; recorded manifests in JSON (the
# plan tests' expected Jobs) cannot carry the inline allowlist comment YAML gets.
SECRET_NAME_LINE = r'"secretName": "[a-z0-9-]+"'  # nosec B105 # pragma: allowlist secret - a pattern for Secret names, no value


def ruff(paths: Sequence[str]) -> list[str]:
    """Rule set and exclusions come from pyproject.toml's [tool.ruff]."""
    return ["ruff", "check", "--no-cache", "--output-format", "json", *paths]


def yamllint(paths: Sequence[str]) -> list[str]:
    """Rules come from .yamllint.yaml at the checkout's root."""
    return ["yamllint", "--format", "parsable", *paths]


def shellcheck(paths: Sequence[str]) -> list[str]:
    return ["shellcheck", "--format", "gcc", "--external-sources", *paths]


def hadolint(paths: Sequence[str]) -> list[str]:
    return ["hadolint", "--no-color", "--format", "json", *paths]


def bandit(paths: Sequence[str]) -> list[str]:
    return ["bandit", "--quiet", "--format", "json", *paths]


def detect_secrets(paths: Sequence[str]) -> list[str]:
    """Scans exactly these files; inline `# pragma: allowlist secret - reason` marks a known fake."""
    return ["detect-secrets", "scan", "--exclude-secrets", FAKE_VALUE_MARKER, "--exclude-lines", SECRET_NAME_LINE,
            *paths]


def checkov_dockerfiles(checkov: str, paths: Sequence[str]) -> list[str]:
    """checkov lives in its own venv (.venv-checkov); --skip-download: no network, no platform call."""
    return [checkov, "--skip-download", "--compact", "--framework", "dockerfile", "--output", "json",
            *(a for p in paths for a in ("--file", p))]


def pip_audit_env() -> list[str]:
    """The packages installed in the running virtualenv (the project, its pins and the dev tools)."""
    return ["pip-audit", "--local", "--progress-spinner", "off", "--format", "json"]


def pip_audit_requirements(path: str) -> list[str]:
    """A fully pinned requirements file (the API image's), audited as written: no resolver, no pip."""
    return ["pip-audit", "--no-deps", "--disable-pip", "--progress-spinner", "off", "--format", "json",
            "--requirement", path]


def workflow_schema(paths: Sequence[str]) -> list[str]:
    """GitHub Actions workflows against the workflow schema vendored inside check-jsonschema (offline)."""
    return ["check-jsonschema", "--builtin-schema", "vendor.github-workflows", "--output-format", "json", *paths]


def tracked_files() -> list[str]:
    """What the gates cover: every file git tracks plus new files it does not ignore (NUL-separated)."""
    return ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
