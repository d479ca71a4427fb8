"""SSH test hosts that each run their own Docker engine: one network + mount + UTS namespace per host.

    with NetnsHosts(3) as hosts:          # or: python -m tests.netns_hosts up --hosts 3 --state FILE
        hosts.load_images(["iosops/redis:7-bookworm"])
        hosts[0].address, hosts[0].key_file, hosts[0].docker_socket, hosts[0].host_public_key

The recipe for host i of run R (subnet 10.213.K.0/24, K the lowest free one on this machine):

network   `ip netns add iosops-tR-i`; a veth pair `iosvR-i` (root side, enslaved to the bridge `iosbrR`,
          which holds 10.213.K.1/24) <-> `eth0` (inside, 10.213.K.(10+i)/24); `lo` up inside. No default
          route: a host reaches only the subnet (the other hosts and the root namespace), never beyond.
          Measured on a model (a bridge in a namespace with two veth peers): bridging is layer 2, host to
          host works with ip_forward=0 in the bridge's namespace, so the root's ip_forward plays no part
          (the root reaches the hosts on-link, no routing either); but with br_netfilter loaded (Docker
          loads it; bridge-nf-call-iptables=1) bridged frames cross the FORWARD chain, and Docker's policy
          DROP stops them: one rule `-i iosbrR -o iosbrR -j ACCEPT` (comment `iosops-netns R`) is
          inserted, as Docker does for docker0, only when br_netfilter is on, and exactly that rule is
          deleted at teardown. `lo` inside must be up (measured: with it down, a connection to the
          host's own address times out; local addresses route over lo, Docker's published ports too).
          Inside, each dockerd turns on ip_forward in its own namespace (per-netns) to route its bridges.
mounts    a persistent mount namespace (`unshare --mount=FILE --propagation private`, entered after
          `nsenter --net`): copies of other namespaces' files (nsfs), of /run and of the machine engine's
          mounts are detached; a fresh sysfs (this netns's devices) with the machine's cgroup mounts
          moved onto its /sys/fs/cgroup (runc gets the machine's controllers: compose's mem_limit, cpus,
          pids_limit work; a bare cgroup2 has no controllers on this hybrid machine, and `cpus` would be
          refused); /etc/docker/key.json removed in the host (the engine ID derives from it);
          tmpfs on /run (+ /run/sshd,
          /run/lock), /tmp and /var/tmp; private bind mounts of real directories (ext4, not overlayfs:
          overlay2 cannot sit on overlayfs) on /srv and /var/lib/docker; overlayfs (lower = the machine's
          directory, upper in the run's state) over /etc /home /root /var/log /var/mail /var/spool
          /var/lib/logrotate /usr/local /opt, so useradd, /etc/docker/daemon.json, /etc/sysctl.d,
          /etc/nftables.conf, /etc/security/limits.d, /etc/logrotate.d stay in the host; /proc/sys/{kernel,
          vm,fs,...} read-only (those are machine-wide: `sysctl --load` of vm.max_map_count on a test
          host fails instead of changing this machine; /proc/sys/net stays writable, it is per netns);
          shims bind-mounted over /usr/bin/systemctl (enable|restart docker) and apt-get/apt (refuse: no
          package may be installed into the shared root by provisioning a test host); the host's own
          state directory bound at /run/iosops-testhost and the whole run directory covered (a host never
          sees another host's files).
engine    dockerd --data-root /var/lib/docker --exec-root /run/docker --config-file /etc/docker/daemon.json
          --pidfile /run/iosops-testhost/dockerd.pid -H unix:///run/docker.sock (the default socket in an
          SSH session) -H unix:///run/iosops-testhost/docker.sock (= STATE/hI/ctl/docker.sock from the root
          namespace, for `docker load`). Its own containerd (the private /run has no system containerd).
sshd      its own host key (ed25519, generated per host), /etc/ssh/sshd_config in the host's /etc:
          0.0.0.0:22 inside the netns (= the host's address; `inv verify-hosts` checks 0.0.0.0:22), root by
          the run's generated key only, no passwords, PAM on (so a key login of a locked-password user such
          as `deploy` works as on a real host).

Every name carries the run id; the run's state (STATE = /var/lib/iosops-netns/R, or $IOSOPS_NETNS_DIR/R)
holds run.json with the owner PID (and its start time), written before anything is created: teardown
and `cleanup_stale()` (a crashed run: owner dead) work from it alone. Processes are stopped by pidfile
(after `docker rm -f` of that engine's containers); what is still running inside the run's own network
namespaces (SSH sessions, a containerd of a killed dockerd) is named and stopped too. Never by name.

What a host cannot do: load kernel modules or change machine-wide sysctls (use hosts.sysctl_live false),
or reach anything outside the subnet (no registry: images come in with `load_images`).
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

BASE = Path(os.environ.get("IOSOPS_NETNS_DIR") or "/var/lib/iosops-netns")
SUBNET_PREFIX = "10.213"
INSIDE_CTL = "/run/iosops-testhost"  # the host's own state directory, as seen inside the host
OVERLAYS = ("etc", "home", "root", "var/log", "var/mail", "var/spool", "var/lib/logrotate", "usr/local", "opt")
RO_SYSCTL = ("kernel", "vm", "fs", "dev", "debug", "user", "abi", "crypto")
TOOLS = ("ip", "nsenter", "unshare", "findmnt", "iptables", "dockerd", "sshd", "ssh-keygen", "setsid")
DOCKER = "/usr/bin/docker"
RULE_CHAIN = "FORWARD"


class NetnsError(RuntimeError):
    pass


def _run(argv: list[str], *, check: bool = True, timeout: float = 60, input: Optional[str] = None,
         ) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise NetnsError(f"{shlex.join(argv)}: exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-800:]}")
    return proc


def missing_requirements() -> list[str]:
    """Why this machine cannot make netns hosts (empty: it can)."""
    why = []
    if os.geteuid() != 0:
        why.append("not root (namespaces, bridges and iptables need root)")
    why += [f"no `{t}` on PATH" for t in TOOLS if shutil.which(t) is None]
    if not Path(DOCKER).exists():
        why.append(f"no {DOCKER}")
    return why


# -- process helpers (PID 1 here does not reap orphans: a zombie counts as stopped) --------------------
def _stat(pid: int) -> Optional[list[str]]:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text.rsplit(")", 1)[1].split()  # fields from 3 (state) on


def alive(pid: int, start: Optional[int] = None) -> bool:
    st = _stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    return start is None or int(st[19]) == start  # field 22: start time (guards against PID reuse)


def start_time(pid: int) -> Optional[int]:
    st = _stat(pid)
    return int(st[19]) if st else None


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (FileNotFoundError, ProcessLookupError):
        return []


def _read_pid(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def stop_pid(pid: int, what: str, timeout: float = 20) -> str:
    """SIGTERM, wait (bounded), SIGKILL. Returns what happened, for the teardown log."""
    if not alive(pid):
        return f"{what} pid {pid}: not running"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.1)
    if not alive(pid):
        return f"{what} pid {pid}: stopped"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.1)
    return f"{what} pid {pid}: killed after {timeout:.0f} s" + ("" if not alive(pid) else " (STILL ALIVE)")


# -- what runs inside a host ---------------------------------------------------------------------------
def _setup_script(name: str, hdir: Path, run_dir: Path, base: Path) -> str:
    ov = " ".join(OVERLAYS)
    ro = " ".join(RO_SYSCTL)
    return f"""#!/bin/sh
