"""kubectl argv builders. Every command that touches a cluster names its context and namespace
explicitly, so a deploy can never act on whatever context happens to be current."""
from __future__ import annotations

import json
from typing import Mapping, Optional, Sequence

# The smoke test runs inside a pod of the new colour and calls the preview Service: the request goes
# through the Service, kube-proxy and the NetworkPolicies exactly as live traffic will.
SMOKE_SCRIPT = (
    "import json,sys,urllib.request\n"
    "out={}\n"
    "for p in ('/ready','/version'):\n"
    "    try:\n"
    "        r=urllib.request.urlopen(sys.argv[1]+p,timeout=float(sys.argv[2]))\n"
    "        out[p]={'status':r.status,'body':json.loads(r.read() or b'null')}\n"
    "    except Exception as e:\n"
    "        out[p]={'status':getattr(e,'code',0),'error':str(e)[:200]}\n"
    "print(json.dumps(out,sort_keys=True))\n"
)


def _at(kubectl: str, context: str, namespace: Optional[str]) -> list[str]:
    return [kubectl, "--context", context, *(["--namespace", namespace] if namespace else [])]


def current_context(kubectl: str = "kubectl") -> list[str]:
    return [kubectl, "config", "current-context"]


def kustomize(directory: str, kubectl: str = "kubectl") -> list[str]:
    return [kubectl, "kustomize", directory]


def get_json(context: str, namespace: str, kind: str, names: Sequence[str], kubectl: str = "kubectl") -> list[str]:
    """Objects as JSON; nothing (empty stdout) for objects that do not exist."""
    return [*_at(kubectl, context, namespace), "get", kind, *names, "--ignore-not-found", "--output", "json"]


def apply_file(context: str, path: str, kubectl: str = "kubectl") -> list[str]:
    # Client-side apply: fields changed by others (HPA replicas, the switch's selector patch) are left
    # alone unless this render changes them. The rendered objects carry their own namespace.
    return [*_at(kubectl, context, None), "apply", "--filename", path]


def apply_stdin(context: str, namespace: str, kubectl: str = "kubectl") -> list[str]:
    """Apply a manifest given on stdin (Secrets made from references: values never sit in argv)."""
    return [*_at(kubectl, context, namespace), "apply", "--filename", "-"]


def rollout_status(context: str, namespace: str, deployment: str, timeout_s: int,
                   kubectl: str = "kubectl") -> list[str]:
    return [*_at(kubectl, context, namespace), "rollout", "status", f"deployment/{deployment}",
            "--watch", f"--timeout={timeout_s}s"]


def rollout_undo(context: str, namespace: str, deployment: str, to_revision: int = 0,
                 kubectl: str = "kubectl") -> list[str]:
    """Back to `to_revision` (the one read before the change: exact even if the apply changed nothing)."""
    return [*_at(kubectl, context, namespace), "rollout", "undo", f"deployment/{deployment}",
            *([f"--to-revision={to_revision}"] if to_revision else [])]


def scale(context: str, namespace: str, deployment: str, replicas: int, kubectl: str = "kubectl") -> list[str]:
    return [*_at(kubectl, context, namespace), "scale", f"deployment/{deployment}", f"--replicas={replicas}"]


def delete(context: str, namespace: str, kind: str, name: str, kubectl: str = "kubectl") -> list[str]:
    return [*_at(kubectl, context, namespace), "delete", kind, name, "--ignore-not-found", "--wait=false"]


def patch_merge(context: str, namespace: str, kind: str, name: str, patch: Mapping,
                kubectl: str = "kubectl") -> list[str]:
    return [*_at(kubectl, context, namespace), "patch", kind, name, "--type", "merge",
            "--patch", json.dumps(patch, sort_keys=True, separators=(",", ":"))]


def switch_service(context: str, namespace: str, service: str, colour: str, annotations: Mapping[str, str],
                   kubectl: str = "kubectl") -> list[str]:
    """One merge patch: the selector and the bookkeeping annotations change together."""
    patch: dict = {"spec": {"selector": {"app.kubernetes.io/color": colour}}}
    if annotations:
        patch["metadata"] = {"annotations": dict(annotations)}
    return patch_merge(context, namespace, "service", service, patch, kubectl)


def hpa_target(context: str, namespace: str, hpa: str, deployment: str, kubectl: str = "kubectl") -> list[str]:
    return patch_merge(context, namespace, "horizontalpodautoscaler", hpa,
                       {"spec": {"scaleTargetRef": {"name": deployment}}}, kubectl)


