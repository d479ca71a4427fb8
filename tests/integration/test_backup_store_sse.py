"""S3 server-side encryption (backup.store.sse) over real HTTP against moto_server: every upload path of
S3Store (single put, streamed put below and above the multipart threshold) asks for it, and moto records
it on the object (head_object), as S3 does."""
import io

import boto3
import pytest

from iosops.backup.store import open_store
from iosops.config import load_env
from tests.integration.test_backup_reliability import moto, s3_overrides  # noqa: F401 (fixture: moto_server + bucket)

KEY, SECRET = "itest-key-7f3a", "itest-secret-91c2"  # pragma: allowlist secret - moto's dummy credential for a loopback fake S3


@pytest.fixture
def s3(moto, monkeypatch):  # noqa: F811  pytest injects the imported fixture by this parameter name
    monkeypatch.setenv("ITEST_S3_KEY", KEY)
    monkeypatch.setenv("ITEST_S3_SECRET", SECRET)
    return boto3.client("s3", endpoint_url=moto, region_name="us-east-1", aws_access_key_id=KEY,
                        aws_secret_access_key=SECRET)


def _upload_all(moto_url: str, prefix: str, **sse) -> list[str]:
    env = load_env("local", environ={}, overrides=s3_overrides(moto_url, prefix=prefix, **sse))
    store = open_store(env)
    store.put_bytes("backups/x/manifest.json", b"{}")
    store.put_stream("backups/x/small.tar.zst", io.BytesIO(b"s" * 1024))
    store.put_stream("backups/x/large.tar.zst", io.BytesIO(b"l" * (6 * 1024 * 1024)))  # > 5 MB chunk: multipart
    return [f"{prefix}/backups/x/{n}" for n in ("manifest.json", "small.tar.zst", "large.tar.zst")]


@pytest.mark.parametrize("sse, kms_key", [("AES256", ""), ("aws:kms", "alias/ios-itest-backups")])
def test_every_upload_asks_for_server_side_encryption(moto, s3, sse, kms_key):  # noqa: F811
    extra = {"sse": sse, **({"sse_kms_key_id": kms_key} if kms_key else {})}
    for key in _upload_all(moto, f"sse-{sse.replace(':', '-')}", **extra):
        head = s3.head_object(Bucket="ios-backups", Key=key)
        assert head.get("ServerSideEncryption") == sse, key
        if kms_key:
            assert kms_key in head.get("SSEKMSKeyId", ""), key


def test_without_sse_the_uploads_ask_for_nothing(moto, s3):  # noqa: F811
    for key in _upload_all(moto, "sse-none"):
        assert "SSEKMSKeyId" not in s3.head_object(Bucket="ios-backups", Key=key)
