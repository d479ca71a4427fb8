"""Render, validate and policy-check the kustomize overlays (inv k8s.render / validate / policy).

The overlay files are never edited: a render copies k8s/ to a temporary folder and builds a small
wrapper Kustomization next to it that adds what only the deploy knows (the image tag, which colour is
live, how many replicas the idle colour needs). `kubectl kustomize` does the rest, so the output is
exactly what kustomize makes of the committed files plus that wrapper.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from ..commands import kubectl as k
from ..config import Env, K8sCfg
from ..errors import BadInput, OperationFailed
from ..runner import Runner
from . import opsconfig as ops

COLOURS = ("blue", "green")
API = "ios-api"
PREVIEW = "ios-api-preview"
COLOUR_LABEL = "app.kubernetes.io/color"
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
CHECKOV = Path(".venv-checkov/bin/checkov")


def other(colour: str) -> str:
    return COLOURS[1 - COLOURS.index(colour)]


def deployment(colour: str) -> str:
    return f"{API}-{colour}"


def k8s_cfg(env: Env) -> K8sCfg:
    cfg = env.cfg.k8s
    overlays = sorted(p.name for p in (env.root / "k8s/overlays").iterdir() if p.is_dir())
    if not cfg.overlay:
        raise BadInput(f"env {env.name} has no Kubernetes overlay (k8s.overlay in envs/{env.name}.yaml); "
                       f"overlays: {', '.join(overlays)}")
    if cfg.overlay not in overlays:
        raise BadInput(f"env {env.name}: unknown overlay {cfg.overlay!r} (k8s.overlay); known overlays: "
                       f"{', '.join(overlays)} (folders in k8s/overlays/)")
    return cfg


def check_tag(tag: str) -> str:
    if not tag:
        raise BadInput("image tag missing: pass --tag (the tag `inv build --push` made, e.g. the short git sha)")
    if not TAG_RE.match(tag):
        raise BadInput(f"--tag {tag!r} is not a valid image tag (letters, digits, _ . -; max 128, "
                       "not starting with . or -); pick another")
    return tag


def image_name(env: Env, repository: str) -> str:
    registry = env.cfg.build.registry.rstrip("/")
    return f"{registry}/{repository}" if registry else repository


@dataclass
class Rendered:
    env: str
    overlay: str
    tag: str
    live: str
    text: str
    objects: list[dict] = field(default_factory=list)

    def find(self, kind: str, name: str) -> Optional[dict]:
        return next((o for o in self.objects if o.get("kind") == kind and o["metadata"].get("name") == name), None)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.objects:
            out[o["kind"]] = out.get(o["kind"], 0) + 1
        return dict(sorted(out.items()))


def wrapper(env: Env, cfg: K8sCfg, tag: str, live: str, idle_replicas: Optional[int]) -> dict:
    """The Kustomization that `inv k8s.render` adds on top of the overlay (pure: tested as data)."""
    idle = other(live)
    sel = "/spec/selector/app.kubernetes.io~1color"
    patches = [
        {"target": {"kind": "Service", "name": API},
         "patch": yaml.safe_dump([{"op": "replace", "path": sel, "value": live}])},
        {"target": {"kind": "Service", "name": PREVIEW},
         "patch": yaml.safe_dump([{"op": "replace", "path": sel, "value": idle}])},
        {"target": {"kind": "HorizontalPodAutoscaler", "name": API},
         "patch": yaml.safe_dump([{"op": "replace", "path": "/spec/scaleTargetRef/name", "value": deployment(live)}])},
    ]
    if idle_replicas is not None:
        patches.append({"target": {"kind": "Deployment", "name": deployment(idle)},
                        "patch": yaml.safe_dump([{"op": "replace", "path": "/spec/replicas", "value": idle_replicas}])})
    patches += ops_patches(env)
    ns = {"namespace": cfg.namespace} if cfg.namespace else {}
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f"../k8s/overlays/{cfg.overlay}"],
        # The ops containers' view of this env (iosops/k8s/opsconfig.py), and PostgreSQL's WAL guard.
        "configMapGenerator": [
            {"name": ops.CONFIGMAP, **ns, "files": [ops_config_file(env)]},
            {"name": "ios-postgres-config", **ns, "behavior": "merge",
             "literals": [f"MAX_SLOT_WAL_KEEP_SIZE={env.cfg.backup.walstream.max_slot_wal_keep_size}"]},
        ],
        "images": [
            {"name": "ios-api", "newName": image_name(env, env.cfg.build.repository), "newTag": tag},
            {"name": "ios-ops", "newName": image_name(env, cfg.ops_repository), "newTag": tag},
        ],
        "patches": patches,
    }


def ops_config_file(env: Env) -> str:
    return f"{env.name}.yaml"


def ops_patches(env: Env) -> list[dict]:
    """The ops workloads run `stackops <action> --env <env>` (the file name in ios-ops-config) and mount
    only the keys of Secret ios-backup this env's config references."""
    items = ops.secret_items(env)
    cron_pod = ["spec", "jobTemplate", "spec", "template", "spec"]
    out = [
        {"target": {"kind": "CronJob", "name": "ios-backup"},
         "patch": yaml.safe_dump([{"op": "replace", "path": "/" + "/".join(cron_pod) + "/containers/0/args",
                                   "value": ["backup", "--env", env.name]}])},
        {"target": {"kind": "Deployment", "name": "ios-walstream"},
         "patch": yaml.safe_dump([{"op": "replace", "path": "/spec/template/spec/containers/0/args",
                                   "value": ["walstream", "--env", env.name]}])},
    ]
    volume = {"name": ops.SECRET_VOLUME, "secret": {"secretName": ops.SECRET, "items": items}}
    for kind, name in ops.OPS_WORKLOADS:
        pod: dict = {"volumes": [volume]}
        body: dict = {"spec": {"template": {"spec": pod}}}
        if kind == "CronJob":
            body = {"spec": {"jobTemplate": body}}
        api = "batch/v1" if kind == "CronJob" else "apps/v1"
        out.append({"target": {"kind": kind, "name": name},
                    "patch": yaml.safe_dump({"apiVersion": api, "kind": kind, "metadata": {"name": name}, **body})})
    return out


