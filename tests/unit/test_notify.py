"""The webhook message format (pure): every event says, for people, what happened where, which version
(and which before it), who, how long, the outcome and which audit line; no secret in it, ever."""
import json

import pytest

from iosops.config import load_env
from iosops.notify import STYLE, Event, mask_url, message, tag_of
from iosops.secretref import Secret

RUN = {"run": "0123456789ab", "task": "deploy", "env": "prod", "who": "alice@laptop",
       "audit": "/srv/ops/.iosops/audit.log"}

EVENTS = {
    "deploy start": Event("deploy", "start", "prod", version="abc123", previous="old111",
                          target="kubernetes context ios-prod, namespace ios-prod"),
    "deploy success": Event("deploy", "success", "prod", version="abc123", previous="old111", duration_s=42.04,
                            target="kubernetes context ios-prod, namespace ios-prod", summary="abc123 live on green"),
    "deploy failure": Event("deploy", "failure", "staging", version="abc123", previous="", duration_s=3.2,
                            target="compose on deploy@app1:22", error="image iosops/api:abc123 is missing"),
    "deploy rolled back": Event("deploy", "rolled_back", "local", version="abc123", previous="old111",
                                duration_s=191.0, target="compose on local",
                                error="green answered 9/100 requests with 5xx after the switch",
                                rolled_back="traffic back on blue"),
    "rollback success": Event("rollback", "success", "prod", version="old111", previous="abc123", duration_s=1.6),
    "rollback failure": Event("rollback", "failure", "prod", duration_s=1.0, error="nginx is not running"),
    "backup success": Event("backup", "success", "prod", version="20261128T000000Z-1a2b", duration_s=12.3,
                            target="s3://ios-backups/prod", summary="120.4 MB: postgres, redis"),
    "backup failure": Event("backup", "failure", "prod", version="20261128T000000Z-1a2b", duration_s=2.0,
                            error="object store unreachable"),
}


def fields(msg):
    return {f["title"]: f["value"] for f in msg["attachments"][0]["fields"]}


@pytest.mark.parametrize("name", list(EVENTS))
def test_every_event_has_the_fields_people_need(name):
    ev = EVENTS[name]
    msg = message(ev, "alice@laptop", RUN)
    json.dumps(msg)  # plain JSON
    f = fields(msg)
    att = msg["attachments"][0]
    assert msg["text"] == att["fallback"] and att["color"].startswith("#")
    assert f["Environment"] == ev.env and f["Who"] == "alice@laptop"
    assert f["Audit"] == ("run 0123456789ab in " + f["Audit"].split(" in ", 1)[1]) and \
        ":/srv/ops/.iosops/audit.log" in f["Audit"] and f"inv lock.audit --env {ev.env} --run 0123456789ab" in f["Audit"]
    assert f["Outcome"] == {"start": "in progress", "success": "succeeded", "failure": "FAILED",
                            "rolled_back": "FAILED, rolled back automatically"}[ev.status]
    if ev.version:
        assert f["Backup" if ev.op == "backup" else "Version"] == f"`{ev.version}`" and ev.version in msg["text"]
    if ev.status == "start":
        assert "Duration" not in f
    else:
        assert f["Duration"].endswith(" s")
    if ev.op == "deploy":
        assert f["Previous"] == (f"`{ev.previous}`" if ev.previous else "none (first deploy)")
    if ev.error:
        assert f["Error"] == ev.error
    if ev.rolled_back:
        assert f["Rolled back"] == ev.rolled_back
    assert "alice@laptop" in msg["text"] and ev.env in msg["text"]


def test_titles_tell_the_events_apart():
    titles = {name: message(ev, "a", None)["attachments"][0]["title"] for name, ev in EVENTS.items()}
    assert len(set(titles.values())) == len(titles)
    assert titles["deploy rolled back"] == "Deploy FAILED, rolled back automatically: local"
    assert "OK" in titles["backup success"] and "FAILED" in titles["backup failure"]
    assert {k for k in STYLE} >= {(e.op, e.status) for e in EVENTS.values()}


def test_long_durations_and_errors_are_made_readable():
    f = fields(message(EVENTS["deploy rolled back"], "a", None))
    assert f["Duration"] == "3 min 11 s"
    long = Event("deploy", "failure", "prod", error="x" * 5000)
    assert len(fields(message(long, "a", None))["Error"]) < 1600


def test_without_an_inv_run_the_message_says_there_is_no_audit_line():
    assert fields(message(EVENTS["deploy start"], "a", None))["Audit"].startswith("no audit line")


def test_a_revealed_secret_never_reaches_the_message():
    Secret("notify-unit-sentinel-5d1e", "x")
    ev = Event("deploy", "failure", "prod", version="abc", error="psql: password notify-unit-sentinel-5d1e rejected",
               summary="notify-unit-sentinel-5d1e")
    assert "notify-unit-sentinel-5d1e" not in json.dumps(message(ev, "a", RUN))


@pytest.mark.parametrize("url,shown", [
    ("https://hooks.slack.com/services/T000/B000/XXXXSECRET", "https://hooks.slack.com/***"),  # pragma: allowlist secret - a made-up webhook URL: the masking under test must hide it
    ("https://user:pw@chat.example:8443/hooks/abc?token=t", "https://chat.example:8443/***"),  # pragma: allowlist secret - made-up credentials the masking must drop
    ("http://127.0.0.1:5005/x", "http://127.0.0.1:5005/***"),
    ("not a url", "?://?/***"),
])
def test_mask_url_keeps_only_scheme_host_and_port(url, shown):
    assert mask_url(url) == shown


@pytest.mark.parametrize("image,tag", [("iosops/api:abc123", "abc123"), ("registry:5000/iosops/api:t1", "t1"),
                                       ("registry:5000/iosops/api", "registry:5000/iosops/api")])
def test_tag_of(image, tag):
    assert tag_of(image) == tag


def test_envs_reference_the_webhook_and_local_does_not_require_it():
    for name, var in (("staging", "IOS_STAGING_SLACK_WEBHOOK_URL"), ("prod", "IOS_PROD_SLACK_WEBHOOK_URL")):
        cfg = load_env(name, environ={}).cfg.notify
        assert cfg.webhook_url.env == var and cfg.required
    local = load_env("local", environ={}).cfg.notify
    assert local.webhook_url.file and not local.required
    # worst case per message stays bounded
    assert local.max_total_s <= 10 and local.attempts <= 3
