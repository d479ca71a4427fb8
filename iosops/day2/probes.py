"""Pure parsers and decisions of the day-2 tasks, tested on captured output (tests/unit/test_day2_pure.py)."""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Iterable, Optional

from ..errors import BadInput

COLOURS = ("blue", "green")


# -- containers (docker ps --format PS_FORMAT) ----------------------------------------------------------
@dataclass
class Container:
    id: str
    name: str
    service: str
    image: str
    state: str  # running, exited, restarting, created, paused, dead
    status: str  # docker's words: "Up 3 minutes (healthy)"
    health: str  # healthy, unhealthy, starting; else the state (a container without a healthcheck)

    def as_dict(self) -> dict:
        return asdict(self)


def health_of(state: str, status: str) -> str:
    m = re.search(r"\((healthy|unhealthy|health: starting)\)", status)
    if m and state == "running":
        return "starting" if m.group(1) == "health: starting" else m.group(1)
    return state or "unknown"


def parse_ps(text: str) -> list[Container]:
    out = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 6:
            continue
        cid, name, service, image, state, status = (p.strip() for p in parts)
        out.append(Container(cid, name, service, image, state, status, health_of(state, status)))
    return sorted(out, key=lambda c: (c.service, c.name))


# -- --since ------------------------------------------------------------------------------------------------
GO_DURATION = re.compile(r"^(\d+(\.\d+)?(h|m|s|ms))+$")
DAYS = re.compile(r"^(\d+)d$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")


@dataclass(frozen=True)
class Since:
    """A relative window (a Go duration: docker and kubectl take it as is) or an absolute time (RFC 3339)."""
    duration: str = ""
    time: str = ""

    def docker(self) -> str:
        return self.duration or self.time


def parse_since(text: str) -> Since:
    text = (text or "").strip()
    if not text:
        return Since()
    if GO_DURATION.match(text):
        return Since(duration=text)
    m = DAYS.match(text)
    if m:
        return Since(duration=f"{int(m.group(1)) * 24}h")
    if DATE.match(text) or STAMP.match(text):
        try:
            when = dt.datetime.fromisoformat(text if not DATE.match(text) else f"{text}T00:00:00+00:00")
        except ValueError:
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.timezone.utc)
            return Since(time=when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    raise BadInput(f"--since {text!r}: not a duration (e.g. 10m, 1h30m, 2d) or a time (2026-12-02, "
                   "2026-12-02T10:00:00Z); nothing was read")


def parse_tail(text) -> str:
    """'' or 'all': every line; else a count ≥ 0."""
    text = str(text if text is not None else "").strip()
    if text in ("", "all"):
        return "all"
    if text.isdigit():
        return str(int(text))
    raise BadInput(f"--tail {text!r}: give a number of lines (0 or more) or `all`; nothing was read")


# -- log lines ----------------------------------------------------------------------------------------------
@dataclass
class LogLine:
    host: str
    container: str
    ts: str
    text: str

    def render(self) -> str:
        return " ".join(x for x in (f"[{self.host}/{self.container}]", self.ts, self.text) if x)

    def as_dict(self) -> dict:
        return asdict(self)


TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def parse_log_line(host: str, line: str) -> Optional[LogLine]:
    """`NAME TIMESTAMP TEXT` (docker logs --timestamps, prefixed by LOGS_SCRIPT); a line docker wrote
    without a timestamp (an error) keeps its place with an empty one."""
    line = line.rstrip("\r\n")
    if not line.strip():
        return None
    name, _, rest = line.partition(" ")
    ts, _, text = rest.partition(" ")
    if not TS.match(ts):
        ts, text = "", rest
    return LogLine(host, name, ts, text)


def ts_key(ts: str) -> str:
    """RFC 3339 with nanoseconds, as docker prints it (trailing zeros trimmed): sortable as text once
    the fraction has nine digits."""
    if not ts:
        return ""
    head, _, frac = ts.rstrip("Z").partition(".")
    return f"{head}.{frac.ljust(9, '0')}Z"


def merge_logs(per_host: dict[str, str]) -> list[LogLine]:
    """Every host's lines in one timeline (stable: a host's order is kept among equal times)."""
    lines = [ll for host, text in per_host.items() for raw in text.splitlines()
             if (ll := parse_log_line(host, raw)) is not None]
    return sorted(lines, key=lambda ll: ts_key(ll.ts))


KUBE_PREFIX = re.compile(r"^\[(?P<prefix>[^\]]+)\] (?P<ts>\S+) ?(?P<text>.*)$")


def parse_kube_log_line(line: str) -> Optional[LogLine]:
    """`[pod/NAME/CONTAINER] TIMESTAMP TEXT` (kubectl logs --prefix --timestamps)."""
    line = line.rstrip("\r\n")
    m = KUBE_PREFIX.match(line)
    if not m:
        return LogLine("kubernetes", "", "", line) if line.strip() else None
    return LogLine("kubernetes", m.group("prefix"), m.group("ts"), m.group("text"))


# -- images (docker image ls --format IMAGES_FORMAT) and what containers use -----------------------------
@dataclass
class ImageRow:
    repository: str
    tag: str
    id: str
    created: str

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


def parse_images(text: str) -> list[ImageRow]:
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) == 4 and parts[1] and parts[1] != "<none>":
            out.append(ImageRow(*parts))
    return out


