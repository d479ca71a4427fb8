"""Elasticsearch snapshots through the REST API — against a FAKE (see fake_elasticsearch.py): there is no
Elasticsearch on this machine. The code path is the one used against a real cluster."""
import pytest

from iosops.backup.catalog import verify
from iosops.backup.run import run_backup
from iosops.errors import OperationFailed
from tests.integration.backup_lab import QUIET, destroy_lab, make_lab
from tests.integration.fake_elasticsearch import FakeElasticsearch


@pytest.fixture(scope="module")
def lab():
    lab = make_lab("es")
    yield lab
    destroy_lab(lab)


def test_snapshot_is_registered_started_polled_and_recorded_with_doc_counts(lab):
    with FakeElasticsearch({"products": 42, "orders": 7, ".security": 3}) as es:
        env = lab.env(backup={"elasticsearch_url": es.url})
        man = run_backup(env, QUIET, only="elasticsearch")
        methods = [(m, p.split("?")[0]) for m, p, _ in es.requests]
        snap = f"iosops-{man.id.lower()}"
        assert ("PUT", "/_snapshot/iosops") in methods
        assert ("PUT", f"/_snapshot/iosops/{snap}") in methods
        assert methods.count(("GET", f"/_snapshot/iosops/{snap}")) >= 2  # polled until SUCCESS
        put_snap = next(b for m, p, b in es.requests if p.startswith(f"/_snapshot/iosops/{snap}"))
        assert put_snap == {"indices": "*,-.*", "include_global_state": False}
        fp = man.fingerprints["elasticsearch"]
        assert fp["indices"] == {"products": 42, "orders": 7}  # system indices excluded
        assert fp["snapshot"]["snapshot"] == snap and sorted(fp["snapshot"]["indices"]) == ["orders", "products"]
        assert verify(env, QUIET, man.id)[0]["ok"]


def test_repository_type_and_settings_come_from_config(lab):
    """fs stays the default (compose/local); an s3 repository on the backup bucket (Kubernetes) is PUT with
    exactly the configured type and settings. Against the FAKE: it records the body, it has no S3."""
    with FakeElasticsearch({"products": 3}) as es:
        run_backup(lab.env(backup={"elasticsearch_url": es.url}), QUIET, only="elasticsearch")
        assert es.repos["iosops"] == {"type": "fs", "settings": {"location": "iosops"}}
    s3 = {"type": "s3", "settings": {"bucket": "ios-backups", "base_path": "prod/elasticsearch", "client": "default"}}
    with FakeElasticsearch({"products": 3}) as es:
        env = lab.env(backup={"elasticsearch_url": es.url, "elasticsearch_repository": "ios-s3",
                              "elasticsearch_repository_settings": s3})
        man = run_backup(env, QUIET, only="elasticsearch")
        puts = [b for m, p, b in es.requests if m == "PUT" and p == "/_snapshot/ios-s3"]
        assert puts == [s3] and man.fingerprints["elasticsearch"]["snapshot"]["repository"] == "ios-s3"


def test_failed_snapshot_fails_the_backup_and_commits_nothing(lab):
    with FakeElasticsearch({"products": 1}, fail_with="FAILED") as es:
        env = lab.env(backup={"elasticsearch_url": es.url})
        with pytest.raises(OperationFailed, match=r"snapshot .* ended FAILED.*nothing was committed"):
            run_backup(env, QUIET, only="elasticsearch")


def test_restore_closes_the_indices_restores_the_snapshot_and_checks_doc_counts(lab):
    """Against the FAKE: the request sequence and our handling of its documented answers."""
    from iosops.backup.restore import restore

    with FakeElasticsearch({"products": 42, "orders": 7}) as es:
        env = lab.env(backup={"elasticsearch_url": es.url})
        man = run_backup(env, QUIET, only="elasticsearch")
        es.indices.update({"products": 50, "orders": 1})  # changed after the backup
        res = restore(env, QUIET, backup_id=man.id, only="elasticsearch")
        assert res.fingerprints["elasticsearch"]["indices"] == {"orders": 7, "products": 42}
        assert es.indices == {"products": 42, "orders": 7}
        posts = [p.split("?")[0] for m, p, _ in es.requests if m == "POST"]
        snap = man.fingerprints["elasticsearch"]["snapshot"]["snapshot"]
        assert posts == ["/orders,products/_close", f"/_snapshot/iosops/{snap}/_restore"]
        assert res.safety_backup.endswith("-safety")


def test_failed_es_restore_rolls_back_to_the_safety_snapshot(lab):
    from iosops.backup.restore import restore

    with FakeElasticsearch({"products": 42}) as es:
        env = lab.env(backup={"elasticsearch_url": es.url})
        man = run_backup(env, QUIET, only="elasticsearch")
        es.indices["products"] = 60
        es.restore_fails = True
        with pytest.raises(OperationFailed, match=r"elasticsearch restore failed .*HTTP 500.*rolled back: FAILED to "
                                                  r"restore safety snapshot"):
            restore(env, QUIET, backup_id=man.id, only="elasticsearch")
        es.restore_fails = False  # the node is back: the rollback path itself restores the safety snapshot
        from iosops.backup.restore_es import rollback_elasticsearch
        from iosops.backup.catalog import entries
        from iosops.backup.store import open_store

        safety = [e.manifest for e in entries(env, open_store(env)) if e.complete and e.manifest.id.endswith("-safety")][-1]
        es.indices["products"] = 1
        assert "doc counts equal the pre-restore ones" in rollback_elasticsearch(env, QUIET, safety)
        assert es.indices["products"] == 60


def test_es_restore_bad_input(lab):
    from iosops.backup.restore import restore
    from iosops.errors import BadInput

    with FakeElasticsearch({"products": 1}) as es:
        man = run_backup(lab.env(backup={"elasticsearch_url": es.url}), QUIET, only="elasticsearch")
    with pytest.raises(BadInput, match="needs backup.elasticsearch_url"):
        restore(lab.env(), QUIET, backup_id=man.id, only="elasticsearch")
    with pytest.raises(BadInput, match="holds no redis"):
        restore(lab.env(), QUIET, backup_id=man.id, only="redis")