def render(env: Env, runner: Runner, tag: str, live: str = "blue", idle_replicas: Optional[int] = None) -> Rendered:
    """Build the overlay with the tag and live colour. Read-only: runs in dry-run too."""
    cfg = k8s_cfg(env)
    check_tag(tag)
    if live not in COLOURS:
        raise BadInput(f"live colour {live!r} is not one of {', '.join(COLOURS)}")
    tmp = Path(tempfile.mkdtemp(prefix="iosops-k8s-"))
    try:
        shutil.copytree(env.root / "k8s", tmp / "k8s", ignore=shutil.ignore_patterns("*.md"))
        (tmp / "render").mkdir()
        (tmp / "render" / ops_config_file(env)).write_text(yaml.safe_dump(ops.ops_config(env), sort_keys=True))
        (tmp / "render/kustomization.yaml").write_text(
            yaml.safe_dump(wrapper(env, cfg, tag, live, idle_replicas), sort_keys=False))
        try:
            res = runner.run(k.kustomize(str(tmp / "render"), cfg.kubectl), mutating=False)
        except OperationFailed as exc:
            raise BadInput(f"k8s/overlays/{cfg.overlay}: kustomize could not build it ({exc}); fix the "
                           "kustomization and retry") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    objects = [o for o in yaml.safe_load_all(res.stdout) if o]
    out = Rendered(env.name, cfg.overlay, tag, live, res.stdout, objects)
    check_namespace(out, cfg)
    return out


def check_namespace(r: Rendered, cfg: K8sCfg) -> None:
    if not cfg.namespace:
        return
    for o in r.objects:
        ns = o["metadata"].get("namespace")
        if ns and ns != cfg.namespace:
            raise BadInput(f"k8s/overlays/{cfg.overlay}: {o['kind']}/{o['metadata']['name']} is in namespace "
                           f"{ns!r} but k8s.namespace is {cfg.namespace!r}; make them agree")