# Inside the new mount namespace of test host {name} (private propagation: nothing reaches the machine).
set -eu
H={shlex.quote(str(hdir))}
hostname {shlex.quote(name)}
# Copies of mounts this host must not hold: other namespaces' files (they would keep those namespaces
# alive), the machine's /run and its engine's mounts, the netns state of every run. Deepest first.
findmnt -rn -o TARGET | sort -r | while read -r t; do
  case "$t" in
    /run|/run/*|/var/lib/docker|/var/lib/docker/*|{shlex.quote(str(base))}|{shlex.quote(str(base))}/*) umount -l "$t" 2>/dev/null || true ;;
  esac
done
findmnt -rn -t nsfs -o TARGET | while read -r t; do umount -l "$t" 2>/dev/null || true; done
# A fresh sysfs shows this netns's devices; the machine's cgroup mounts move into it, so that runc has
# the same controllers as the machine's engine (compose sets mem_limit, cpus, pids_limit). A cgroup2
# mounted here alone would have no controllers on this hybrid-cgroup machine: `cpus` would be refused.
mkdir -p "$H/cg"
mount --rbind /sys/fs/cgroup "$H/cg"
umount -l /sys
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount --move "$H/cg" /sys/fs/cgroup
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/sshd /run/lock /run/user {INSIDE_CTL}
chmod 1777 /run/lock
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp
mount --bind "$H/srv" /srv
mount --bind "$H/docker" /var/lib/docker
for d in {ov}; do
  [ -d "/$d" ] || continue
  n=$(echo "$d" | tr / _)
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$H/ov/$n/upper,workdir=$H/ov/$n/work" "/$d"
done
for d in {ro}; do
  [ -d "/proc/sys/$d" ] || continue
  mount --bind "/proc/sys/$d" "/proc/sys/$d"
  mount -o remount,bind,ro "/proc/sys/$d"
done
for s in systemctl apt-get apt; do
  [ -e "/usr/bin/$s" ] || continue
  mount --bind "$H/shims/$s" "/usr/bin/$s"
  mount -o remount,bind,ro "/usr/bin/$s"
done
# The host's own files (written now, in the host's overlays: private to it).
install -d -m 0755 /etc/ssh /etc/docker
install -m 0600 "$H/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key
install -m 0644 "$H/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub
install -m 0644 "$H/sshd_config" /etc/ssh/sshd_config
install -d -m 0700 /root/.ssh
install -m 0600 "$H/authorized_keys" /root/.ssh/authorized_keys
# The engine's identity (docker info ID) comes from /etc/docker/key.json: the machine's must not be shared.
rm -f /etc/docker/key.json
[ -e /etc/docker/daemon.json ] || printf '{{}}\\n' > /etc/docker/daemon.json
echo {shlex.quote(name)} > /etc/hostname
printf '127.0.1.1\\t%s\\n' {shlex.quote(name)} >> /etc/hosts
mount --bind "$H/ctl" {INSIDE_CTL}
# Last: the run directory (every host's state) disappears from this host's view.
mount -t tmpfs -o ro,mode=0755,nosuid,nodev,noexec tmpfs {shlex.quote(str(base))}
"""


def _dockerd_script(name: str) -> str:
    c = INSIDE_CTL
    return f"""#!/bin/sh
# The engine of test host {name}: the same arguments at bring-up and on `systemctl restart docker`.
exec setsid -f /usr/sbin/dockerd --data-root /var/lib/docker --exec-root /run/docker \\
  --pidfile {c}/dockerd.pid --config-file /etc/docker/daemon.json \\
  -H unix:///run/docker.sock -H unix://{c}/docker.sock </dev/null >>{c}/dockerd.log 2>&1
"""


def _systemctl_shim(name: str) -> str:
    c = INSIDE_CTL
    return f"""#!/bin/sh
# systemctl of test host {name} (tests/netns_hosts.py): a test-host shim, there is no systemd in a namespace.
set -u
me="systemctl (iosops test-host shim on {name})"
pidfile={c}/dockerd.pid
running() {{
  p=$(cat "$pidfile" 2>/dev/null) || return 1
  [ -r "/proc/$p/stat" ] || return 1
  st=$(sed 's/.*) //' "/proc/$p/stat" | cut -d' ' -f1)
  [ "$st" != Z ] && [ "$st" != X ]
}}
stop() {{
  running || {{ rm -f "$pidfile"; return 0; }}
  p=$(cat "$pidfile")
  tr '\\0' ' ' < "/proc/$p/cmdline" | grep -q dockerd || {{ echo "$me: pid $p is not dockerd" >&2; exit 1; }}
  kill -TERM "$p"
  i=0
  while running && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
  if running; then kill -KILL "$p"; sleep 0.5; fi
  running && {{ echo "$me: dockerd pid $p did not stop" >&2; exit 1; }}
  rm -f "$pidfile"
}}
start() {{
  sh {c}/dockerd.sh
  i=0
  while [ $i -lt 600 ]; do
    /usr/bin/docker -H unix://{c}/docker.sock version >/dev/null 2>&1 && return 0
    sleep 0.1; i=$((i + 1))
  done
  echo "$me: dockerd did not answer within 60 s; see {c}/dockerd.log" >&2
  exit 1
}}
case "$*" in
  "enable docker"|"enable docker.service")
    echo "$me: enable docker: nothing to do (no init system; this shim starts the engine)" ;;
  "restart docker"|"restart docker.service")
    stop; start; echo "$me: restarted docker (pid $(cat "$pidfile"))" ;;
  *)
    echo "$me: 'systemctl $*' is not supported: a test host has no systemd; only 'enable docker' and 'restart docker' are" >&2
    exit 1 ;;
esac
"""


def _apt_shim(name: str, tool: str) -> str:
    return f"""#!/bin/sh
# {tool} of test host {name} (tests/netns_hosts.py): /usr is this machine's own, shared by every host.
echo "{tool} (iosops test-host shim on {name}): refused '{tool} $*': a test host shares this machine's /usr, so nothing may be installed into it; install the package on the machine (scripts/bootstrap.sh)" >&2
exit 100
"""


def _sshd_config(name: str) -> str:
    return f"""# sshd of test host {name} (tests/netns_hosts.py): root by the run's key only, no passwords.
Port 22
ListenAddress 0.0.0.0
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile {INSIDE_CTL}/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
UseDNS no
X11Forwarding no
PrintMotd no
MaxStartups 64:30:128
MaxSessions 32
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
"""


# -- the hosts -----------------------------------------------------------------------------------------
@dataclass
class Host:
    index: int
    name: str  # netns name and hostname
    address: str
    dir: str  # root-side state of this host
    veth: str
    key_file: str  # root's private key (the run's client key)
    host_public_key: str = ""  # "ssh-ed25519 AAAA..."
    ssh_port: int = 22
    user: str = "root"

    @property
    def ctl(self) -> Path:
        return Path(self.dir) / "ctl"

    @property
    def docker_socket_path(self) -> str:
        return str(self.ctl / "docker.sock")

    @property
    def docker_socket(self) -> str:
        return f"unix://{self.docker_socket_path}"

    @property
    def netns_file(self) -> str:
        return f"/run/netns/{self.name}"

    def ns_files(self, run_dir: Path) -> dict[str, str]:
        return {"net": self.netns_file, "mount": str(run_dir / "ns" / f"mnt-{self.index}"),
                "uts": str(run_dir / "ns" / f"uts-{self.index}")}

    def known_hosts_line(self) -> str:
        return f"{self.address} {self.host_public_key}"

    def as_dict(self) -> dict:
        return {**asdict(self), "docker_socket": self.docker_socket, "docker_socket_path": self.docker_socket_path,
                "netns": self.name, "hostname": self.name, "known_hosts_line": self.known_hosts_line()}


class NetnsHosts:
    """N test hosts (default 3); a context manager. `owner_pid=None` with `detached=True` (CLI `up`)
    keeps the run until `down`; otherwise the run belongs to this process and a later
    `cleanup_stale()` removes it once this process is gone."""

    def __init__(self, n: int = 3, *, base: Path = BASE, owner_pid: Optional[int] = None, detached: bool = False,
                 log=None):
        if n < 1 or n > 200:
            raise ValueError(f"n must be 1..200, not {n}")
        self.n = n
        self.base = Path(base)
        self.run_id = uuid.uuid4().hex[:6]
        self.dir = self.base / self.run_id
        self.owner_pid = None if detached else (owner_pid or os.getpid())
        self.hosts: list[Host] = []
        self.bridge = f"iosbr{self.run_id}"
        self.k: Optional[int] = None
        self.rule: Optional[list[str]] = None
        self.timings: dict[str, float] = {}
        self.log = log or (lambda line: None)

    # sequence protocol for tests
    def __getitem__(self, i: int) -> Host:
        return self.hosts[i]

    def __len__(self) -> int:
        return len(self.hosts)

    def __iter__(self):
        return iter(self.hosts)

    def __enter__(self) -> "NetnsHosts":
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    @property
    def gateway(self) -> str:
        return f"{SUBNET_PREFIX}.{self.k}.1"

    @property
    def key_file(self) -> str:
        return str(self.dir / "id_ed25519")

    @property
    def known_hosts_file(self) -> str:
        return str(self.dir / "known_hosts")

    @property
    def state_file(self) -> Path:
        return self.dir / "run.json"

    # -- state ------------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"run": self.run_id, "dir": str(self.dir), "base": str(self.base),
                "owner_pid": self.owner_pid, "owner_start": start_time(self.owner_pid) if self.owner_pid else None,
                "bridge": self.bridge, "subnet": f"{SUBNET_PREFIX}.{self.k}.0/24", "k": self.k,
                "gateway": self.gateway, "iptables_rule": self.rule, "key_file": self.key_file,
                "known_hosts": self.known_hosts_file, "hosts": [h.as_dict() for h in self.hosts],
                "iosops_env": self.iosops_env(), "timings": self.timings}

    def _save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state(), indent=2) + "\n")
        os.replace(tmp, self.state_file)

    def hosts_config(self, roles: Optional[list[list[str]]] = None) -> list[dict]:
        """hosts.hosts entries for an iosops env: by default the last host is the data host, the others web
        (a lone host holds both)."""
        if roles is None:
            roles = [["web", "data"]] if self.n == 1 else [["web"]] * (self.n - 1) + [["data"]]
        return [{"address": h.address, "port": h.ssh_port, "user": h.user, "key_file": h.key_file,
                 "roles": r, "private_address": h.address} for h, r in zip(self.hosts, roles, strict=True)]

    def iosops_env(self) -> dict[str, str]:
        """Env vars pointing an iosops env (e.g. staging) at these hosts. sysctl_live is false: vm.* sysctls
        are machine-wide and read-only in a test host; the engine is real (require_engine stays true)."""
        if not self.hosts:
            return {}
        return {"IOSOPS_HOSTS__HOSTS": json.dumps(self.hosts_config()), "IOSOPS_HOSTS__SYSCTL_LIVE": "false",
                "IOSOPS_HOSTS__REQUIRE_ENGINE": "true", "IOSOPS_HOSTS__KNOWN_HOSTS_FILE": self.known_hosts_file}

    # -- bring-up ---------------------------------------------------------------------------------------
    def up(self) -> "NetnsHosts":
        why = missing_requirements()
        if why:
            raise NetnsError("cannot make netns test hosts: " + "; ".join(why))
        t0 = time.monotonic()
        cleanup_stale(self.base, log=self.log)
        try:
            self._claim()
            self._bring_up()
        except BaseException:
            self.down()
            raise
        self.timings["up_s"] = round(time.monotonic() - t0, 2)
        self._save()
        return self

    def _claim(self) -> None:
        """Under the base lock: pick a free /24, write run.json (owner first, then everything else)."""
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o700)
        with _lock(self.base):
            used = _used_ks(self.base)
            free = [k for k in range(1, 255) if k not in used]
            if not free:
                raise NetnsError(f"no free {SUBNET_PREFIX}.K.0/24 left (runs in {self.base})")
            self.k = free[0]
            self.dir.mkdir(mode=0o700)
            self.hosts = [Host(index=i, name=f"iosops-t{self.run_id}-{i}", address=f"{SUBNET_PREFIX}.{self.k}.{10 + i}",
                               dir=str(self.dir / f"h{i}"), veth=f"iosv{self.run_id}-{i}", key_file=self.key_file)
                          for i in range(1, self.n + 1)]
            if _br_netfilter_on():
                self.rule = [RULE_CHAIN, "-i", self.bridge, "-o", self.bridge, "-m", "comment",
                             "--comment", f"iosops-netns {self.run_id}", "-j", "ACCEPT"]
            self._save()
            # the network, still under the lock so that two runs never take the same /24
            _run(["ip", "link", "add", self.bridge, "type", "bridge"])
            _run(["ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge])
            _run(["ip", "link", "set", self.bridge, "up"])
        if self.rule:
            _run(["iptables", "-w", "10", "-I", self.rule[0], "1", *self.rule[1:]])

    def _bring_up(self) -> None:
        t = time.monotonic()
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"iosops-netns-{self.run_id}", "-f", self.key_file])
        (self.dir / "ns").mkdir()
        _run(["mount", "--bind", str(self.dir / "ns"), str(self.dir / "ns")])
        _run(["mount", "--make-private", str(self.dir / "ns")])
        for h in self.hosts:
            self._make_host(h)
        self.timings["namespaces_s"] = round(time.monotonic() - t, 2)
        for h in self.hosts:
            self.enter(h, ["/bin/sh", f"{INSIDE_CTL}/dockerd.sh"])
            self.enter(h, ["/usr/sbin/sshd", "-f", "/etc/ssh/sshd_config", "-E", f"{INSIDE_CTL}/sshd.log"])
        for h in self.hosts:
            _wait(lambda h=h: _docker_ping(h.docker_socket_path), 90,
                  f"{h.name}: dockerd did not answer; see {h.ctl / 'dockerd.log'}")
            _wait(lambda h=h: _ssh_banner(h.address), 30, f"{h.name}: sshd did not answer on {h.address}:22; "
                  f"see {h.ctl / 'sshd.log'}")
        self.timings["daemons_s"] = round(time.monotonic() - t - self.timings["namespaces_s"], 2)
        Path(self.known_hosts_file).write_text("".join(h.known_hosts_line() + "\n" for h in self.hosts))

    def _make_host(self, h: Host) -> None:
        hd = Path(h.dir)
        for sub in ("ctl", "srv", "docker", "shims"):
            (hd / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(hd / "docker", 0o710)
        os.chmod(hd / "srv", 0o755)
        for d in OVERLAYS:
            n = d.replace("/", "_")
            up, work = hd / "ov" / n / "upper", hd / "ov" / n / "work"
            up.mkdir(parents=True)
            work.mkdir(parents=True)
            lower = Path("/") / d
            if lower.exists():  # the merged root takes the upper's mode and owner: copy the machine's
                st = lower.stat()
                os.chown(up, st.st_uid, st.st_gid)
                os.chmod(up, st.st_mode & 0o7777)
        key = hd / "ssh_host_ed25519_key"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"host-{h.name}", "-f", str(key)])
        h.host_public_key = " ".join(key.with_suffix(".pub").read_text().split()[:2])
        (hd / "sshd_config").write_text(_sshd_config(h.name))
        shutil.copyfile(self.key_file + ".pub", hd / "authorized_keys")
        (hd / "ctl" / "dockerd.sh").write_text(_dockerd_script(h.name))
        for tool, text in (("systemctl", _systemctl_shim(h.name)), ("apt-get", _apt_shim(h.name, "apt-get")),
                           ("apt", _apt_shim(h.name, "apt"))):
            (hd / "shims" / tool).write_text(text)
            os.chmod(hd / "shims" / tool, 0o755)
        (hd / "setup.sh").write_text(_setup_script(h.name, hd, self.dir, self.base))
        ns = h.ns_files(self.dir)
        Path(ns["mount"]).touch()
        Path(ns["uts"]).touch()
        _run(["ip", "netns", "add", h.name])
        _run(["ip", "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.name])
        _run(["ip", "link", "set", h.veth, "master", self.bridge, "up"])
        _run(["ip", "-n", h.name, "addr", "add", f"{h.address}/24", "dev", "eth0"])
        _run(["ip", "-n", h.name, "link", "set", "eth0", "up"])
        _run(["ip", "-n", h.name, "link", "set", "lo", "up"])
        _run(["nsenter", f"--net={ns['net']}", "unshare", f"--mount={ns['mount']}", f"--uts={ns['uts']}",
              "--propagation", "private", "--", "/bin/sh", str(hd / "setup.sh")])

    # -- using them -------------------------------------------------------------------------------------
    def enter_argv(self, h: Host, argv: list[str]) -> list[str]:
        ns = h.ns_files(self.dir)
        return ["nsenter", f"--net={ns['net']}", f"--mount={ns['mount']}", f"--uts={ns['uts']}", "--", *argv]

    def enter(self, h: Host, argv: list[str], *, check: bool = True, timeout: float = 60,
              input: Optional[str] = None) -> subprocess.CompletedProcess:
        """Run argv inside host h's namespaces from this (root) side, without SSH."""
        return _run(self.enter_argv(h, argv), check=check, timeout=timeout, input=input)

    def docker(self, h: Host, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """The docker CLI against host h's engine, through its extra socket (from the root namespace)."""
        return _run([DOCKER, "-H", h.docker_socket, *args], check=check, timeout=timeout)

    def load_images(self, refs: list[str], timeout: float = 600, only: Optional[list["Host"]] = None) -> dict[str, float]:
        """`docker save` from this machine's engine once, `docker load` into every host (or `only` those)
        in parallel."""
        targets = only or self.hosts
        t0 = time.monotonic()
        tar = self.dir / f"images-{uuid.uuid4().hex[:6]}.tar"
        try:
            _run([DOCKER, "save", "-o", str(tar), *refs], timeout=timeout)
            t1 = time.monotonic()
            with ThreadPoolExecutor(max_workers=len(targets)) as pool:
                list(pool.map(lambda h: _run([DOCKER, "-H", h.docker_socket, "load", "-q", "-i", str(tar)],
                                             timeout=timeout), targets))
        finally:
            tar.unlink(missing_ok=True)
        t2 = time.monotonic()
        out = {"save_s": round(t1 - t0, 2), "load_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2)}
        self.timings["load_images_s"] = out["total_s"]
        return out

    def pids(self) -> dict[str, dict[str, Optional[int]]]:
        return {h.name: {"dockerd": _read_pid(h.ctl / "dockerd.pid"), "sshd": _read_pid(h.ctl / "sshd.pid")}
                for h in self.hosts}

    # -- teardown ---------------------------------------------------------------------------------------
    def down(self) -> list[str]:
        if not self.dir.exists():
            return []
        if not self.state_file.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
            return []
        return teardown(json.loads(self.state_file.read_text()), log=self.log)


# -- teardown from a run.json (this process's run, or a crashed one's) ----------------------------------
def teardown(st: dict, log=None) -> list[str]:
    """Remove everything of one run. Idempotent; each step tolerates what is already gone."""
    log = log or (lambda line: None)
    done: list[str] = []

    def note(line: str) -> None:
        done.append(line)
        log(line)

    run_dir = Path(st["dir"])
    for h in st.get("hosts", []):
        ctl = Path(h["dir"]) / "ctl"
        sock = ctl / "docker.sock"
        dpid = _read_pid(ctl / "dockerd.pid")
        if dpid and alive(dpid) and _docker_ping(str(sock)):
            ids = _run([DOCKER, "-H", f"unix://{sock}", "ps", "-aq"], check=False, timeout=30).stdout.split()
            if ids:
                rm = _run([DOCKER, "-H", f"unix://{sock}", "rm", "-f", *ids], check=False, timeout=120)
                note(f"{h['name']}: removed {len(ids)} container(s)" + ("" if rm.returncode == 0 else
                                                                        f" (rm: {rm.stderr.strip()[:200]})"))
        for what, pidfile in (("dockerd", ctl / "dockerd.pid"), ("sshd", ctl / "sshd.pid")):
            pid = _read_pid(pidfile)
            if pid and alive(pid):
                if what in " ".join(cmdline(pid)):
                    note(f"{h['name']}: " + stop_pid(pid, what, timeout=30 if what == "dockerd" else 10))
                else:
                    note(f"{h['name']}: pidfile {pidfile} names pid {pid}, which is not {what}: left alone")
        # Whatever still runs in this run's own network namespace (SSH sessions, a killed engine's
        # containerd or shims): named, then stopped. Only processes inside our namespace.
        if Path(f"/run/netns/{h['name']}").exists():
            left = [int(p) for p in _run(["ip", "netns", "pids", h["name"]], check=False).stdout.split()]
            for pid in left:
                if alive(pid):
                    note(f"{h['name']}: leftover in the netns: " + stop_pid(pid, " ".join(cmdline(pid))[:80], timeout=10))
        # A container whose engine died (crash, SIGKILL) runs on without it, in its own namespaces: its
        # processes are found by the cgroups of the container IDs in this host's data-root, nothing else.
        for cid, pid in _container_procs(Path(h["dir"]) / "docker"):
            if alive(pid):
                note(f"{h['name']}: leftover of container {cid[:12]}: " + stop_pid(pid, " ".join(cmdline(pid))[:60], 10))
        for cid in _container_ids(Path(h["dir"]) / "docker"):
            for cg in _container_cgroups(cid):
                with contextlib.suppress(OSError):
                    cg.rmdir()  # empty once its processes are gone; runc would have removed it
        for kind in ("mnt", "uts"):
            f = run_dir / "ns" / f"{kind}-{h['index']}"
            if _is_mount(f):
                if _run(["umount", str(f)], check=False).returncode != 0:
                    _run(["umount", "-l", str(f)], check=False)
        if _link_exists(h["veth"]):
            _run(["ip", "link", "del", h["veth"]], check=False)
        if Path(f"/run/netns/{h['name']}").exists():
            _run(["ip", "netns", "del", h["name"]], check=False)
            note(f"{h['name']}: netns removed")
    rule = st.get("iptables_rule")
    if rule:
        for _ in range(3):  # inserted once; bounded in case someone inserted a copy
            if _run(["iptables", "-w", "10", "-C", *rule], check=False).returncode != 0:
                break
            _run(["iptables", "-w", "10", "-D", *rule], check=False)
            note(f"iptables rule removed: {' '.join(rule)}")
    if st.get("bridge") and _link_exists(st["bridge"]):
        _run(["ip", "link", "del", st["bridge"]], check=False)
        note(f"bridge {st['bridge']} removed")
    ns_dir = run_dir / "ns"
    for _ in range(3):  # bound once by us; more if a mount was stacked on it
        if not _is_mount(ns_dir) or _run(["umount", str(ns_dir)], check=False).returncode != 0:
            break
    if _is_mount(ns_dir):
        _run(["umount", "-l", str(ns_dir)], check=False)
    shutil.rmtree(run_dir, ignore_errors=True)
    if run_dir.exists():
        note(f"state dir {run_dir} could not be removed completely")
    else:
        note(f"state dir {run_dir} removed")
    return done


def leftovers(st: dict, pids: Optional[list[int]] = None) -> list[str]:
    """What of a run still exists on this machine (empty after a clean teardown)."""
    out = []
    names = {h["name"] for h in st.get("hosts", [])}
    netns = {line.split()[0] for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines() if line.strip()}
    out += [f"netns {n}" for n in sorted(names & netns)]
    links = [st.get("bridge"), *(h["veth"] for h in st.get("hosts", []))]
    out += [f"link {ln}" for ln in links if ln and _link_exists(ln)]
    out += [f"process {p} ({' '.join(cmdline(p))[:80]})" for p in (pids or []) if alive(p)]
    fwd = _run(["iptables", "-w", "10", "-S", RULE_CHAIN], check=False).stdout
    if f"iosops-netns {st['run']}" in fwd:
        out.append("iptables rule " + next(line for line in fwd.splitlines() if f"iosops-netns {st['run']}" in line))
    mounts = _run(["findmnt", "-rn", "-o", "TARGET"], check=False).stdout.split()
    out += [f"mount {m}" for m in mounts if m.startswith(st["dir"])]
    if Path(st["dir"]).exists():
        out.append(f"state dir {st['dir']}")
    return out


def runs(base: Path = BASE) -> list[dict]:
    out = []
    if not base.is_dir():
        return out
    for d in sorted(base.iterdir()):
        f = d / "run.json"
        if d.is_dir() and f.exists():
            with contextlib.suppress(ValueError, OSError):
                out.append(json.loads(f.read_text()))
    return out


def cleanup_stale(base: Path = BASE, log=None) -> list[str]:
    """Tear down every run whose owner process is gone (a crashed test session or benchmark). Runs without an
    owner (CLI `up`) are kept until `down`."""
    done: list[str] = []
    if not base.is_dir():
        return done
    with _lock(base):
        for d in sorted(base.iterdir()):
            if not d.is_dir():
                continue
            f = d / "run.json"
            if not f.exists():  # crashed between mkdir and run.json (both happen under this lock)
                shutil.rmtree(d, ignore_errors=True)
                done.append(f"removed {d} (no run.json)")
                continue
            try:
                st = json.loads(f.read_text())
            except ValueError:
                continue
            owner = st.get("owner_pid")
            if owner is None or alive(owner, st.get("owner_start")):
                continue
            done.append(f"run {st['run']}: owner pid {owner} is gone; tearing it down")
            done += teardown(st, log=log)
    return done


# -- small probes --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _lock(base: Path):
    with open(base / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _used_ks(base: Path) -> set[int]:
    used = {st["k"] for st in runs(base) if st.get("k")}
    addrs = _run(["ip", "-4", "-o", "addr", "show"], check=False).stdout + _run(["ip", "-4", "route"], check=False).stdout
    for word in addrs.split():
        parts = word.split("/")[0].split(".")
        if len(parts) == 4 and ".".join(parts[:2]) == SUBNET_PREFIX and parts[2].isdigit():
            used.add(int(parts[2]))
    return used


def _container_ids(data_root: Path) -> list[str]:
    d = data_root / "containers"
    return sorted(x.name for x in d.iterdir() if len(x.name) == 64) if d.is_dir() else []


def _container_cgroups(cid: str) -> list[Path]:
    """cgroupfs driver: <hierarchy>/docker/<id> under v1 and the unified hierarchy (v2: docker/<id>)."""
    root = Path("/sys/fs/cgroup")
    found = list(root.glob(f"*/docker/{cid}")) + list(root.glob(f"docker/{cid}"))
    return [p for p in found if p.is_dir()]


