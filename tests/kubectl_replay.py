"""A FAKE kubectl: no Kubernetes API server can be had on this machine. The suite's one replay of a
recorded cluster conversation (tests/unit/k8s_plans/*.json, `responses`): answers in order, checking each
command contains the recorded `match`.

- In-process (plan tests): `ScriptedCluster(responses)` is a Runner executor. `kubectl kustomize` and
  kubernetes-validate are answered by `local` when given (tests/tools runs them for real), otherwise they
  are cluster commands with no recorded answer: unit plan cases never reach them.
- As a program (task-level tests that run `inv` as a subprocess): `python tests/kubectl_replay.py ARGS`
  through a wrapper script named by IOSOPS_K8S__KUBECTL, with $FAKE_KUBECTL_CASE naming the case file. It
  keeps its position in $FAKE_KUBECTL_CASE.n, logs every argv to $FAKE_KUBECTL_CASE.log, and execs the real
  /usr/bin/kubectl for `kubectl kustomize`."""
import json
import os
import sys


class NoAnswer(AssertionError):
    """The library asked the cluster something the recording has no answer left for."""


class Mismatch(AssertionError):
    """The library asked something other than what the recording answers next."""


class Replay:
    def __init__(self, responses):
        self.responses = list(responses)
        self.stdin: list[str] = []

    def answer(self, argv, stdin_text=None) -> tuple[int, str, str]:
        if stdin_text is not None:
            self.stdin.append(stdin_text)
        text = " ".join(argv)
        if not self.responses:
            raise NoAnswer(f"unexpected command (no recorded answer left): {text}")
        r = self.responses.pop(0)
        if r["match"] not in text:
            raise Mismatch(f"expected a command containing {r['match']!r}, got {text!r}")
        out = r.get("stdout", "")
        return r.get("rc", 0), out if isinstance(out, str) else json.dumps(out), r.get("stderr", "")


class ScriptedCluster(Replay):
    """A Runner executor: the recorded output for each cluster command; `local(argv)` answers the local tools."""

    def __init__(self, responses, local=None):
        super().__init__(responses)
        self.local = local

    def __call__(self, argv, **kw):
        from iosops.runner import Result, reveal

        real = reveal(argv)
        if self.local and (real[1:2] == ["kustomize"] or real[0].endswith("kubernetes-validate")):
            return self.local(real)
        return Result(*self.answer(real, kw.get("input")))


def main(argv: list[str]) -> int:
    if argv[:1] == ["kustomize"]:
        os.execv("/usr/bin/kubectl", ["kubectl", *argv])  # nosec B606 # the real kubectl renders; only the cluster is faked
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
    try:
        rc, out, err = Replay(responses[n:]).answer(argv)
    except NoAnswer:
        print(f"fake kubectl: no recorded answer left for {' '.join(argv)}", file=sys.stderr)
        return 97
    except Mismatch as exc:
        print(f"fake kubectl: {exc}", file=sys.stderr)
        return 98
    sys.stdout.write(out)
    sys.stderr.write(err)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
