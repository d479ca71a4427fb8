"""Pod-spec run: the rendered overlay turned into what `podman kube play` (podman 4.3) can run.

This is NOT Kubernetes: no API server, scheduler, Services, NetworkPolicies, PDBs or HPA. It exists to run
the rendered pod specs for real (tests/podspec/) — their securityContext, env, envFrom, volumeMounts, probes
and command stay exactly as rendered. Everything podman cannot do is converted here, in one place, and
each conversion is listed in `Translation.notes`:

- StatefulSet -> Pod named after its Service (`spec.serviceName`): on one podman network a pod's name
  resolves by DNS, so `ios-postgres:5432` and `ios-redis:6379` (the names the API and ops config use)
  reach them. podman has no StatefulSets and no Services.
- Deployment -> kept, with `replicas: 1` (podman makes one pod per replica; no scheduler to spread them).
- order: StatefulSets' pods first, then Deployments (podman starts pods in file order and never retries a
  failed init container; the API's `migrate` init container waits for PostgreSQL, which must exist).
- CronJob -> its job template's pod as a Pod `<name>-run` (restartPolicy as rendered), played on demand.
- volumeClaimTemplates / persistentVolumeClaim -> a per-run host directory, owned as the kubelet leaves
  a fresh volume with `fsGroup` (root:fsGroup, g+rwx, setgid). A podman named volume would be
  pre-filled from the image (copy-up), which a fresh PVC never is.
- secret volumes -> a per-run host directory holding only the listed items, mode `defaultMode` plus group
  read, group fsGroup (what the kubelet does with fsGroup). podman 4.3.1's secret volumes panic
  (nil dereference in VolumeFromSecret), so they cannot be played as they are. `secretKeyRef` env needs
  no conversion (podman secrets, see `podman_secret_json`).
- emptyDir -> a per-run host directory, mode 0777 (+ fsGroup's group, setgid) like the kubelet's; podman's
  own emptyDir copies the image's directory in, hiding what a real emptyDir would not have.
- image -> the registry-less local name (`localhost/<path>:<tag>`, loaded with `docker save | podman
  load`); imagePullPolicy Always -> IfNotPresent (no registry is reachable).
- containers[].ports -> left out: podman 4.3 publishes every containerPort on the host (two API colours
  would fight over :8000, and the host's ports are not ours); probes that name a port still work, and
  the rendered ports are kept in `Translation.ports` for whoever resolves a probe's named port.
- `$(VAR)` in command/args -> expanded from the container's env and envFrom ConfigMaps, as the kubelet
  does (podman passes it through literally).

Pure except `materialize()`, which creates the host directories.
"""
from __future__ import annotations

import base64
import copy
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

VAR_RE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass(frozen=True)
class HostDir:
    """A directory to create before the play: owner uid/gid and mode; `files` maps a file name to
    (secret, key, mode) for secret volumes."""
    path: str
    uid: int
    gid: int
    mode: int
    files: tuple[tuple[str, str, str, int], ...] = ()


@dataclass
class Translation:
    play: list[dict] = field(default_factory=list)  # ConfigMaps, then Pods and Deployments: one play file
    jobs: list[dict] = field(default_factory=list)  # Pods from CronJob templates, played one at a time
    dirs: list[HostDir] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # rendered image -> local podman name
    ports: dict[tuple[str, str], list[dict]] = field(default_factory=dict)  # (pod, container) -> rendered ports
    secrets: set[tuple[str, str]] = field(default_factory=set)  # (Secret, key) every pod reads
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def pod_names(self) -> list[str]:
        """The podman pod names the play file makes (a Deployment's single replica is `<name>-pod-0`)."""
        return [o["metadata"]["name"] + ("-pod-0" if o["kind"] == "Deployment" else "")
                for o in self.play if o["kind"] in ("Pod", "Deployment")]