def created_key(created: str) -> str:
    """`2026-12-02 18:20:00 +0000 UTC` -> a UTC timestamp sortable as text."""
    try:
        when = dt.datetime.strptime(" ".join(created.split()[:3]), "%Y-%m-%d %H:%M:%S %z")
    except ValueError:
        return created
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def normal_ref(ref: str) -> str:
    """`repo` means `repo:latest` (a registry's port is not a tag)."""
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last or "@" in last else f"{ref}:latest"


def parse_container_images(text: str) -> tuple[set[str], set[str]]:
    """(image ids, image names) the engine's containers were created from."""
    ids: set[str] = set()
    refs: set[str] = set()
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) == 3:
            ids.add(parts[1])
            if parts[2]:
                refs.add(normal_ref(parts[2]))
    return ids, refs


@dataclass
class PrunePlan:
    remove: list[str] = field(default_factory=list)
    keep: list[dict] = field(default_factory=list)  # {"ref", "why"}


def plan_prune(rows: Iterable[ImageRow], keep: int, used_ids: set[str], used_refs: set[str],
               named: set[str]) -> PrunePlan:
    """Per repository: the `keep` newest tags stay; so does every tag whose image a container (running or
    stopped) was made from, or that a host's state.json names (the live and the rollback colour); the
    rest goes. Pure: the argv and the safety rules are tested as data."""
    if keep < 1:
        raise BadInput(f"--keep {keep}: keep at least 1 image per repository; nothing was removed")
    plan = PrunePlan()
    by_repo: dict[str, list[ImageRow]] = {}
    for r in rows:
        by_repo.setdefault(r.repository, []).append(r)
    for repo in sorted(by_repo):
        ordered = sorted(by_repo[repo], key=lambda r: (created_key(r.created), r.tag), reverse=True)
        for i, r in enumerate(ordered):
            why = ""
            if r.ref in named:
                why = "named in state.json (live or rollback)"
            elif r.id in used_ids or r.ref in used_refs:
                why = "used by a container"
            elif i < keep:
                why = f"one of the {keep} newest"
            if why:
                plan.keep.append({"ref": r.ref, "why": why})
            else:
                plan.remove.append(r.ref)
    return plan


# -- Kubernetes (kubectl get ... -o json) ------------------------------------------------------------------
def _items(text: str) -> list[dict]:
    text = (text or "").strip()
    if not text:
        return []
    data = json.loads(text)
    return data.get("items", []) if data.get("kind", "").endswith("List") else [data]


def rollout_of(obj: dict) -> str:
    """complete, progressing, or failed: REASON (Deployments' conditions; StatefulSets' counters)."""
    spec, status = obj.get("spec", {}), obj.get("status", {})
    want = int(spec.get("replicas", 1))
    if status.get("observedGeneration", 0) < obj.get("metadata", {}).get("generation", 0):
        return "progressing"
    for c in status.get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return f"failed: {c.get('message') or c['reason']}"
    updated = int(status.get("updatedReplicas", 0))
    ready = int(status.get("readyReplicas", 0))
    return "complete" if updated >= want and ready >= want else "progressing"


def parse_k8s_status(service_json: str, workloads_json: str) -> dict:
    live = None
    annotations: dict[str, str] = {}
    for svc in _items(service_json):
        live = (svc.get("spec", {}).get("selector") or {}).get("app.kubernetes.io/color")
        annotations = {k: v for k, v in (svc["metadata"].get("annotations") or {}).items() if k.startswith("iosops.io/")}
    workloads = []
    for obj in _items(workloads_json):
        meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status", {})
        labels = meta.get("labels") or {}
        containers = (spec.get("template", {}).get("spec", {}) or {}).get("containers") or []
        colour = labels.get("app.kubernetes.io/color")
        workloads.append({
            "kind": obj.get("kind", ""), "name": meta.get("name", ""), "colour": colour,
            "live": bool(colour) and colour == live,
            "images": {c["name"]: c.get("image", "") for c in containers},
            "replicas": int(spec.get("replicas", 1)), "ready": int(status.get("readyReplicas", 0)),
            "updated": int(status.get("updatedReplicas", 0)), "available": int(status.get("availableReplicas", 0)),
            "rollout": rollout_of(obj)})
    return {"live": live if live in COLOURS else None, "annotations": annotations,
            "workloads": sorted(workloads, key=lambda w: (w["kind"], w["name"]))}
