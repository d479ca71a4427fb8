"""The five Grafana dashboards as code. `inv monitoring.dashboards` writes them to
monitoring/grafana/dashboards/*.json; a unit test fails when the committed JSON differs from what this
module generates (edit here, regenerate, commit both).

A panel is (title, kind, unit, [(expr, legend), ...]). Layout, ids, refIds and the datasource are filled
in here so every dashboard is consistent. Queries use the recording rules where one exists.
"""
from __future__ import annotations

import json
from typing import Optional

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
SCHEMA_VERSION = 38

# Panels whose queries cannot return data on the live check stack (API + PostgreSQL + Redis + walstream
# on one machine), and why. The live check requires data from every other query of the API, PostgreSQL
# and Redis dashboards and of the LIVE_REQUIRED_ROWS.
NO_LIVE_DATA: dict[tuple[str, str], str] = {
    ("ios-platform", "Last drill RTO"): "the check runs no DR drill (`inv dr-drill` writes it where it ran)",
    ("ios-platform", "Last drill RPO"): "the check runs no DR drill (`inv dr-drill` writes it where it ran)",
}

P = tuple  # (title, kind, unit, targets)


def stat(title: str, unit: str, expr: str, legend: str = "") -> P:
    return (title, "stat", unit, [(expr, legend)])


def ts(title: str, unit: str, *targets: tuple[str, str]) -> P:
    return (title, "timeseries", unit, list(targets))


def row(title: str) -> P:
    return (title, "row", "", [])


def var(name: str, metric: str, label: str, title: str) -> dict:
    q = f"label_values({metric}, {label})"
    return {"name": name, "label": title, "type": "query", "datasource": DATASOURCE, "definition": q,
            "query": {"query": q, "refId": f"{name}-query"}, "refresh": 2, "includeAll": True,
            "multi": True, "allValue": ".+", "current": {}, "sort": 1, "hide": 0, "options": []}


RI = "$__rate_interval"
API = 'job="ios-api"'