# -- secrets ----------------------------------------------------------------------------------------

def consumed_secrets(objects: list[dict]) -> set[tuple[str, str, str]]:
    """(secret, key, consumer) for every Secret key a pod reads (volumes and env)."""
    out: set[tuple[str, str, str]] = set()
    for o in objects:
        spec = o.get("spec", {})
        pod = (spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
               or spec.get("template", {}).get("spec"))
        if not pod:
            continue
        who = f"{o['kind']}/{o['metadata']['name']}"
        for v in pod.get("volumes", []):
            s = v.get("secret")
            if s:
                for item in s.get("items", [{"key": "*"}]):
                    out.add((s["secretName"], item["key"], who))
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    out.add((ref["name"], ref["key"], who))
    return out


def provided_secrets(r: Rendered, env: Env) -> dict[tuple[str, str], str]:
    """(secret, key) -> how it is provided: an ExternalSecret of the overlay, or an env reference (k8s.secrets,
    and for Secret ios-backup the references of the env's backup config, iosops/k8s/opsconfig.py)."""
    cfg = env.cfg.k8s
    out: dict[tuple[str, str], str] = {}
    for o in r.objects:
        if o.get("kind") == "ExternalSecret":
            spec = o.get("spec", {})
            target = spec.get("target", {}).get("name") or o["metadata"]["name"]
            for d in spec.get("data", []):
                out[(target, d["secretKey"])] = (f"ExternalSecret/{o['metadata']['name']} "
                                                 f"({d.get('remoteRef', {}).get('key', '?')})")
    for ident, source in cfg.secrets.items():
        secret, _, key = ident.partition("/")
        out[(secret, key)] = f"secrets.{source}"
    if ops.SECRET not in external_targets(r.objects):
        for s in ops.ops_secrets(env):
            if s.ref is not None:
                out.setdefault((ops.SECRET, s.key), s.source)
    return out


def external_targets(objects: list[dict]) -> set[str]:
    """Secrets an ExternalSecret of the overlay makes in-cluster (the deploy never creates those)."""
    return {(o.get("spec", {}).get("target", {}).get("name") or o["metadata"]["name"])
            for o in objects if o.get("kind") == "ExternalSecret"}


def check_secrets(env: Env, r: Rendered) -> dict[tuple[str, str], str]:
    """Every Secret key a pod reads must have a source; a config source must name a known reference."""
    cfg = env.cfg.k8s
    for ident, source in cfg.secrets.items():
        if "/" not in ident:
            raise BadInput(f"envs/{env.name}.yaml: k8s.secrets.{ident}: expected <Secret>/<key>; fix it and retry")
        if source not in env.cfg.secrets:
            raise BadInput(f"envs/{env.name}.yaml: k8s.secrets.{ident} names secrets.{source}, which is not "
                           f"defined; add secrets.{source}: {{env: VAR}} or {{file: PATH}}")
    provided = provided_secrets(r, env)
    for secret, key, who in sorted(consumed_secrets(r.objects)):
        if (secret, key) not in provided and secret == ops.SECRET:
            source = next((s.source for s in ops.ops_secrets(env) if s.key == key), "?")
            add = "secrets.backup_password: {env: VAR}" if source == "secrets.backup_password" else source
            raise BadInput(f"missing secret reference: {who} reads Secret {secret} key {key}, which neither an "
                           f"ExternalSecret in k8s/overlays/{r.overlay} nor envs/{env.name}.yaml ({source}) "
                           f"provides; add {add} to envs/{env.name}.yaml")
        if (secret, key) not in provided:
            raise BadInput(f"missing secret reference: {who} reads Secret {secret} key {key}, which neither an "
                           f"ExternalSecret in k8s/overlays/{r.overlay} nor k8s.secrets in envs/{env.name}.yaml "
                           f"provides; add \"{secret}/{key}: <name in secrets:>\" to k8s.secrets")
    return provided


