"""The operator docs cannot drift from the code: the README's task table lists exactly the tasks `inv --list`
shows, its secrets table names every secret reference of envs/*.yaml, and every `inv ...` command written in
the README, docs/*.md (the workflow and reference pages), docs/runbooks/*.md, backup/*.md, k8s/README.md,
monitoring/README.md and nginx/README.md names a task that exists, with flags that task takes; every relative
link and #anchor in those files resolves; and the README links every page of docs/.
(The checks against `inv --list` itself run a program: tests/tools/test_docs_inv_list.py.)"""
from __future__ import annotations

import importlib.util
import re
import sys
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

README = ROOT / "README.md"
DOCS = sorted([README, *ROOT.glob("docs/*.md"), *ROOT.glob("docs/runbooks/*.md"), *ROOT.glob("backup/*.md"),
               ROOT / "k8s/README.md", ROOT / "monitoring/README.md", ROOT / "nginx/README.md"])
ENVS = ("local", "staging", "prod")
# invoke's own flags, usable before a task name (`inv --list`, `inv --help TASK`)
CORE_FLAGS = {"--list", "-l", "--help", "-h", "--list-format", "--version", "-V", "--complete", "--dry", "-R"}


# -- what exists ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def flags() -> dict[str, set[str]]:
    """task -> every flag it takes (long and short forms), read from the Collection tasks.py builds."""
    spec = importlib.util.spec_from_file_location("_iosops_tasks_root", ROOT / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    hook = sys.excepthook
    try:
        spec.loader.exec_module(module)
    finally:
        sys.excepthook = hook  # tasks.py installs its own for the CLI
    out = {}
    for name in module.ns.task_names:
        names = set()
        for arg in module.ns[name].get_arguments():
            names |= {("--" if len(n) > 1 else "-") + n for n in arg.names}
            if arg.kind is bool:
                names |= {f"--no-{n}" for n in arg.names if len(n) > 1}
        out[name] = names
    return out


# -- the task table -----------------------------------------------------------------------------------------------
def _section(text: str, heading: str) -> str:
    """The body under `## heading` (any level), up to the next heading of the same or a higher level."""
    m = re.search(rf"^(#+) {re.escape(heading)}\n", text, flags=re.M)
    assert m, f"README has no section {heading!r}"
    body = text[m.end():]
    nxt = re.search(rf"^#{{1,{len(m.group(1))}}} ", body, flags=re.M)
    return body[:nxt.start()] if nxt else body


def _table_rows(section: str) -> list[list[str]]:
    rows = []
    for line in section.splitlines():
        if not line.startswith("|") or re.match(r"^\|[\s:|-]+\|$", line):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows.append(cells)
    return rows[1:]  # without the header


def task_table() -> dict[str, list[str]]:
    rows = _table_rows(_section(README.read_text(), "Tasks"))
    return {row[0].strip("`"): row for row in rows}


def test_the_task_tables_usage_column_names_its_own_task(flags):
    for name, row in task_table().items():
        cmds = commands_in(row[1])
        assert cmds and all(c[0] == [name] for c in cmds), f"Tasks table row {name}: usage {row[1]!r}"


# -- the secrets table ---------------------------------------------------------------------------------------------
def _refs(node, path=()):
    """(config path, reference) of every secret reference in a parsed env file."""
    if isinstance(node, dict):
        if set(node) <= {"env", "file", "generate"} and ("env" in node or "file" in node):
            yield ".".join(path), node.get("env") or node.get("file")
            return
        for k, v in node.items():
            yield from _refs(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _refs(v, (*path, str(i)))


def env_secret_refs() -> list[tuple[str, str, str]]:
    out = []
    for env in ENVS:
        data = yaml.safe_load((ROOT / f"envs/{env}.yaml").read_text())
        out += [(env, path, ref) for path, ref in _refs(data)]
        # SSH keys of the env's hosts are secrets too, given as a path
        for host in (data.get("hosts") or {}).get("hosts", []):
            if host.get("key_file"):
                out.append((env, "hosts.hosts[*].key_file", host["key_file"]))
    return out


def test_env_files_have_secret_references_at_all():
    refs = env_secret_refs()
    assert {e for e, _, _ in refs} == set(ENVS)
    assert ("staging", "backup.store.secret_access_key", "IOS_STAGING_BACKUP_S3_SECRET_ACCESS_KEY") in refs


def test_every_secret_reference_of_envs_is_in_the_readme_secrets_table():
    rows = _table_rows(_section(README.read_text(), "Secrets per env"))
    assert rows and all(len(r) == 4 for r in rows), "Secrets per env: name | reference | who reads it | env(s)"
    missing = []
    for env, path, ref in env_secret_refs():
        if not any(f"`{path}`" in name and f"`{ref}`" in reference and env in envs for name, reference, _, envs in rows):
            missing.append(f"| `{path}` | {env}: `{ref}` | ? | {env} |")
    assert not missing, "README 'Secrets per env' lacks these references (row: name | reference | who | envs):\n" \
        + "\n".join(missing)


def test_the_secrets_table_names_every_least_privilege_role_secret():
    from iosops.deploy.dbusers import ROLE_SECRETS, STACK_SECRETS

    section = _section(README.read_text(), "Secrets per env")
    for name in {*ROLE_SECRETS, *STACK_SECRETS, "backup_password"}:
        assert f"`secrets.{name}`" in section, name


# -- inv command lines in the docs ---------------------------------------------------------------------------------
TASK_TOKEN = re.compile(r"^[a-z0-9*][a-z0-9.*|-]*$")


def commands_in(text: str, known=None) -> list[tuple[list[str], list[str], str]]:
    """Every `inv ...` in code (inline spans and fenced blocks): (task names, flags, the command as written).
    `a|b|c` and `x.a|b` are alternatives; `k8s.*` a pattern; `| other` after a task ends the command (a pipe)
    unless `other` is a task too (`inv backup | backups.list --env E`): one of `known`, or any task-like word."""
    text = text.replace("\\|", "|")
    code = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S))
    out = []
    for chunk in [*code, *inline]:
        for line in chunk.splitlines():
            for part in re.split(r"&&|;|\$\(", line):
                m = re.search(r"(?:^|[\s/$(])inv\s+(.*)$", part)
                if m:
                    out.append(_parse(m.group(1).strip(), part.strip(), known))
    return [c for c in out if c is not None]


