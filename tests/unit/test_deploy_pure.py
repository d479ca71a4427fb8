"""Pure parts of the deploy: nginx rendering (checked by the real `nginx -t`), log parsers, the
compose file's shape (isolation, labels, limits, healthchecks) and the dry-run plan of a deploy.
The checks that run the real programs are in the tools tier: tests/tools/test_deploy_pure.py."""
import json

import pytest
import yaml

from iosops.config import load_env
from iosops.deploy import nginx as ng
from iosops.deploy import stackfiles as sf
from iosops.deploy.target import Target
from iosops.runner import Runner
from pathlib import PurePosixPath
from iosops.errors import BadInput
from iosops.hosts import files as hf
from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker/compose.yml").read_text())


@pytest.fixture
def env():
    return load_env("local", environ={})


def test_upstream_renders_the_colour_and_parses_back():
    tmpl = (ROOT / ng.UPSTREAM_TEMPLATE).read_text()
    for colour in ng.COLOURS:
        text = ng.render_upstream(tmpl, colour)
        assert f"server api-{colour}:8000 max_fails=3 fail_timeout=10s;" in text and "keepalive 32;" in text
        assert ng.parse_active(text) == colour
    assert ng.parse_active("") is None
    with pytest.raises(BadInput):
        ng.render_upstream(tmpl, "red")


def test_main_config_has_the_edge_rules(env):
    text = ng.render_main(env, (ROOT / ng.TEMPLATE).read_text())
    assert "{{" not in text
    for line in ("ssl_protocols TLSv1.2 TLSv1.3;", "limit_req_status 429;", "gzip on;", "location ^~ /metrics",
                 "return 301 https://$host:8443$request_uri;", "client_max_body_size 1m;",
                 "Strict-Transport-Security", "Content-Security-Policy", "proxy_next_upstream error timeout"):
        assert line in text, line
    assert "rate=200r/s" in text and "burst=200 nodelay" in text


def test_bad_body_size_is_bad_input():
    env = load_env("local", environ={"IOSOPS_DEPLOY__CLIENT_MAX_BODY_SIZE": "1 gigabyte"})
    with pytest.raises(BadInput, match="client_max_body_size"):
        ng.render_main(env, (ROOT / ng.TEMPLATE).read_text())


def test_error_rate_counts_only_the_new_colour_after_the_switch():
    lines = [json.dumps({"msec": 10.0, "colour": "green", "status": 500}),   # before the switch
             json.dumps({"msec": 20.0, "colour": "blue", "status": 502}),    # old workers finishing
             json.dumps({"msec": 20.1, "colour": "green", "status": 200}),
             json.dumps({"msec": 20.2, "colour": "green", "status": 503}),
             "nginx: [warn] not json", "{broken"]
    assert ng.error_rate(lines, "green", 15.0) == (1, 2)


def test_shutting_down_workers_are_counted():
    text = "nginx: master process nginx -c x\nnginx: worker process is shutting down\nnginx: worker process\n"
    assert ng.parse_shutting_down(text) == 1


def test_compose_isolates_datastores_and_labels_everything():
    svcs, nets = COMPOSE["services"], COMPOSE["networks"]
    assert nets["data"]["internal"] is True and nets["app"]["internal"] is True and not nets["edge"].get("internal")
    assert svcs["nginx"]["networks"] == ["edge", "app"]
    for ds in ("postgres", "redis", "elasticsearch"):
        assert svcs[ds]["networks"] == ["data"] and "ports" not in svcs[ds]
    core = {"api-blue", "api-green", "postgres", "redis", "nginx", "walstream"}
    assert {k for k, v in svcs.items() if not v.get("profiles")} == core
    # The backup services: on the data network (and their own way out to S3), never on edge/app; the
    # one-off `ops` runs only when asked for (profile), both as the PostgreSQL image's uid.
    for svc in ("walstream", "ops"):
        assert svcs[svc]["networks"] == ["data", "backup"] and svcs[svc]["user"] == "999:999"
        assert "ports" not in svcs[svc] and svcs[svc]["read_only"] is True
    assert svcs["ops"]["profiles"] == ["ops"] and "pgdata:/pgvol" in svcs["ops"]["volumes"]
    assert nets["backup"].get("internal") is not True
    assert "max_slot_wal_keep_size=${PG_MAX_SLOT_WAL_KEEP_SIZE:-2GB}" in svcs["postgres"]["command"]
    assert svcs["elasticsearch"]["profiles"] == ["search"]
    assert {k for k, v in svcs.items() if v.get("profiles") == ["monitoring"]} == {
        "prometheus", "alertmanager", "postgres-exporter", "redis-exporter", "node-exporter", "grafana"}
    for name, svc in svcs.items():
        for key in ("healthcheck", "restart", "logging", "mem_limit", "labels"):
            assert key in svc, f"{name} has no {key}"
        assert svc["labels"]["iosops.stack"] == "${IOSOPS_STACK}"
    for kind in ("networks", "volumes"):
        for name, spec in COMPOSE[kind].items():
            assert "iosops.stack" in spec["labels"], f"{kind} {name}"
    assert "./monitoring/prometheus:/etc/prometheus:ro" in svcs["prometheus"]["volumes"]
    assert "./monitoring/alertmanager:/etc/alertmanager:ro" in svcs["alertmanager"]["volumes"]
    # secrets are files, never environment values
    assert svcs["api-blue"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_app_password"
    assert not any("PASSWORD=" in str(v) for s in svcs.values() for v in (s.get("environment") or {}).values())


def test_labels_override_keeps_network_definitions(env):
    env = load_env("local", environ={"IOSOPS_STACK__LABELS": '{"iosops.test": "1"}'})
    over = yaml.safe_load(sf.labels_override(env, (ROOT / "docker/compose.yml").read_text()))
    assert over["networks"]["data"]["internal"] is True  # compose 1.29 replaces, it does not merge
    assert over["networks"]["data"]["labels"]["iosops.test"] == "1"
    assert over["services"]["nginx"]["labels"] == {"iosops.test": "1"}


def test_stack_env_has_no_secret(env, monkeypatch, tmp_path):
    t = Target(env, Runner(), PurePosixPath(tmp_path))
    text = sf.stack_env(env, {"blue": "iosops/api:a"}, t)
    assert "API_IMAGE_BLUE=iosops/api:a\n" in text and "API_IMAGE_GREEN=iosops/api:none\n" in text
    assert "PASSWORD" not in text


def test_provisioned_files_render(env):
    env = load_env("staging", environ={})
    nft = hf.nftables_conf(env)
    assert "policy drop;" in nft and "tcp dport { 22, 80, 443 } accept" in nft and "flush ruleset" not in nft
    assert "net.core.somaxconn = 4096" in hf.sysctl_conf(env)
    assert "deploy hard nofile 65536" in hf.limits_conf(env)
    assert json.loads(hf.daemon_json(env))["log-opts"]["max-size"] == "10m"
    assert hf.directories(env)["/srv/iosops"] == (0o750, "deploy")


def test_kubernetes_target_without_module_is_bad_input(monkeypatch):
    import builtins

    from iosops.tasks import deploy as tasks

    real = builtins.__import__

    def no_k8s(name, *a, **k):
        if name.startswith("iosops.k8s"):
            raise ImportError(name)
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_k8s)
    with pytest.raises(BadInput, match="Kubernetes target is not available in this build"):
        tasks._kubernetes()
