"""The reference IOS API: health, readiness, metrics, version, and an items CRUD (PostgreSQL + Redis cache)."""
from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from typing import Annotated, Any, Optional

import httpx
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from fastapi import FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import AfterValidator, BaseModel, Field

from . import guards, metrics
from .guards import MAX_ITEM_ID, MAX_LIMIT, MAX_NAME_CHARS, MAX_OFFSET
from .settings import load

settings = load()


@asynccontextmanager
async def lifespan(app: FastAPI):
    # check: a pooled connection is tested before it is handed out, so a PostgreSQL restart (a restore,
    # a failover) costs a reconnect, not a failed request per dead connection.
    app.state.pool = AsyncConnectionPool(settings.pg_conninfo, min_size=1, max_size=10, open=False,
                                         kwargs={"row_factory": dict_row},
                                         check=AsyncConnectionPool.check_connection)
    # open(wait=False): the process must start (and answer /health) even while PostgreSQL is down.
    await app.state.pool.open(wait=False)
    # health_check_interval: an idle pooled connection is PINGed before reuse, so a Redis restart does not
    # leave dead sockets behind in a worker's pool.
    # retry: a command on a pooled connection that a Redis restart (a restore) closed is retried once on a
    # fresh connection instead of failing the request or /ready.
    app.state.redis = aioredis.from_url(settings.redis_url, username=settings.redis_username or None,
                                        password=settings.redis_password or None,
                                        socket_timeout=settings.check_timeout_s,
                                        socket_connect_timeout=settings.check_timeout_s, health_check_interval=5,
                                        retry=Retry(NoBackoff(), 2),
                                        retry_on_error=[RedisConnectionError, RedisTimeoutError])
    app.state.http = httpx.AsyncClient(timeout=settings.check_timeout_s)
    try:
        yield
    finally:
        await app.state.http.aclose()
        await app.state.redis.aclose()
        await app.state.pool.close()


app = FastAPI(title="IOS API (reference)", version=settings.version, lifespan=lifespan)
# Added innermost first: metrics (outermost) count what the client got, including the guards' 413 and 500.
app.add_middleware(guards.CatchAllMiddleware)
app.add_middleware(guards.BodyLimitMiddleware)
app.add_middleware(metrics.MetricsMiddleware)


@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each bad field and why. The rejected input is not echoed back: it may be up to
    MAX_BODY_BYTES, and an unpaired surrogate in it could not even be encoded as UTF-8."""
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


ItemId = Annotated[int, Path(ge=1, le=MAX_ITEM_ID, description="an item id (PostgreSQL bigint)")]


class ItemIn(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS), AfterValidator(guards.check_text)]
    data: Annotated[dict[str, Any], AfterValidator(guards.check_json)] = Field(
        default_factory=dict, description=f"any JSON object: at most {guards.MAX_DATA_BYTES} bytes, "
                                          f"{guards.MAX_DATA_DEPTH} levels deep, no NUL characters")


NOT_FOUND = {404: {"description": "no item with this id"}}
NOT_READY = {503: {"description": "a dependency does not answer"}}


def _cache_key(item_id: int) -> str:
    return f"ios:item:{item_id}"


# Load balancers probe with HEAD (the server sends the headers only). The HEAD route is registered after
# the GET one so that a 405 on these paths still says `Allow: GET`.
@app.head("/health")
@app.get("/health")
async def health() -> dict:
    """Liveness: the process serves requests. Dependencies are /ready's business."""
    return {"status": "ok"}


async def _check_postgres() -> None:
    async with app.state.pool.connection(timeout=settings.check_timeout_s) as conn:
        await conn.execute("SELECT 1")


async def _check_redis() -> None:
    try:
        await app.state.redis.ping()
    except Exception:
        # Drop every pooled connection: the next check (and request) reconnects and re-resolves the host,
        # instead of reusing sockets to a Redis that restarted (possibly at a new address).
        await app.state.redis.connection_pool.disconnect()
        raise


async def _check_elasticsearch() -> None:
    resp = await app.state.http.get(f"{settings.elasticsearch_url.rstrip('/')}/_cluster/health")
    resp.raise_for_status()
    if resp.json().get("status") == "red":
        raise RuntimeError("cluster status red")