def secret_manifests(env: Env, namespace: str, external: frozenset[str] = frozenset()) -> list[tuple[str, Any]]:
    """The Secrets the deploy creates from references, as (name, manifest text) with values revealed
    only here: k8s.secrets, and Secret ios-backup from the backup config's references unless an
    ExternalSecret (`external`: their target names) makes it. Raises BadInput naming the reference
    (never a value) when one is missing."""
    import base64

    by_secret: dict[str, dict[str, str]] = {}
    for ident, source in sorted(env.cfg.k8s.secrets.items()):
        secret, _, key = ident.partition("/")
        value = env.secret(source)  # BadInput when the reference is missing
        by_secret.setdefault(secret, {})[key] = base64.b64encode(value.get().encode()).decode()
    if ops.SECRET not in external:
        for s in ops.ops_secrets(env):
            if s.ref is not None and s.key not in by_secret.get(ops.SECRET, {}):
                value = s.ref.reveal(s.source, env.root)
                by_secret.setdefault(ops.SECRET, {})[s.key] = base64.b64encode(value.get().encode()).decode()
    out = []
    for secret, data in by_secret.items():
        manifest = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": secret, "namespace": namespace,
                                 "labels": {"app.kubernetes.io/managed-by": "iosops"}},
                    "data": data}
        out.append((secret, json.dumps(manifest, sort_keys=True)))
    return out


# -- validation -------------------------------------------------------------------------------------

def validator() -> str:
    exe = Path(sys.executable).parent / "kubernetes-validate"
    return str(exe) if exe.exists() else "kubernetes-validate"


ERROR_RE = re.compile(r"^ERROR (?P<file>\S+) did not validate for resource (?P<kind>[^/\s]+)/(?P<name>\S+) "
                      r"against version (?P<version>\S+): (?P<field>[^:]+): (?P<msg>.*)$")


def parse_validation(output: str) -> list[dict[str, str]]:
    """kubernetes-validate's ERROR lines as {kind, name, version, field, msg} (pure)."""
    out = []
    for line in output.splitlines():
        m = ERROR_RE.match(line.strip())
        if m:
            out.append({k: m.group(k) for k in ("kind", "name", "version", "field", "msg")})
        elif line.startswith("ERROR "):
            out.append({"kind": "?", "name": "?", "version": "?", "field": "?", "msg": line[6:].strip()})
    return out


def source_file(root: Path, overlay: str, kind: str, name: str) -> str:
    """Which committed file defines kind/name (overlay first, then base), for the error message."""
    for folder in (root / "k8s/overlays" / overlay, root / "k8s/base"):
        for path in sorted(folder.glob("*.yaml")):
            try:
                docs = list(yaml.safe_load_all(path.read_text()))
            except yaml.YAMLError:
                continue
            for d in docs:
                if isinstance(d, dict) and d.get("kind", "").lower() == kind.lower() and \
                        name.startswith(str(d.get("metadata", {}).get("name", "\0"))):
                    return str(path.relative_to(root))
    return f"k8s/overlays/{overlay}"


def check_custom_resources(r: Rendered, root: Path) -> list[str]:
    """No bundled schema exists for CRDs (ExternalSecret): check the fields the deploy relies on."""
    notes = []
    for o in r.objects:
        if o.get("kind") != "ExternalSecret":
            continue
        spec, name = o.get("spec") or {}, o["metadata"]["name"]
        missing = [f for f, ok in (("spec.secretStoreRef.name", spec.get("secretStoreRef", {}).get("name")),
                                   ("spec.target.name", spec.get("target", {}).get("name")),
                                   ("spec.data", spec.get("data"))) if not ok]
        missing += [f"spec.data.{i}.remoteRef.key" for i, d in enumerate(spec.get("data") or [])
                    if not (d.get("secretKey") and d.get("remoteRef", {}).get("key"))]
        if missing:
            raise BadInput(f"{source_file(root, r.overlay, 'ExternalSecret', name)}: ExternalSecret/{name}: "
                           f"{missing[0]} is required; fix it and retry")
        notes.append(f"ExternalSecret/{name}: CRD, checked for its required fields (no bundled schema)")
    return notes


