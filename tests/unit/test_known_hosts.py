"""The env's known_hosts file, pure parts: fingerprints as OpenSSH prints them, `[host]:port`, parsing
(malformed lines are one BadInput naming file:line), a sorted stable rendering, planning a trust, the
refusal messages, and the check installed into a paramiko client (no network)."""
import pytest

from iosops.config import load_env
from iosops.errors import BadInput
from iosops.hosts import known_hosts as kh
from iosops.hosts.known_hosts import HostKey, HostKeyRefused, KnownHosts

# Public keys made with ssh-keygen for this test; fingerprints as `ssh-keygen -lf` printed them.
ED1 = "AAAAC3NzaC1lZDI1NTE5AAAAINXgkupE3sibqivbJFYiNedCqSql2zaTkTehXgYpxf/d"  # pragma: allowlist secret - a public key
ED1_FP = "SHA256:BBgRvYtbyBe269wyoOql74VRChKa1dTLX3muxT87AAU"
ED2 = "AAAAC3NzaC1lZDI1NTE5AAAAINVKkqmkTTwuEVP2jcVh+BaxZ4KiZltn57QkonnfQdDB"  # pragma: allowlist secret - a public key
ED2_FP = "SHA256:UrPQuxlOFVMm8FcIhnTdaYHevWbByxONFry4s3s+j1o"
EC = ("AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPBUwrsIpqvnmwRDVIbO7rHYZq8/smmqwTlLyxcMmWoD3WG00NnlcIqLWWc"  # pragma: allowlist secret - a public key
      "Tq3B/kUVJ06amxYhM3PDkXvgc7YY=")  # pragma: allowlist secret - a public key
EC_FP = "SHA256:wfndWsOCURiWlzhS8MCG+2X+gNW8tV+htEv0ydt5sjM"
# `ssh-keygen -H` of "[10.0.0.5]:2222 ssh-ed25519 ED1"
HASHED = "|1|AmWLfgEn0aTlPK7tkMkI+5lpwf4=|qq22uCtPE3l2BGsQ4kANl18C5LQ="  # pragma: allowlist secret - a hashed host name


class FakeKey:
    def __init__(self, name, b64):
        self.name, self.b64 = name, b64

    def get_name(self):
        return self.name

    def get_base64(self):
        return self.b64


def test_fingerprints_are_openssh_sha256():
    assert kh.fingerprint(ED1) == ED1_FP
    assert kh.fingerprint(ED2) == ED2_FP
    assert kh.fingerprint(EC) == EC_FP
    assert HostKey("h", "ssh-ed25519", ED1).fingerprint == ED1_FP


@pytest.mark.parametrize("address,port,hid,shown", [
    ("app1.staging.ios.internal", 22, "app1.staging.ios.internal", "app1.staging.ios.internal"),
    ("127.0.0.1", 2222, "[127.0.0.1]:2222", "127.0.0.1:2222"),
    ("10.0.0.5", 22, "10.0.0.5", "10.0.0.5"),
])
def test_host_id_is_openssh_form(address, port, hid, shown):
    assert kh.host_id(address, port) == hid
    assert kh.display_name(hid) == shown


@pytest.mark.parametrize("arg,want", [
    ("db1", ("db1", None)), ("db1:2222", ("db1", 2222)), ("[db1]:2222", ("db1", 2222)),
    ("127.0.0.1:22", ("127.0.0.1", 22)),
])
def test_host_arguments(arg, want):
    assert kh.parse_host_arg(arg) == want


def test_host_argument_with_a_bad_port_is_bad_input():
    with pytest.raises(BadInput, match="the port must be a number"):
        kh.parse_host_arg("db1:ssh")


def test_parse_skips_comments_and_reads_entries():
    text = f"# header\n\n[127.0.0.1]:2222 ssh-ed25519 {ED1} comment here\napp1,10.0.0.7 ecdsa-sha2-nistp256 {EC}\n"
    keys = kh.parse(text, "envs/x.known_hosts")
    assert keys == [HostKey("[127.0.0.1]:2222", "ssh-ed25519", ED1), HostKey("app1,10.0.0.7", "ecdsa-sha2-nistp256", EC)]
    assert kh.keys_for(keys, "10.0.0.7") == [keys[1]] and kh.keys_for(keys, "app1") == [keys[1]]
    assert kh.keys_for(keys, "127.0.0.1") == []  # port 22 is another host than [127.0.0.1]:2222


def test_hashed_host_names_match():
    keys = kh.parse(f"{HASHED} ssh-ed25519 {ED1}\n")
    assert kh.keys_for(keys, "[10.0.0.5]:2222") == keys
    assert kh.keys_for(keys, "10.0.0.5") == []


@pytest.mark.parametrize("line,msg", [
    ("app1 ssh-ed25519", "expected `host keytype base64-key`"),
    ("app1 ssh-ed25519 not-base64!!", "not valid base64"),
    (f"app1 ssh-rsa {ED1}", "the line says ssh-rsa but the key is ssh-ed25519"),
    (f"@revoked app1 ssh-ed25519 {ED1}", "markers like @revoked are not supported"),
    ("app1 ssh-ed25519 AAAA", "too short"),
])
def test_malformed_lines_name_file_and_line(line, msg):
    with pytest.raises(BadInput) as err:
        kh.parse(f"# ok\napp0 ssh-ed25519 {ED2}\n{line}\n", "envs/staging.known_hosts")
    assert str(err.value).startswith("envs/staging.known_hosts:3: ") and msg in str(err.value)