def smoke_exec(context: str, namespace: str, deployment: str, container: str, url: str, timeout_s: int,
               kubectl: str = "kubectl") -> list[str]:
    return [*_at(kubectl, context, namespace), "exec", f"deployment/{deployment}", "--container", container,
            "--", "python3", "-c", SMOKE_SCRIPT, url, str(timeout_s)]


# -- backup, restore and housekeeping Jobs (iosops/k8s/backup.py) -----------------------------------------

def create_file(context: str, namespace: str, path: str, kubectl: str = "kubectl") -> list[str]:
    """Create (not apply) an object from a file: a Job name is new every time, a clash is an error."""
    return [*_at(kubectl, context, namespace), "create", "--filename", path]


def logs_follow(context: str, namespace: str, job: str, pod_running_timeout_s: int, kubectl: str = "kubectl") -> list[str]:
    """The Job's log as it is written; returns when its container exits."""
    return [*_at(kubectl, context, namespace), "logs", "--follow", f"job/{job}",
            f"--pod-running-timeout={pod_running_timeout_s}s"]


def logs_tail(context: str, namespace: str, job: str, lines: int, kubectl: str = "kubectl") -> list[str]:
    return [*_at(kubectl, context, namespace), "logs", f"job/{job}", f"--tail={lines}"]


def get_selected_json(context: str, namespace: str, kind: str, selector: str, kubectl: str = "kubectl") -> list[str]:
    return [*_at(kubectl, context, namespace), "get", kind, "--selector", selector, "--output", "json"]


def scale_ref(context: str, namespace: str, ref: str, replicas: int, kubectl: str = "kubectl") -> list[str]:
    """Scale `kind/name` (deployment/..., statefulset/...)."""
    return [*_at(kubectl, context, namespace), "scale", ref, f"--replicas={replicas}"]


def wait_pods_deleted(context: str, namespace: str, selector: str, timeout_s: int, kubectl: str = "kubectl") -> list[str]:
    return [*_at(kubectl, context, namespace), "wait", "--for=delete", "pod", "--selector", selector,
            f"--timeout={timeout_s}s"]


def rollout_status_ref(context: str, namespace: str, ref: str, timeout_s: int, kubectl: str = "kubectl") -> list[str]:
    return [*_at(kubectl, context, namespace), "rollout", "status", ref, "--watch", f"--timeout={timeout_s}s"]


def delete_job(context: str, namespace: str, name: str, timeout_s: int, kubectl: str = "kubectl") -> list[str]:
    """Delete a Job and wait until its pods are gone (a stopped restore must not touch the volume later)."""
    return [*_at(kubectl, context, namespace), "delete", "job", name, "--ignore-not-found", "--cascade=foreground",
            "--wait=true", f"--timeout={timeout_s}s"]


def exec_in(context: str, namespace: str, ref: str, container: str, argv: Sequence[str],
            kubectl: str = "kubectl") -> list[str]:
    return [*_at(kubectl, context, namespace), "exec", ref, "--container", container, "--", *argv]


# -- day-2 (inv status, logs, exec, db.psql) --------------------------------------------------------------

def logs_selected(context: str, namespace: str, selector: str, *, since: str = "", since_time: str = "",
                  tail: int = -1, follow: bool = False, kubectl: str = "kubectl") -> list[str]:
    """Every container of the pods a label selector picks, each line prefixed [pod/NAME/CONTAINER] and
    timestamped. tail -1: every line (with a selector kubectl's default would be 10)."""
    argv = [*_at(kubectl, context, namespace), "logs", "--selector", selector, "--all-containers", "--prefix",
            "--timestamps", "--ignore-errors", "--max-log-requests=20", f"--tail={tail}"]
    if since:
        argv.append(f"--since={since}")
    if since_time:
        argv.append(f"--since-time={since_time}")
    return argv + (["--follow"] if follow else [])


def exec_attached(context: str, namespace: str, ref: str, container: str, argv: Sequence[str], tty: bool = False,
                  kubectl: str = "kubectl") -> list[str]:
    """`kubectl exec` with stdin attached and, for a person at a terminal, a TTY."""
    return [*_at(kubectl, context, namespace), "exec", *(["--stdin", "--tty"] if tty else []), ref,
            "--container", container, "--", *argv]