def _container_procs(data_root: Path) -> list[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    for cid in _container_ids(data_root):
        for cg in _container_cgroups(cid):
            with contextlib.suppress(OSError):
                out |= {(cid, int(p)) for p in (cg / "cgroup.procs").read_text().split()}
    return sorted(out)


def _br_netfilter_on() -> bool:
    try:
        return Path("/proc/sys/net/bridge/bridge-nf-call-iptables").read_text().strip() == "1"
    except FileNotFoundError:
        return False


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _is_mount(path: Path) -> bool:
    return _run(["findmnt", "-rn", "--mountpoint", str(path)], check=False).returncode == 0


def _docker_ping(sock: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(sock)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return s.recv(64).split(b" ")[1:2] == [b"200"]
    except OSError:
        return False


def _ssh_banner(address: str) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=2) as s:
            s.settimeout(2)
            return s.recv(64).startswith(b"SSH-2.0")
    except OSError:
        return False


def _wait(ok, seconds: float, error: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.2)
    raise NetnsError(error)


# -- CLI -----------------------------------------------------------------------------------------------
def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.netns_hosts", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="bring up N hosts, write their JSON to --state and print it")
    u.add_argument("--hosts", type=int, default=3)
    u.add_argument("--state", required=True, help="where to write the JSON (per host: name, address, ...)")
    u.add_argument("--images", nargs="*", default=[], help="images of this machine's engine to load into each")
    u.add_argument("--owner-pid", type=int, default=0,
                   help="tear the run down (cleanup_stale) once this process is gone; default: keep until `down`")
    d = sub.add_parser("down", help="tear down the run described by --state")
    d.add_argument("--state", required=True)
    sub.add_parser("cleanup", help="tear down runs whose owner process is gone")
    sub.add_parser("list", help="print the runs on this machine")
    a = ap.parse_args(argv)

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    try:
        if a.cmd == "up":
            hosts = NetnsHosts(a.hosts, owner_pid=a.owner_pid or None, detached=not a.owner_pid, log=say)
            hosts.up()
            if a.images:
                try:
                    hosts.load_images(a.images)
                except BaseException:
                    hosts.down()
                    raise
            hosts._save()
            text = json.dumps(hosts.state(), indent=2) + "\n"
            Path(a.state).write_text(text)
            print(text, end="")
        elif a.cmd == "down":
            st = json.loads(Path(a.state).read_text())
            run_json = Path(st["dir"]) / "run.json"
            if run_json.exists():
                st = json.loads(run_json.read_text())
            teardown(st, log=say)
            left = leftovers(st)
            if left:
                say("left over: " + "; ".join(left))
                return 1
        elif a.cmd == "cleanup":
            for line in cleanup_stale(log=say):
                print(line)
        else:
            for st in runs():
                owner = st.get("owner_pid")
                state = "detached" if owner is None else ("alive" if alive(owner, st.get("owner_start")) else "STALE")
                print(f"{st['run']} {st['subnet']} hosts={len(st['hosts'])} owner={owner} ({state}) {st['dir']}")
    except (NetnsError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


# -- an iosops env on these hosts (the multi-host test and benchmarks/deploy.py --hosts N) ---------------
def staging_vars(hosts: "NetnsHosts", state_dir: Path, images: dict[str, str], s3_url: str = "",
                 age_identity: str = "", age_recipient: str = "") -> dict[str, str]:
    """Env vars that point env `staging` at these hosts (web, ..., data): its own state dir and
    known_hosts file, images by local name (no registry), self-signed TLS, the offline images, test
    values for every secret staging references (none of them real). The backup store stays S3 (the
    config refuses a local store for SSH hosts): `s3_url` (e.g. moto on the bridge's address) with an
    age key pair of the caller's, or else an endpoint nobody serves (backups not under test)."""
    store = {"IOSOPS_BACKUP__STORE__ENDPOINT_URL": s3_url or f"http://{hosts.gateway}:9"}
    if age_recipient:
        store["IOSOPS_BACKUP__ENCRYPTION_RECIPIENT"] = age_recipient
    return {**store, **hosts.iosops_env(), "IOSOPS_STATE_DIR": str(state_dir),
            "IOSOPS_HOSTS__KNOWN_HOSTS_FILE": str(Path(state_dir) / "staging.known_hosts"),
            "IOSOPS_BUILD__REGISTRY": "", "IOSOPS_STACK__API_WORKERS": "1",
            "IOSOPS_DEPLOY__TLS__SELF_SIGNED": "true", "IOSOPS_DEPLOY__TLS__CERT": "nginx/certs/fullchain.pem",
            "IOSOPS_DEPLOY__TLS__KEY": "nginx/certs/privkey.pem", "IOSOPS_DEPLOY__SERVER_NAME": "localhost",
            "IOSOPS_DEPLOY__RATE_LIMIT_RPS": "1000", "IOSOPS_DEPLOY__RATE_LIMIT_BURST": "2000",
            "IOSOPS_NOTIFY__REQUIRED": "false",
            "IOS_STAGING_POSTGRES_PASSWORD": "mh-" + uuid.uuid4().hex, "IOS_STAGING_BACKUP_PASSWORD": "mb-" + uuid.uuid4().hex,  # pragma: allowlist secret - random per-run test passwords
            "IOS_STAGING_BACKUP_S3_ACCESS_KEY_ID": "AKIA" + uuid.uuid4().hex[:16].upper(),
            "IOS_STAGING_BACKUP_S3_SECRET_ACCESS_KEY": uuid.uuid4().hex + uuid.uuid4().hex[:8],  # pragma: allowlist secret - random per run (moto takes any)
            "IOS_STAGING_BACKUP_AGE_IDENTITY": age_identity or "AGE-SECRET-KEY-1" + "Q" * 58,
            **{f"IOSOPS_IMAGES__{k.upper()}": v for k, v in images.items()}, **_role_secrets()}


def _role_secrets() -> dict[str, str]:
    """Per-run test values for staging's datastore role and user passwords (iosops/deploy/dbusers.py)."""
    from iosops.deploy.dbusers import ROLE_SECRETS

    return {f"IOS_STAGING_{name.upper()}": f"nh-{uuid.uuid4().hex}" for name in ROLE_SECRETS}


def load_release(hosts: "NetnsHosts", api_ref: str, ops_ref: str, images: dict[str, str]) -> dict[str, float]:
    """What each role runs, into its engine: the API and nginx on the web hosts; the ops image and the
    datastores on the data host (the last host). `images` holds postgres, redis, nginx (empty values skip)."""
    webs, data = list(hosts)[:-1], hosts[len(hosts) - 1]
    t = hosts.load_images([r for r in (api_ref, images.get("nginx")) if r], only=webs)
    d = hosts.load_images([r for r in (ops_ref, images.get("postgres"), images.get("redis")) if r], only=[data])
    return {"web_s": t["total_s"], "data_s": d["total_s"]}