def test_render_is_sorted_stable_and_round_trips():
    keys = [HostKey("[127.0.0.1]:2222", "ssh-ed25519", ED1), HostKey("app1", "ssh-ed25519", ED2),
            HostKey("[127.0.0.1]:2222", "ecdsa-sha2-nistp256", EC), HostKey("app1", "ssh-ed25519", ED2)]
    text = kh.render(keys, "staging")
    assert text == kh.render(list(reversed(keys)), "staging")  # order of input does not matter
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [f"[127.0.0.1]:2222 ecdsa-sha2-nistp256 {EC}", f"[127.0.0.1]:2222 ssh-ed25519 {ED1}",
                     f"app1 ssh-ed25519 {ED2}"]
    assert "inv hosts.trust --env staging" in text
    assert kh.parse(text) == sorted(set(keys))


def test_plan_trust_adds_new_hosts_and_changes_nothing_on_a_rerun():
    offered = {"[127.0.0.1]:2222": [("ssh-ed25519", ED1), ("ecdsa-sha2-nistp256", EC)]}
    keys, out = kh.plan_trust([], offered, set())
    assert out[0].status == "trusted" and out[0].host == "127.0.0.1:2222"
    assert out[0].offered == [("ecdsa-sha2-nistp256", EC_FP), ("ssh-ed25519", ED1_FP)]
    again, out2 = kh.plan_trust(keys, offered, set())
    assert set(again) == set(keys) and out2[0].status == "no change"


def test_plan_trust_adds_a_new_key_type_and_keeps_other_hosts():
    other = HostKey("db1", "ssh-ed25519", ED2)
    cur = [HostKey("[127.0.0.1]:2222", "ssh-ed25519", ED1), other]
    keys, out = kh.plan_trust(cur, {"[127.0.0.1]:2222": [("ssh-ed25519", ED1), ("ecdsa-sha2-nistp256", EC)]}, set())
    assert out[0].status == "added ecdsa-sha2-nistp256" and other in keys and len(keys) == 3


def test_plan_trust_refuses_a_changed_key_unless_replaced():
    cur = [HostKey("[127.0.0.1]:2222", "ssh-ed25519", ED1), HostKey("[127.0.0.1]:2222", "ecdsa-sha2-nistp256", EC)]
    offered = {"[127.0.0.1]:2222": [("ssh-ed25519", ED2)]}
    keys, out = kh.plan_trust(cur, offered, set())
    assert out[0].status == "changed" and out[0].conflicts == [("ssh-ed25519", ED1_FP, ED2_FP)]
    assert keys == cur  # nothing of that host changes
    keys, out = kh.plan_trust(cur, offered, {"[127.0.0.1]:2222"})
    assert out[0].status == "replaced" and keys == [HostKey("[127.0.0.1]:2222", "ssh-ed25519", ED2)]
    _, out = kh.plan_trust(keys, offered, {"[127.0.0.1]:2222"})
    assert out[0].status == "no change"  # --replace with nothing to replace is a no-op


def test_refusal_messages_name_host_fingerprints_and_the_fix(tmp_path):
    known = KnownHosts(tmp_path / "missing", "staging", "envs/staging.known_hosts")
    assert known.keys == []
    unknown = str(known.unknown("[127.0.0.1]:2222", FakeKey("ssh-ed25519", ED1)))
    assert unknown == (f"unknown host key for 127.0.0.1:2222 (ssh-ed25519 {ED1_FP}; not in envs/staging.known_hosts): "
                       "nothing was run; check that fingerprint out of band (on the host: ssh-keygen -lf "
                       "/etc/ssh/ssh_host_*_key.pub), then trust it: inv hosts.trust --env staging")
    changed = str(known.changed("db1", FakeKey("ssh-ed25519", ED2), FakeKey("ssh-ed25519", ED1)))
    assert changed.startswith(f"host key of db1 CHANGED: envs/staging.known_hosts records ssh-ed25519 {ED1_FP}, "
                              f"the host offers ssh-ed25519 {ED2_FP}")
    assert changed.endswith("inv hosts.trust --env staging --replace db1")
    assert isinstance(known.unknown("x", FakeKey("ssh-ed25519", ED1)), BadInput)  # exit 2


def test_install_trusts_exactly_the_file_and_refuses_the_rest(tmp_path):
    import paramiko

    f = tmp_path / "kh"
    f.write_text(f"[127.0.0.1]:2222 ssh-ed25519 {ED1}\ndb1 ssh-ed25519 {ED2}\n")
    client = paramiko.SSHClient()
    KnownHosts(f, "staging").install(client, "[127.0.0.1]:2222")
    got = client.get_host_keys().lookup("[127.0.0.1]:2222")
    assert got is not None and got["ssh-ed25519"].get_base64() == ED1
    assert client.get_host_keys().lookup("db1") is None  # only the host being connected to
    key = paramiko.PKey.from_type_string("ssh-ed25519", __import__("base64").b64decode(ED2))
    with pytest.raises(HostKeyRefused, match="unknown host key for 127.0.0.1:2222"):
        client._policy.missing_host_key(client, "[127.0.0.1]:2222", key)


def test_unreadable_file_is_bad_input(tmp_path):
    (tmp_path / "kh").write_text("app1 ssh-ed25519\n")
    with pytest.raises(BadInput, match=r"^envs/x.known_hosts:1: "):
        KnownHosts(tmp_path / "kh", "x", "envs/x.known_hosts")


def test_the_file_is_beside_the_env_unless_configured(tmp_path):
    env = load_env("staging", environ={})
    assert env.known_hosts_path == env.root / "envs" / "staging.known_hosts"
    assert kh.for_env(env).shown == "envs/staging.known_hosts"
    env = load_env("staging", environ={"IOSOPS_HOSTS__KNOWN_HOSTS_FILE": str(tmp_path / "kh")})
    assert env.known_hosts_path == tmp_path / "kh"
