"""Configuration from environment variables only (12-factor); secrets may come from *_FILE paths."""
from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import quote


def _secret(name: str) -> str:
    path = os.environ.get(f"{name}_FILE")
    if path:
        with open(path) as fh:
            return fh.read().strip()
    return os.environ.get(name, "")


@dataclass(frozen=True)
class Settings:
    pg_host: str
    pg_port: int
    pg_db: str
    pg_user: str
    pg_password: str
    redis_url: str
    redis_username: str
    redis_password: str
    elasticsearch_url: str
    git_sha: str
    version: str
    cache_ttl_s: int
    check_timeout_s: float

    @property
    def pg_conninfo(self) -> str:
        return (f"postgresql://{quote(self.pg_user)}:{quote(self.pg_password)}@{self.pg_host}:{self.pg_port}/"
                f"{quote(self.pg_db)}?application_name=iosapi&connect_timeout=3")


def load() -> Settings:
    env = os.environ.get
    return Settings(
        pg_host=env("POSTGRES_HOST", "127.0.0.1"),
        pg_port=int(env("POSTGRES_PORT", "5432")),
        pg_db=env("POSTGRES_DB", "ios"),
        pg_user=env("POSTGRES_USER", "ios"),
        pg_password=_secret("POSTGRES_PASSWORD"),
        redis_url=env("REDIS_URL", "redis://127.0.0.1:6379/0"),
        # A Redis ACL user and its password (REDIS_PASSWORD_FILE): never in the URL, whose env value is
        # visible to anyone who can inspect the container.
        redis_username=env("REDIS_USERNAME", ""),
        redis_password=_secret("REDIS_PASSWORD"),
        elasticsearch_url=env("ELASTICSEARCH_URL", ""),
        git_sha=env("APP_GIT_SHA", "unknown"),
        version=env("APP_VERSION", "0.1.0"),
        cache_ttl_s=int(env("CACHE_TTL_S", "60")),
        check_timeout_s=float(env("READY_CHECK_TIMEOUT_S", "1.5")),
    )
