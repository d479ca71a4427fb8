#!/usr/bin/env bash
# Idempotent machine setup for iosops: system packages, a running Docker engine, and the .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

# What the tasks and tests run for real: Docker (engine, compose 1.29, debootstrap for offline images; gpgv and
# the archive keyring verify the Debian indexes `inv images.stale` reads; gpg signs a test archive),
# the datastores and monitoring tools on loopback, sshd, a local registry, and compression/encryption.
# nftables, logrotate and sudo: what `inv provision`/`inv verify-hosts` need on a host; the netns test
# hosts (tests/netns_hosts.py) share this machine's /usr, so they must be installed here. podman (+ netavark,
# aardvark-dns, catatonit for its pause image): the pod-spec run of the rendered overlays (tests/podspec).
PACKAGES=(
  docker.io docker-compose debootstrap gpgv gpg debian-archive-keyring git curl ca-certificates make
  postgresql redis-server nginx openssh-server docker-registry nftables logrotate sudo
  prometheus prometheus-alertmanager prometheus-postgres-exporter prometheus-redis-exporter
  prometheus-node-exporter zstd pigz age python3-venv pgbackrest
  podman netavark aardvark-dns catatonit
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "bootstrap: system packages present"
fi

# Docker engine: no init system starts it here, so start it when it does not answer.
if ! /usr/bin/docker info >/dev/null 2>&1; then
  echo "bootstrap: starting dockerd (log: /var/log/dockerd.log)"
  $SUDO setsid nohup /usr/sbin/dockerd --host unix:///var/run/docker.sock >/var/log/dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do /usr/bin/docker info >/dev/null 2>&1 && break; sleep 1; done
  /usr/bin/docker info >/dev/null 2>&1 || { echo "bootstrap: dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
else
  echo "bootstrap: Docker engine is running"
fi

# The virtualenv, on Debian's /usr/bin/python3 so that service users (postgres runs the project's WAL
# archive_command) can execute it; a venv on a python under /root would be unreadable to them.
# Recreated when it was made from another interpreter; reinstalled only when pyproject.toml changed.
if [[ -x .venv/bin/python && "$(readlink -f .venv/bin/python)" != "$(readlink -f /usr/bin/python3)" ]]; then
  echo "bootstrap: recreating .venv on /usr/bin/python3"
  rm -rf .venv
fi
if [[ ! -x .venv/bin/python ]]; then /usr/bin/python3 -m venv .venv; fi
stamp=".venv/.iosops-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "bootstrap: installing the project into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
  echo "$want" > "$stamp"
else
  echo "bootstrap: .venv is up to date"
fi
# checkov (inv k8s.policy) in its own venv: its pins clash with boto3's in .venv. Every version is
# fixed by scripts/checkov-constraints.txt, so pip resolves nothing (no minutes of backtracking).
CHECKOV_VERSION=3.3.30
ck_stamp=".venv-checkov/.iosops-installed"
ck_want="$CHECKOV_VERSION $(sha256sum scripts/checkov-constraints.txt | cut -d' ' -f1)"
if [[ ! -f "$ck_stamp" || "$(cat "$ck_stamp")" != "$ck_want" ]]; then
  echo "bootstrap: installing checkov $CHECKOV_VERSION into .venv-checkov"
  [[ -x .venv-checkov/bin/python ]] || python3 -m venv .venv-checkov
  .venv-checkov/bin/pip install --quiet --disable-pip-version-check \
    -c scripts/checkov-constraints.txt "checkov==$CHECKOV_VERSION"
  echo "$ck_want" > "$ck_stamp"
else
  echo "bootstrap: .venv-checkov is up to date"
fi

# kubectl (with its built-in kustomize) renders the k8s overlays; it is not in Debian's archive.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "bootstrap: warning: kubectl not found; inv k8s.* needs kubectl >= 1.27 on PATH (with kustomize v5)" >&2
fi
echo "bootstrap: done"
