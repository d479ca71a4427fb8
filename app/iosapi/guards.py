"""What keeps one client from knocking the API over: input bounds, a request body limit, and a catch-all
that answers 500 without dropping the keep-alive connection.

The bounds below are documented in docs/api.md ("The API's input bounds"): a request beyond one is
answered 413 or 422 with a body that names the field and the bound, never 500.
"""
from __future__ import annotations

import json
import logging
import math
from typing import Any

from starlette.exceptions import HTTPException

MAX_BODY_BYTES = 64 * 1024  # a request body, as sent; 413 beyond (nginx allows 1m: the app is stricter)
MAX_NAME_CHARS = 200  # items.name (the table's CHECK says the same)
MAX_DATA_BYTES = 32 * 1024  # items.data as compact UTF-8 JSON, what PostgreSQL stores
MAX_DATA_DEPTH = 32  # nesting of objects and arrays in items.data (data itself is level 1)
MAX_LIMIT = 500  # GET /items?limit=
MAX_OFFSET = 1_000_000  # GET /items?offset= (an OFFSET scans and drops that many rows)
MAX_ITEM_ID = 2**63 - 1  # PostgreSQL bigint: a larger id can exist in no row

log = logging.getLogger("uvicorn.error")  # where uvicorn logged "Exception in ASGI application" before


def check_text(value: str) -> str:
    """PostgreSQL text cannot hold NUL, and psycopg cannot encode an unpaired surrogate (valid in JSON
    as "\\ud800", not in UTF-8): both are bad input, not server errors."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no unpaired surrogates such as \\ud800)") from None
    return value


def check_json(data: dict[str, Any]) -> dict[str, Any]:
    """The JSON that jsonb accepts, within MAX_DATA_DEPTH and MAX_DATA_BYTES. Walked without recursion,
    so a deep document cannot exhaust the stack before it is refused."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_DATA_DEPTH:
                raise ValueError(f"must not nest objects or arrays deeper than {MAX_DATA_DEPTH} levels")
            if isinstance(node, dict):
                for key, child in node.items():
                    _check_json_text(key, "keys")
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in node)
        elif isinstance(node, str):
            _check_json_text(node, "strings")
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValueError("numbers must be finite (no NaN or Infinity)")
    size = len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_DATA_BYTES:
        raise ValueError(f"must be at most {MAX_DATA_BYTES} bytes as JSON (got {size})")
    return data


def _check_json_text(value: str, what: str) -> None:
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be valid Unicode text (no unpaired surrogates such as \\ud800)") from None


async def _send_json(send, status: int, body: dict, close: bool = False) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class BodyTooLarge(HTTPException):
    """Raised from receive(): FastAPI re-raises an HTTPException met while reading the body (any other
    error there becomes a 400), so the client is told 413."""

    def __init__(self) -> None:
        super().__init__(413, f"request body larger than {MAX_BODY_BYTES} bytes")


class BodyLimitMiddleware:
    """At most `max_bytes` of request body: a declared Content-Length beyond it is answered 413 before any
    of the body is read (and the connection closed: the unread body would be taken for the next request);
    a chunked body is cut off at the first chunk that crosses it."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _send_json(send, 413, {"detail": f"request body larger than {self.max_bytes} bytes"}, close=True)
            return
        total = 0

        async def limited_receive():
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > self.max_bytes:
                    raise BodyTooLarge()
            return message

        await self.app(scope, limited_receive, send)


class CatchAllMiddleware:
    """An unhandled exception becomes a logged 500 *here*, and is not re-raised.

    Starlette's ServerErrorMiddleware sends its 500 and then re-raises (even with an exception handler
    installed), and uvicorn answers an exception after the response started by closing the connection.
    Behind nginx that closed keep-alive connection counts against the replica (max_fails): a stream of 500s
    from one client marked every replica down, 502 for everyone. Answering here keeps the connection open.
    Only a response that had already started cannot be repaired: that error is re-raised (uvicorn closes
    the connection, which is the only way left to tell the client the body is incomplete).
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch_send)
        except HTTPException as exc:  # normally answered inside (ExceptionMiddleware); never a 500
            if started:
                raise
            await _send_json(send, exc.status_code, {"detail": exc.detail})
        except Exception:
            route = getattr(scope.get("route"), "path", None) or "<unmatched>"
            log.exception("unhandled error in %s %s", scope.get("method"), route)
            if started:
                raise
            await _send_json(send, 500, {"detail": "internal server error"})