@app.head("/ready", responses=NOT_READY)
@app.get("/ready", responses=NOT_READY)
async def ready() -> JSONResponse:
    """Readiness: PostgreSQL, Redis and (when configured) Elasticsearch all answer."""
    checks = {"postgres": _check_postgres, "redis": _check_redis}
    if settings.elasticsearch_url:
        checks["elasticsearch"] = _check_elasticsearch

    async def run(fn) -> str:
        try:
            await asyncio.wait_for(fn(), timeout=settings.check_timeout_s + 0.5)
            return "ok"
        except Exception as exc:  # any failure makes the check fail; the type says why
            return f"fail: {type(exc).__name__}"

    results = dict(zip(checks, await asyncio.gather(*(run(f) for f in checks.values())), strict=True))
    ok = all(v == "ok" for v in results.values())
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": results}, status_code=200 if ok else 503)


@app.get("/metrics", response_class=PlainTextResponse)
async def prometheus_metrics() -> Response:
    body, ctype = metrics.render()
    return Response(body, media_type=ctype)


@app.get("/version")
async def version() -> dict:
    return {"version": settings.version, "git_sha": settings.git_sha}


@app.post("/items", status_code=201)
async def create_item(item: ItemIn) -> dict:
    async with app.state.pool.connection() as conn:
        cur = await conn.execute("INSERT INTO items (name, data) VALUES (%s, %s) RETURNING id, name, data, "
                                 "created_at, updated_at", (item.name, json.dumps(item.data)))
        return _row(await cur.fetchone())


@app.get("/items")
async def list_items(limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
                     offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> dict:
    async with app.state.pool.connection() as conn:
        cur = await conn.execute("SELECT id, name, data, created_at, updated_at FROM items ORDER BY id "
                                 "LIMIT %s OFFSET %s", (limit, offset))
        return {"items": [_row(r) for r in await cur.fetchall()]}


@app.get("/items/{item_id}", responses=NOT_FOUND)
async def get_item(item_id: ItemId, response: Response) -> dict:
    key = _cache_key(item_id)
    try:
        cached: Optional[bytes] = await app.state.redis.get(key)
    except Exception:  # cache down: serve from the database
        cached = None
    if cached:
        response.headers["X-Cache"] = "hit"
        return json.loads(cached)
    async with app.state.pool.connection() as conn:
        cur = await conn.execute("SELECT id, name, data, created_at, updated_at FROM items WHERE id = %s", (item_id,))
        row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, "item not found")
    item = _row(row)
    try:
        await app.state.redis.set(key, json.dumps(item), ex=settings.cache_ttl_s)
    except Exception:  # nosec B110 # caching is best effort: a Redis outage must not fail a read that PostgreSQL answered
        pass
    response.headers["X-Cache"] = "miss"
    return item


@app.put("/items/{item_id}", responses=NOT_FOUND)
async def update_item(item_id: ItemId, item: ItemIn) -> dict:
    async with app.state.pool.connection() as conn:
        cur = await conn.execute("UPDATE items SET name = %s, data = %s, updated_at = now() WHERE id = %s "
                                 "RETURNING id, name, data, created_at, updated_at",
                                 (item.name, json.dumps(item.data), item_id))
        row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, "item not found")
    await _invalidate(item_id)
    return _row(row)


@app.delete("/items/{item_id}", status_code=204, responses=NOT_FOUND)
async def delete_item(item_id: ItemId) -> Response:
    async with app.state.pool.connection() as conn:
        cur = await conn.execute("DELETE FROM items WHERE id = %s", (item_id,))
    if cur.rowcount == 0:
        raise HTTPException(404, "item not found")
    await _invalidate(item_id)
    return Response(status_code=204)


async def _invalidate(item_id: int) -> None:
    try:
        await app.state.redis.delete(_cache_key(item_id))
    except Exception:  # nosec B110 # cache invalidation is best effort: the TTL bounds staleness
        pass  # TTL bounds staleness when Redis is briefly unreachable


def _row(row: dict) -> dict:
    return {"id": row["id"], "name": row["name"], "data": row["data"],
            "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat()}