def local_image(ref: str) -> str:
    """`registry.example:5000/iosops/api:t1` -> `localhost/iosops/api:t1`: the name `podman load` gives an
    image saved from Docker under `iosops/api:t1` (a first path part with a dot or colon is a registry)."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        ref = rest
    return f"localhost/{ref}"


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an undefined one stays; `$$(X)` is a
    literal `$(X)`."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$(", i):
            out.append("$")
            i += 2
            continue
        m = VAR_RE.match(text, i)
        if m:
            out.append(env.get(m.group(1), m.group(0)))
            i = m.end()
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def container_env(container: dict, configmaps: dict[str, dict]) -> dict[str, str]:
    """The plain values a container sees (envFrom ConfigMaps, then env values; secrets are not needed for
    expansion and are left out)."""
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        ref = src.get("configMapRef")
        if ref and ref["name"] in configmaps:
            env.update({src.get("prefix", "") + k: v for k, v in (configmaps[ref["name"]].get("data") or {}).items()})
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = expand(str(e["value"]), env)
    return env


def _fs_group(pod: dict) -> Optional[int]:
    return (pod.get("securityContext") or {}).get("fsGroup")


def _translate_pod(pod: dict, owner: str, workdir: str, configmaps: dict[str, dict], out: Translation,
                   claims: Optional[list[dict]] = None, claim_suffix: str = "") -> dict:
    """The pod spec with only podman's gaps converted (volumes, images, $(VAR)); the rest as rendered."""
    pod = copy.deepcopy(pod)
    group = _fs_group(pod)
    gid = group if group is not None else 0
    volumes = list(pod.get("volumes", []))
    for c in claims or []:  # a StatefulSet's claim `data` of pod 0 is PVC `data-<sts>-0`
        volumes.append({"name": c["metadata"]["name"],
                        "persistentVolumeClaim": {"claimName": f"{c['metadata']['name']}-{claim_suffix}"}})
    new_volumes = []
    for v in volumes:
        name = v["name"]
        if "secret" in v:
            s = v["secret"]
            path = f"{workdir}/secrets/{owner}/{name}"
            mode = int(s.get("defaultMode", 0o644))
            if group is not None:
                mode |= 0o440  # the kubelet makes files of a volume group-readable by fsGroup
            items = s.get("items") or []
            files = tuple((i["path"], s["secretName"], i["key"], int(i.get("mode", mode))) for i in items)
            out.secrets.update((s["secretName"], i["key"]) for i in items)
            out.dirs.append(HostDir(path, 0, gid, 0o2750 if group is not None else 0o755, files))
            new_volumes.append({"name": name, "hostPath": {"path": path, "type": "Directory"}})
            out.notes.append(f"{owner}: secret volume {name} ({s['secretName']}: "
                             f"{', '.join(i['key'] for i in items)}) -> host directory, mode {oct(mode)}, group {gid}")
        elif "persistentVolumeClaim" in v:
            claim = v["persistentVolumeClaim"]["claimName"]
            path = f"{workdir}/pvc/{claim}"
            out.dirs.append(HostDir(path, 0, gid, 0o2775 if group is not None else 0o755))
            new_volumes.append({"name": name, "hostPath": {"path": path, "type": "Directory"}})
            out.notes.append(f"{owner}: PVC {claim} -> empty host directory, root:{gid}")
        elif "emptyDir" in v:
            path = f"{workdir}/emptydir/{owner}/{name}"
            out.dirs.append(HostDir(path, 0, gid, 0o2777 if group is not None else 0o777))
            new_volumes.append({"name": name, "hostPath": {"path": path, "type": "Directory"}})
            out.notes.append(f"{owner}: emptyDir {name} -> empty host directory, mode 0777 (sizeLimit/medium not enforced)")
        else:
            new_volumes.append(v)
    if new_volumes:
        pod["volumes"] = new_volumes
    for c in pod.get("initContainers", []) + pod.get("containers", []):
        ports = c.pop("ports", None)
        if ports:
            out.ports[(owner, c["name"])] = ports
            out.notes.append(f"{owner}/{c['name']}: ports left out (podman 4.3 publishes every containerPort on "
                             "the host; pods are reached on the network instead; probes still name them)")
        rendered = c["image"]
        c["image"] = out.images.setdefault(rendered, local_image(rendered))
        if c.get("imagePullPolicy") == "Always":
            c["imagePullPolicy"] = "IfNotPresent"
        env = container_env(c, configmaps)
        for key in ("command", "args"):
            if key in c:
                new = [expand(str(a), env) for a in c[key]]
                if new != c[key]:
                    out.notes.append(f"{owner}/{c['name']}: $(VAR) in {key} expanded as the kubelet does")
                c[key] = new
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                out.secrets.add((ref["name"], ref["key"]))
    return pod