def validate(env: Env, runner: Runner, r: Rendered) -> dict[str, Any]:
    """kubernetes-validate --strict for every configured Kubernetes version; the first error is bad
    input naming the committed file, the object and the field."""
    cfg = env.cfg.k8s
    with tempfile.TemporaryDirectory(prefix="iosops-k8s-validate-") as tmp:
        path = Path(tmp) / f"{r.overlay}.yaml"
        path.write_text(r.text)
        for version in cfg.validate_versions:
            res = runner.run([validator(), "--kubernetes-version", version, "--strict", "--quiet", str(path)],
                             mutating=False, check=False)
            errors = parse_validation(res.stdout + res.stderr)
            if res.rc != 0 or errors:
                e = errors[0] if errors else {"kind": "?", "name": "?", "field": "?", "msg": (res.stdout + res.stderr).strip()[-300:]}
                obj = next((o for o in r.objects if o["kind"].lower() == e["kind"].lower()
                            and o["metadata"]["name"] == e["name"]), None)
                if obj:
                    e["kind"] = obj["kind"]
                where = source_file(env.root, r.overlay, e["kind"], e["name"])
                raise BadInput(f"{where}: {e['kind']}/{e['name']}: {e['field']}: {e['msg']} "
                               f"(Kubernetes {version}, --strict); fix it and retry")
    notes = check_custom_resources(r, env.root)
    return {"env": env.name, "overlay": r.overlay, "versions": list(cfg.validate_versions),
            "objects": len(r.objects), "notes": notes}


# -- policy -----------------------------------------------------------------------------------------

def parse_checkov(output: str) -> dict[str, Any]:
    """checkov -o json for one framework: summary, failures and skips with their reasons (pure)."""
    data = json.loads(output)
    if isinstance(data, list):  # several frameworks: we only ask for kubernetes
        data = next((d for d in data if d.get("check_type") == "kubernetes"), data[0])
    results = data.get("results", {})
    fmt = lambda c: {"check": c["check_id"], "resource": c["resource"], "name": c.get("check_name", ""),
                     "reason": c.get("check_result", {}).get("suppress_comment", "")}
    return {"summary": {k: data.get("summary", {}).get(k) for k in ("passed", "failed", "skipped", "checkov_version")},
            "failed": [fmt(c) for c in results.get("failed_checks", [])],
            "skipped": [fmt(c) for c in results.get("skipped_checks", [])]}


def policy(env: Env, runner: Runner, r: Rendered) -> dict[str, Any]:
    exe = env.root / CHECKOV
    if not exe.exists():
        raise OperationFailed(f"checkov is not installed at {CHECKOV}; run scripts/bootstrap.sh")
    with tempfile.TemporaryDirectory(prefix="iosops-k8s-policy-") as tmp:
        path = Path(tmp) / f"{r.overlay}.yaml"
        path.write_text(r.text)
        res = runner.run([str(exe), "--skip-download", "--framework", "kubernetes", "--output", "json",
                          "--file", str(path)], mutating=False, check=False)
    try:
        out = parse_checkov(res.stdout)
    except (ValueError, KeyError, IndexError, StopIteration):
        raise OperationFailed(f"checkov exited {res.rc} without a JSON report: "
                              f"{(res.stderr or res.stdout).strip()[-300:]}") from None
    skipped_without_reason = [s for s in out["skipped"] if not s["reason"].strip()]
    if skipped_without_reason:
        s = skipped_without_reason[0]
        raise OperationFailed(f"checkov: {s['check']} is skipped on {s['resource']} without a reason; "
                              "write why next to the resource (checkov.io/skipN: CHECK=reason)")
    out.update(env=env.name, overlay=r.overlay, ok=not out["failed"])
    return out