def _parse(rest: str, written: str, known):
    tokens = rest.split()
    tasks: list[str] = []
    flag_list: list[str] = []
    expect_task = piped = True
    for tok in tokens:
        if tok == "--":
            break  # inv exec -- CMD...
        if tok == "|":
            expect_task = piped = True
            continue
        found = re.findall(r"(?:^|[|\[(])(--?[A-Za-z][\w-]*)", tok)  # --a, [--a, X|--b, (--c
        if found:
            flag_list += found
            expect_task = False
            continue
        if expect_task and tasks and piped and known is not None and \
                not any(fnmatchcase(k, t) for t in _expand(tok) for k in known):
            break  # `| jq .`: a pipe into another program
        if expect_task and TASK_TOKEN.match(tok):
            tasks += _expand(tok)
            expect_task = False
            continue
        if expect_task and tasks:
            break  # `| head`: a pipe into another program
        expect_task = False  # a positional value (`on|off`) or a placeholder (`E`, `<env>`)
    if not tasks and not flag_list:
        return None
    return tasks, flag_list, written


def _expand(token: str) -> list[str]:
    first, *alts = token.split("|")
    prefix = first.rsplit(".", 1)[0] + "." if "." in first else ""
    return [first, *(a if "." in a or not prefix else prefix + a for a in alts)]


def test_the_command_parser_reads_the_doc_idioms():
    assert commands_in("`inv k8s.render|validate|policy --env E [--tag T]`") == \
        [(["k8s.render", "k8s.validate", "k8s.policy"], ["--env", "--tag"], "inv k8s.render|validate|policy --env E [--tag T]")]
    assert commands_in("`inv maintenance on\\|off --env E [--reason TEXT]`")[0][:2] == (["maintenance"], ["--env", "--reason"])
    assert commands_in("```sh\n$ inv backups.list --env prod --json | jq .\n```", known={"backups.list"})[0][:2] == (["backups.list"], ["--env", "--json"])
    assert commands_in("`inv backup | backups.list | backups.verify --env E`")[0][0] == ["backup", "backups.list", "backups.verify"]
    assert commands_in("`inv restore [--backup ID|--to-time T|--latest] [--yes]`")[0][1] == ["--backup", "--to-time", "--latest", "--yes"]
    assert commands_in("`./scripts/bootstrap.sh && .venv/bin/inv ci.lint && .venv/bin/inv ci.test`") == \
        [(["ci.lint"], [], ".venv/bin/inv ci.lint"), (["ci.test"], [], ".venv/bin/inv ci.test")]
    assert commands_in("`inv exec --env E -- psql -c 'select 1'`")[0][:2] == (["exec"], ["--env"])
    assert commands_in("`inv --help TASK`")[0][:2] == ([], ["--help"])
    assert commands_in("invoke is not `invoice` and not inv in prose") == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_inv_command_in_the_docs_names_a_real_task_and_its_flags(doc, flags):
    problems = []
    for tasks, used, written in commands_in(doc.read_text(), known=set(flags)):
        if not tasks:
            problems += [f"{written!r}: {f} is not an inv flag" for f in used if f not in CORE_FLAGS]
            continue
        for task in tasks:
            matches = [t for t in flags if fnmatchcase(t, task)]
            if not matches:
                problems.append(f"{written!r}: no task {task!r} (inv --list)")
                continue
            for f in used:
                if f not in CORE_FLAGS and not any(f in flags[t] for t in matches):
                    problems.append(f"{written!r}: {task} takes no {f}")
    assert not problems, f"{doc.relative_to(ROOT)}:\n" + "\n".join(problems)


# -- links between the docs ----------------------------------------------------------------------------------------
def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(doc):
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"^[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            problems.append(f"{target}: no such file")
        elif anchor and (dest.is_dir() or anchor not in _anchors(dest)):
            problems.append(f"{target}: no heading with that anchor in {dest.relative_to(ROOT)}")
    assert not problems, f"{doc.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_the_readme_links_every_page_of_docs():
    """The README is the table of contents: a page added under docs/ without a link from it is not found."""
    linked = {(ROOT / target.partition("#")[0]).resolve()
              for target in re.findall(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)", README.read_text())}
    unlinked = [p.name for p in ROOT.glob("docs/*.md") if p.resolve() not in linked]
    assert not unlinked, "README links no page " + ", ".join(unlinked)
