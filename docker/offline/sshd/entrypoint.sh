#!/bin/bash
# Test SSH host: trust the public key given in SSH_AUTHORIZED_KEY, make fresh host keys, run sshd.
set -euo pipefail
if [[ -n "${SSH_AUTHORIZED_KEY:-}" ]]; then
  printf '%s\n' "$SSH_AUTHORIZED_KEY" > /root/.ssh/authorized_keys
  chmod 600 /root/.ssh/authorized_keys
fi
ssh-keygen -A >/dev/null
exec /usr/sbin/sshd -D -e