DASHBOARDS: dict[str, dict] = {
    "ios-api": {
        "title": "IOS API overview (RED)",
        "description": "Rate, errors and duration of the IOS API from the recording rules in monitoring/prometheus/rules/recording.yml.",
        "vars": [],
        "panels": [
            stat("Request rate", "reqps", f"sum(job:http_requests:rate5m{{{API}}})"),
            stat("Error ratio (5xx)", "percentunit", f"sum(job:http_requests_errors:rate5m{{{API}}}) / sum(job:http_requests:rate5m{{{API}}})"),
            stat("p95 latency", "s", f"max(job:http_request_duration_seconds:p95_5m{{{API}}})"),
            stat("Instances up", "none", f"sum(up{{{API}}})"),
            row("Rate"),
            ts("Requests by route", "reqps", (f"job_route:http_requests:rate5m{{{API}}}", "{{route}}")),
            ts("Requests by status", "reqps", (f"sum by (status) (rate(http_requests_total{{{API}}}[{RI}]))", "{{status}}")),
            row("Errors"),
            ts("Error ratio", "percentunit", (f"job:http_requests:error_ratio_rate5m{{{API}}}", "5xx ratio")),
            # `or 0 * ...` draws a 0 line per route instead of "No data" while nothing fails.
            ts("5xx by route", "reqps", (f'sum by (route) (rate(http_requests_total{{{API}, status=~"5.."}}[{RI}]) '
                                          f'or 0 * rate(http_requests_total{{{API}}}[{RI}]))', "{{route}}")),
            row("Duration and saturation"),
            ts("Latency p50 / p95 / p99", "s",
               (f"job:http_request_duration_seconds:p50_5m{{{API}}}", "p50"),
               (f"job:http_request_duration_seconds:p95_5m{{{API}}}", "p95"),
               (f"job:http_request_duration_seconds:p99_5m{{{API}}}", "p99")),
            ts("p95 latency by route", "s", (f"job_route:http_request_duration_seconds:p95_5m{{{API}}}", "{{route}}")),
            ts("Requests in flight (Little's law)", "none", (f"instance:http_requests_in_flight:avg5m{{{API}}}", "{{instance}}")),
        ],
    },
    "ios-postgres": {
        "title": "IOS PostgreSQL",
        "description": "postgres_exporter metrics (built-in collectors plus monitoring/prometheus/postgres-exporter-queries.yaml).",
        "vars": [var("instance", "pg_up", "instance", "Instance")],
        "panels": [
            stat("Up", "none", 'min(pg_up{instance=~"$instance"})'),
            stat("Connections used", "percentunit",
                 'sum(pg_stat_database_numbackends{instance=~"$instance"}) / sum(pg_settings_max_connections{instance=~"$instance"})'),
            stat("Longest transaction", "s", 'max(pg_stat_activity_max_tx_duration{instance=~"$instance"})'),
            stat("Replication lag", "s", 'max(pg_replication_lag{instance=~"$instance"})'),
            row("Activity"),
            ts("Connections by database", "none",
               ('pg_stat_database_numbackends{instance=~"$instance", datname!~"template.*"}', "{{datname}}"),
               ('max(pg_settings_max_connections{instance=~"$instance"})', "max_connections")),
            ts("Transactions per second", "ops",
               (f'sum by (datname) (rate(pg_stat_database_xact_commit{{instance=~"$instance", datname!~"template.*"}}[{RI}]))', "commit {{datname}}"),
               (f'sum by (datname) (rate(pg_stat_database_xact_rollback{{instance=~"$instance", datname!~"template.*"}}[{RI}]))', "rollback {{datname}}")),
            ts("Rows fetched / inserted per second", "rowsps",
               (f'sum by (datname) (rate(pg_stat_database_tup_fetched{{instance=~"$instance", datname!~"template.*"}}[{RI}]))', "fetched {{datname}}"),
               (f'sum by (datname) (rate(pg_stat_database_tup_inserted{{instance=~"$instance", datname!~"template.*"}}[{RI}]))', "inserted {{datname}}")),
            ts("Buffer cache hit ratio", "percentunit",
               (f'sum by (datname) (rate(pg_stat_database_blks_hit{{instance=~"$instance", datname!~"template.*"}}[{RI}])) / '
                f'(sum by (datname) (rate(pg_stat_database_blks_hit{{instance=~"$instance", datname!~"template.*"}}[{RI}])) + '
                f'sum by (datname) (rate(pg_stat_database_blks_read{{instance=~"$instance", datname!~"template.*"}}[{RI}])))', "{{datname}}")),
            row("Problems"),
            ts("Deadlocks", "none",
               (f'sum by (datname) (increase(pg_stat_database_deadlocks{{instance=~"$instance", datname!~"template.*"}}[{RI}]))', "{{datname}}")),
            ts("Longest transaction by state", "s", ('max by (state) (pg_stat_activity_max_tx_duration{instance=~"$instance"})', "{{state}}")),
            ts("Locks by mode", "none", ('sum by (mode) (pg_locks_count{instance=~"$instance"})', "{{mode}}")),
            ts("Replication lag", "s", ('pg_replication_lag{instance=~"$instance"}', "{{instance}}")),
            ts("Database size", "bytes", ('pg_database_size_bytes{instance=~"$instance", datname!~"template.*"}', "{{datname}}")),
        ],
    },
    "ios-redis": {
        "title": "IOS Redis",
        "description": "redis_exporter metrics of the API's cache.",
        "vars": [var("instance", "redis_up", "instance", "Instance")],
        "panels": [
            stat("Up", "none", 'min(redis_up{instance=~"$instance"})'),
            stat("Memory used", "bytes", 'sum(redis_memory_used_bytes{instance=~"$instance"})'),
            stat("Connected clients", "none", 'sum(redis_connected_clients{instance=~"$instance"})'),
            stat("Keys", "none", 'sum(redis_db_keys{instance=~"$instance"})'),
            row("Load"),
            ts("Commands per second", "ops", (f'rate(redis_commands_processed_total{{instance=~"$instance"}}[{RI}])', "{{instance}}")),
            ts("Cache hit ratio", "percentunit",
               (f'rate(redis_keyspace_hits_total{{instance=~"$instance"}}[{RI}]) / (rate(redis_keyspace_hits_total{{instance=~"$instance"}}[{RI}]) + '
                f'rate(redis_keyspace_misses_total{{instance=~"$instance"}}[{RI}]))', "{{instance}}")),
            ts("Connected clients", "none", ('redis_connected_clients{instance=~"$instance"}', "{{instance}}")),
            row("Memory"),
            ts("Memory used vs maxmemory", "bytes",
               ('redis_memory_used_bytes{instance=~"$instance"}', "used {{instance}}"),
               ('redis_memory_max_bytes{instance=~"$instance"}', "maxmemory {{instance}}")),
            ts("Evicted and expired keys per second", "ops",
               (f'rate(redis_evicted_keys_total{{instance=~"$instance"}}[{RI}])', "evicted {{instance}}"),
               (f'rate(redis_expired_keys_total{{instance=~"$instance"}}[{RI}])', "expired {{instance}}")),
            ts("Rejected connections", "none", (f'increase(redis_rejected_connections_total{{instance=~"$instance"}}[{RI}])', "{{instance}}")),
            ts("Keys by database", "none", ('sum by (db) (redis_db_keys{instance=~"$instance"})', "{{db}}")),
        ],
    },
    "ios-elasticsearch": {
        "title": "IOS Elasticsearch",
        "description": "prometheus-elasticsearch-exporter metrics (no Elasticsearch exists on the build machine: checked by parsing only).",
        "vars": [var("cluster", "elasticsearch_cluster_health_status", "cluster", "Cluster")],
        "panels": [
            stat("Cluster red", "none", 'max(elasticsearch_cluster_health_status{cluster=~"$cluster", color="red"})'),
            stat("Cluster yellow", "none", 'max(elasticsearch_cluster_health_status{cluster=~"$cluster", color="yellow"})'),
            stat("Nodes", "none", 'max(elasticsearch_cluster_health_number_of_nodes{cluster=~"$cluster"})'),
            stat("Unassigned shards", "none", 'max(elasticsearch_cluster_health_unassigned_shards{cluster=~"$cluster"})'),
            row("Resources"),
            ts("Heap used", "percentunit",
               ('elasticsearch_jvm_memory_used_bytes{cluster=~"$cluster", area="heap"} / elasticsearch_jvm_memory_max_bytes{cluster=~"$cluster", area="heap"}', "{{name}}")),
            ts("Disk used", "percentunit",
               ('1 - elasticsearch_filesystem_data_available_bytes{cluster=~"$cluster"} / elasticsearch_filesystem_data_size_bytes{cluster=~"$cluster"}', "{{name}}")),
            row("Throughput"),
            ts("Indexing rate", "ops", (f'sum by (name) (rate(elasticsearch_indices_indexing_index_total{{cluster=~"$cluster"}}[{RI}]))', "{{name}}")),
            ts("Search rate", "ops", (f'sum by (name) (rate(elasticsearch_indices_search_query_total{{cluster=~"$cluster"}}[{RI}]))', "{{name}}")),
        ],
    },
    "ios-platform": {
        "title": "IOS Kubernetes, hosts and backups",
        "description": "kube-state-metrics and cAdvisor (Kubernetes), node_exporter (hosts) and the backup metrics of `inv backup`.",
        "vars": [],
        "panels": [
            row("Backups"),
            stat("Age of the oldest newest-backup", "s", "max(time() - iosops_backup_last_success_timestamp_seconds)"),
            stat("Last verify succeeded", "none", "min(iosops_backup_last_verify_success)"),
            stat("Last drill RTO", "s", "max(iosops_drill_rto_seconds)"),
            stat("Last drill RPO", "s", "max(iosops_drill_rpo_seconds)"),
            ts("Age of newest good backup (RPO target 24h)", "s",
               ("time() - iosops_backup_last_success_timestamp_seconds", "{{env}} {{component}}")),
            ts("WAL archiving", "none",
               ("time() - iosops_wal_archive_last_success_timestamp_seconds", "seconds since last archived segment {{env}}"),
               ("increase(iosops_wal_archive_failures_total[1h])", "failures in the last hour {{env}}")),
            row("Kubernetes"),
            ts("Container restarts (1h)", "none",
               ("sum by (namespace, pod) (increase(kube_pod_container_status_restarts_total[1h]))", "{{namespace}}/{{pod}}")),
            ts("Pods not running", "none",
               ('sum by (namespace, phase) (kube_pod_status_phase{phase=~"Pending|Unknown|Failed"})', "{{namespace}} {{phase}}")),
            ts("HPA replicas", "none",
               ("kube_horizontalpodautoscaler_status_current_replicas", "current {{horizontalpodautoscaler}}"),
               ("kube_horizontalpodautoscaler_spec_max_replicas", "max {{horizontalpodautoscaler}}")),
            ts("CPU throttling", "percentunit",
               (f'sum by (namespace, pod) (rate(container_cpu_cfs_throttled_periods_total{{container!=""}}[{RI}])) / '
                f'sum by (namespace, pod) (rate(container_cpu_cfs_periods_total{{container!=""}}[{RI}]))', "{{namespace}}/{{pod}}")),
            ts("Container memory (working set)", "bytes",
               ('sum by (namespace, pod) (container_memory_working_set_bytes{container!=""})', "{{namespace}}/{{pod}}")),
            row("Hosts"),
            ts("CPU busy", "percentunit", (f'1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle"}}[{RI}]))', "{{instance}}")),
            ts("Memory available", "percentunit", ("node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes", "{{instance}}")),
            ts("Disk free", "percentunit",
               ('node_filesystem_avail_bytes{fstype!~"tmpfs|overlay|squashfs"} / node_filesystem_size_bytes{fstype!~"tmpfs|overlay|squashfs"}',
                "{{instance}} {{mountpoint}}")),
            ts("Load (1m)", "none", ("node_load1", "{{instance}}")),
        ],
    },
}

