"""A FAKE kubectl for task-level tests: no Kubernetes API server can be had on this machine.

It replays the recorded cluster answers of a plan case (tests/unit/k8s_plans/*.json, named by
$FAKE_KUBECTL_CASE) in order, checking each command contains the recorded `match`, and logs every
argv to $FAKE_KUBECTL_CASE.log. `kubectl kustomize` is NOT faked: it runs the real /usr/bin/kubectl.
Use it as `k8s.kubectl` (IOSOPS_K8S__KUBECTL) through a wrapper script."""
import json
import os
import sys

argv = sys.argv[1:]
if argv[:1] == ["kustomize"]:
    os.execv("/usr/bin/kubectl", ["kubectl", *argv])

case_path = os.environ["FAKE_KUBECTL_CASE"]
with open(case_path) as fh:
    responses = json.load(fh)["responses"]
counter = case_path + ".n"
n = int(open(counter).read()) if os.path.exists(counter) else 0
with open(counter, "w") as fh:
    fh.write(str(n + 1))
with open(case_path + ".log", "a") as fh:
    fh.write(json.dumps(argv) + "\n")
if argv[-2:] == ["--filename", "-"]:
    sys.stdin.read()  # a Secret manifest: consumed, never stored
if n >= len(responses):
    print(f"fake kubectl: no recorded answer left for {' '.join(argv)}", file=sys.stderr)
    sys.exit(97)
r = responses[n]
text = " ".join(argv)
if r["match"] not in text:
    print(f"fake kubectl: expected a command containing {r['match']!r}, got {text!r}", file=sys.stderr)
    sys.exit(98)
out = r.get("stdout", "")
sys.stdout.write(out if isinstance(out, str) else json.dumps(out))
sys.stderr.write(r.get("stderr", ""))
sys.exit(r.get("rc", 0))
