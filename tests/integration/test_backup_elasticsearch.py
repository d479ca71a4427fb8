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


def test_failed_snapshot_fails_the_backup_and_commits_nothing(lab):
    with FakeElasticsearch({"products": 1}, fail_with="FAILED") as es:
        env = lab.env(backup={"elasticsearch_url": es.url})
        with pytest.raises(OperationFailed, match=r"snapshot .* ended FAILED.*nothing was committed"):
            run_backup(env, QUIET, only="elasticsearch")