def translate(objects: list[dict], workdir: str, *, skip: Callable[[dict], str] = lambda o: "") -> Translation:
    """The rendered objects as a podman play file (see the module doc). `skip(obj)` returns why a workload
    cannot run here (e.g. its image is not obtainable), or "" to run it."""
    out = Translation()
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    out.play += [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}, "data": cm.get("data") or {}}
                 for n, cm in sorted(configmaps.items())]
    order = {"StatefulSet": 0, "Deployment": 1, "CronJob": 2}
    # Datastores first: podman starts pods in file order and runs init containers once, never retried as the
    # kubelet does, so the API's migrate init container must find PostgreSQL's pod already started.
    for o in sorted((o for o in objects if o["kind"] in order), key=lambda o: order[o["kind"]]):
        kind, name = o["kind"], o["metadata"]["name"]
        why = skip(o)
        if why:
            out.skipped.append(f"{kind}/{name}: {why}")
            continue
        meta = {"name": name, "labels": dict((o.get("spec", {}).get("template", {}).get("metadata") or {})
                                              .get("labels") or {})}
        if kind == "StatefulSet":
            svc = o["spec"].get("serviceName") or name
            if svc not in services:
                raise ValueError(f"StatefulSet/{name}: its serviceName {svc!r} is not a Service of the overlay")
            spec = _translate_pod(o["spec"]["template"]["spec"], svc, workdir, configmaps, out,
                                  claims=o["spec"].get("volumeClaimTemplates"), claim_suffix=f"{name}-0")
            out.play.append({"apiVersion": "v1", "kind": "Pod", "metadata": {**meta, "name": svc}, "spec": spec})
            out.notes.append(f"StatefulSet/{name} -> Pod {svc} (its Service's name, resolvable on the network)")
        elif kind == "Deployment":
            d = copy.deepcopy(o)
            d["metadata"] = {"name": name, "labels": dict(o["metadata"].get("labels") or {})}
            if d["spec"].get("replicas", 1) != 1:
                out.notes.append(f"Deployment/{name}: replicas {d['spec'].get('replicas')} -> 1")
            d["spec"]["replicas"] = 1
            if o["spec"]["template"]["spec"].get("initContainers"):
                # podman 4.3 removes a "once" init container right after starting it and fails when it is
                # still running; "always" keeps it (it still runs to completion before the app containers).
                tmeta = d["spec"]["template"].setdefault("metadata", {})
                tmeta.setdefault("annotations", {})["io.podman.annotations.init.container.type"] = "always"
                d["metadata"]["annotations"] = {"io.podman.annotations.init.container.type": "always"}
                out.notes.append(f"Deployment/{name}: podman init container type 'always' (annotation)")
            d["spec"]["template"]["spec"] = _translate_pod(o["spec"]["template"]["spec"], f"{name}-pod-0", workdir,
                                                           configmaps, out)
            out.play.append(d)
        else:
            tmpl = o["spec"]["jobTemplate"]["spec"]["template"]
            meta["labels"] = dict((tmpl.get("metadata") or {}).get("labels") or {})
            spec = _translate_pod(tmpl["spec"], f"{name}-run", workdir, configmaps, out)
            out.jobs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {**meta, "name": f"{name}-run"},
                             "spec": spec})
            out.notes.append(f"CronJob/{name} -> Pod {name}-run (its job template's pod, run once)")
    return out


def podman_secret_json(values: dict[str, str]) -> bytes:
    """A podman secret's payload as podman 4.3's `secretKeyRef` reads it: a JSON map key -> base64."""
    return json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())}).encode()


def materialize(tr: Translation, secret_value: Callable[[str, str], str]) -> None:
    """Create the host directories (and secret files, with values from `secret_value(secret, key)`)."""
    for d in tr.dirs:
        path = Path(d.path)
        path.mkdir(parents=True, exist_ok=True)
        for fname, secret, key, mode in d.files:
            f = path / fname
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secret_value(secret, key))
            os.chown(f, d.uid, d.gid)
            os.chmod(f, mode)
        os.chown(path, d.uid, d.gid)
        os.chmod(path, d.mode)


def dump(docs: list[dict[str, Any]]) -> str:
    import yaml

    return yaml.safe_dump_all(docs, sort_keys=False)
