"""Config layering, validation and bad-input messages (pure: temp env dirs, no services)."""
import json

import pytest

from iosops.config import deep_merge, env_var_layer, known_envs, load_env
from iosops.errors import BadInput
from iosops.secretref import redact


@pytest.fixture
def envs(tmp_path, monkeypatch):
    d = tmp_path / "envs"
    d.mkdir()
    (d / "defaults.yaml").write_text("build:\n  max_image_mb: 250\n  repository: iosops/api\nstack:\n  api_workers: 2\n")
    (d / "local.yaml").write_text("stack:\n  api_workers: 3\nsecrets:\n  db: {env: T_DB_PASSWORD}\n")
    (d / "prod.yaml").write_text("build:\n  registry: r.example\n")
    monkeypatch.setenv("IOSOPS_ENVS_DIR", str(d))
    return d


def test_real_envs_all_load_and_validate():
    assert {"local", "staging", "prod"} <= set(known_envs())
    for name in ("local", "staging", "prod"):
        assert load_env(name, environ={}).name == name


def test_staging_and_prod_keep_backups_encrypted_off_their_hosts():
    for name in ("staging", "prod"):
        b = load_env(name, environ={}).cfg.backup
        assert b.store.kind == "s3" and b.store.bucket and b.store.prefix == name and b.store.sse == "aws:kms"
        assert b.store.access_key_id.env and b.store.secret_access_key.env and b.encryption_key.env
        assert b.encryption_recipient.startswith("age1") and len(b.encryption_recipient) == 62


def test_a_local_store_is_refused_for_ssh_hosts_and_kubernetes(envs, tmp_path):
    (envs / "prod.yaml").write_text("target: compose\nhosts:\n  hosts:\n    - {address: app1.example}\n")
    with pytest.raises(BadInput) as err:
        load_env("prod", root=tmp_path, environ={})
    assert str(err.value) == (
        "envs/prod.yaml: backup.store.kind: 'local' keeps recovery points on one machine, but env prod runs on "
        "SSH hosts (target compose); use kind s3 with bucket, prefix and credentials; fix it and retry")
    (envs / "prod.yaml").write_text("target: kubernetes\nbackup:\n  store: {kind: s3, bucket: b}\n")
    assert load_env("prod", root=tmp_path, environ={}).cfg.backup.store.kind == "s3"
    with pytest.raises(BadInput, match=r"^IOSOPS_\* environment variables: backup.store.kind: 'local' .* runs on "
                                       r"Kubernetes \(target kubernetes\);"):
        load_env("prod", root=tmp_path, environ={"IOSOPS_BACKUP__STORE__KIND": "local"})
    # compose on this machine (no SSH hosts) may keep its backups in a local directory
    (envs / "prod.yaml").write_text("target: compose\n")
    assert load_env("prod", root=tmp_path, environ={}).cfg.backup.store.kind == "local"


def test_kms_key_without_kms_encryption_is_bad_input():
    with pytest.raises(BadInput, match=r"^command-line flags: backup.store.sse_kms_key_id is set but backup.store.sse "
                                       r"is 'AES256', not 'aws:kms'; fix it and retry$"):
        load_env("local", environ={}, overrides={"backup": {"store": {"sse": "AES256", "sse_kms_key_id": "alias/k"}}})
    with pytest.raises(BadInput, match=r"backup.store.sse: Input should be '', 'AES256' or 'aws:kms'"):
        load_env("local", environ={}, overrides={"backup": {"store": {"sse": "aes256"}}})


def test_layers_merge_in_order(envs, tmp_path):
    env = load_env("local", root=tmp_path, environ={"IOSOPS_BUILD__MAX_IMAGE_MB": "300"},
                   overrides={"stack": {"api_port": 9999}})
    assert env.cfg.build.max_image_mb == 300  # env var beats defaults.yaml
    assert env.cfg.stack.api_workers == 3  # local.yaml beats defaults.yaml
    assert env.cfg.stack.api_port == 9999  # flags beat everything
    assert env.cfg.build.repository == "iosops/api"  # untouched default survives the deep merge


def test_deep_merge_replaces_lists_and_merges_maps():
    assert deep_merge({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}}) == {"a": {"b": 1, "c": [2]}}


def test_env_var_layer_ignores_non_config_vars():
    assert env_var_layer({"IOSOPS_ENV": "prod", "IOSOPS_STACK__API_PORT": "81", "HOME": "/x"}) == {
        "stack": {"api_port": 81}}


def test_unknown_env_lists_known(envs, tmp_path):
    with pytest.raises(BadInput, match=r"unknown env 'qa'; known envs: local, prod"):
        load_env("qa", root=tmp_path, environ={})


def test_malformed_yaml_names_file_and_line(envs, tmp_path):
    (envs / "prod.yaml").write_text("build:\n  registry: r\n  bad: [unclosed\nstack: {}\n")
    with pytest.raises(BadInput) as err:
        load_env("prod", root=tmp_path, environ={})
    assert "prod.yaml:" in str(err.value) and "malformed YAML" in str(err.value)
    line = int(str(err.value).split("prod.yaml:")[1].split(":")[0])
    assert line in (3, 4)


def test_wrong_type_names_field_path_and_source(envs, tmp_path):
    (envs / "prod.yaml").write_text("build:\n  max_image_mb: big\n")
    with pytest.raises(BadInput, match=r"envs/prod.yaml: build.max_image_mb: .*integer.*'big'"):
        load_env("prod", root=tmp_path, environ={})


def test_wrong_type_from_env_var_names_env_var_layer(envs, tmp_path):
    with pytest.raises(BadInput, match=r"IOSOPS_\* environment variables: stack.api_port"):
        load_env("prod", root=tmp_path, environ={"IOSOPS_STACK__API_PORT": "70000"})