# Dashboards whose queries must all return data on the live check stack (the issue's "API, PostgreSQL
# and Redis"); the others are parsed and reported, not required (no Elasticsearch or cluster here)...
LIVE_REQUIRED = ("ios-api", "ios-postgres", "ios-redis")
# ...except these rows of them: the check stack runs a real walstream and takes a real backup, so the
# backup and WAL panels must show data too.
LIVE_REQUIRED_ROWS = {"ios-platform": ("Backups",)}


def _layout(panels: list[P]) -> list[dict]:
    out, x, y, h_row, pid = [], 0, 0, 0, 1
    for title, kind, unit, targets in panels:
        if kind == "row":
            if x:
                y, x = y + h_row, 0
            out.append({"id": pid, "type": "row", "title": title, "collapsed": False, "panels": [],
                        "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
            y, h_row, pid = y + 1, 0, pid + 1
            continue
        w, h = (6, 4) if kind == "stat" else (12, 8)
        if x + w > 24:
            y, x, h_row = y + h_row, 0, 0
        panel = {
            "id": pid, "type": kind, "title": title, "datasource": DATASOURCE,
            "gridPos": {"h": h, "w": w, "x": x, "y": y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr,
                         "legendFormat": legend or "__auto", "range": True, "instant": False}
                        for i, (expr, legend) in enumerate(targets)],
        }
        if kind == "stat":
            panel["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                                "colorMode": "value", "graphMode": "area", "textMode": "auto"}
        else:
            panel["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                                "tooltip": {"mode": "multi", "sort": "desc"}}
        out.append(panel)
        x, h_row, pid = x + w, max(h_row, h), pid + 1
    return out


def render(uid: str) -> dict:
    spec = DASHBOARDS[uid]
    return {
        "uid": uid, "title": spec["title"], "description": spec["description"], "tags": ["iosops"],
        "timezone": "utc", "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": False,
        "graphTooltip": 1, "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []}, "links": [],
        "templating": {"list": spec["vars"]},
        "panels": _layout(spec["panels"]),
    }


def render_text(uid: str) -> str:
    return json.dumps(render(uid), indent=2, sort_keys=False) + "\n"


def filename(uid: str) -> str:
    return f"{uid}.json"


def all_rendered() -> dict[str, str]:
    """file name -> JSON text, for every dashboard."""
    return {filename(uid): render_text(uid) for uid in DASHBOARDS}


def expected_empty(uid: str, title: str) -> Optional[str]:
    return NO_LIVE_DATA.get((uid, title))


def live_required(uid: str, title: str) -> bool:
    """Must the panel `title` of dashboard `uid` return data on the live check stack?"""
    if uid in LIVE_REQUIRED:
        return True
    rows = LIVE_REQUIRED_ROWS.get(uid, ())
    current = ""
    for ptitle, kind, _, _ in DASHBOARDS.get(uid, {}).get("panels", []):
        if kind == "row":
            current = ptitle
        elif ptitle == title and current in rows:
            return True
    return False


def live_requirement(uid: str) -> str:
    """'required', 'rows X required' or 'report only', for the check's summary."""
    if uid in LIVE_REQUIRED:
        return "required"
    rows = LIVE_REQUIRED_ROWS.get(uid, ())
    return f"row(s) {', '.join(rows)} required, the rest report only" if rows else "report only"