def test_unknown_key_is_an_error_not_ignored(envs, tmp_path):
    (envs / "prod.yaml").write_text("build:\n  max_imag_mb: 10\n")
    with pytest.raises(BadInput, match=r"build.max_imag_mb: unknown setting"):
        load_env("prod", root=tmp_path, environ={})


def test_secret_pasted_as_value_is_not_echoed(envs, tmp_path):
    (envs / "prod.yaml").write_text("secrets:\n  db: hunter2-pasted\n")
    with pytest.raises(BadInput) as err:
        load_env("prod", root=tmp_path, environ={})
    assert "secrets.db" in str(err.value) and "hunter2" not in str(err.value)


def test_missing_secret_env_names_variable_never_value(envs, tmp_path, monkeypatch):
    monkeypatch.delenv("T_DB_PASSWORD", raising=False)
    env = load_env("local", root=tmp_path, environ={})
    with pytest.raises(BadInput, match=r"secrets.db: environment variable T_DB_PASSWORD is not set"):
        env.secret("db")


def test_secret_file_missing_and_generated(tmp_path):
    from iosops.secretref import SecretRef

    with pytest.raises(BadInput, match=r"file .*nope does not exist"):
        SecretRef(file="nope").reveal("secrets.x", tmp_path)
    s = SecretRef(file="sec/pw", generate=True).reveal("secrets.x", tmp_path)
    assert len(s.get()) >= 24 and oct((tmp_path / "sec/pw").stat().st_mode)[-3:] == "600"
    assert SecretRef(file="sec/pw", generate=True).reveal("secrets.x", tmp_path).get() == s.get()  # stable


def test_secret_ref_needs_exactly_one_source():
    from pydantic import ValidationError

    from iosops.secretref import SecretRef

    with pytest.raises(ValidationError):
        SecretRef(env="A", file="b")
    with pytest.raises(ValidationError):
        SecretRef()


def test_secret_repr_and_redaction(envs, tmp_path, monkeypatch):
    monkeypatch.setenv("T_DB_PASSWORD", "s3nt1nel-value-xyz")
    env = load_env("local", root=tmp_path)
    s = env.secret("db")
    assert s.get() == "s3nt1nel-value-xyz"
    assert "s3nt1nel" not in repr(s) + str(s) + f"{s}"
    assert redact("connect with s3nt1nel-value-xyz now") == "connect with *** now"
    shown = json.dumps(env.redacted())
    assert "s3nt1nel" not in shown and '"env": "T_DB_PASSWORD"' in shown


def test_redacted_marks_missing_secrets(envs, tmp_path):
    data = load_env("local", root=tmp_path, environ={}).redacted()
    assert data["secrets"]["db"] == {"env": "T_DB_PASSWORD", "value": "*** (missing)"}


ROLE_HOSTS = "target: compose\nstack: {publish_host: 0.0.0.0}\nbackup:\n  store: {kind: s3, bucket: b}\nhosts:\n  hosts:\n"


@pytest.mark.parametrize("hosts,error", [
    (["{address: a}", "{address: b}"], "hosts.hosts: a, b say no roles; with several hosts each must say"),
    (["{address: a, roles: [web]}", "{address: b, roles: [web]}"],
     "hosts.hosts: 0 hosts have role data (none); exactly one host holds the datastores"),
    (["{address: a, roles: [data]}", "{address: b, roles: [web, data]}"],
     "hosts.hosts: 2 hosts have role data (a, b); exactly one host holds the datastores"),
    (["{address: a, roles: [data]}"], "hosts.hosts: no host has role web"),
    (["{address: a, roles: [web, data]}", "{address: a, roles: [web]}"], "hosts.hosts: a:22 is listed twice"),
    (["{address: a, roles: [db]}"], "hosts.hosts.0.roles.0: Input should be 'web' or 'data'"),
])
def test_host_roles_bad_input(envs, tmp_path, hosts, error):
    (envs / "prod.yaml").write_text(ROLE_HOSTS + "".join(f"    - {h}\n" for h in hosts))
    with pytest.raises(BadInput) as err:
        load_env("prod", root=tmp_path, environ={})
    assert str(err.value).startswith(f"envs/prod.yaml: {error}") and str(err.value).endswith("fix it and retry")


def test_ssh_hosts_with_a_loopback_edge_are_refused(envs, tmp_path):
    (envs / "prod.yaml").write_text(ROLE_HOSTS.replace("0.0.0.0", "127.0.0.1") + "    - {address: a}\n")
    with pytest.raises(BadInput, match="stack.publish_host is 127.0.0.1 but the env runs on SSH hosts"):
        load_env("prod", root=tmp_path, environ={})


def test_host_roles_one_host_holds_both_and_the_data_host_is_found(envs, tmp_path):
    (envs / "prod.yaml").write_text(ROLE_HOSTS + "    - {address: a}\n")
    h = load_env("prod", root=tmp_path, environ={}).cfg.hosts
    assert h.hosts[0].roles == ["web", "data"] and h.data_host().address == "a"
    (envs / "prod.yaml").write_text(ROLE_HOSTS + "    - {address: w1, roles: [web]}\n    - {address: w2, roles: [web]}\n"
                                    "    - {address: d.example, private_address: 10.0.0.3, roles: [data]}\n")
    h = load_env("prod", root=tmp_path, environ={}).cfg.hosts
    assert h.data_host().private == "10.0.0.3" and [w.address for w in h.web_hosts()] == ["w1", "w2"]


def test_staging_has_two_web_hosts_and_one_data_host():
    staging = load_env("staging", environ={}).cfg.hosts
    assert staging.data_host().address == "db1.staging.ios.internal" and len(staging.web_hosts()) == 2
