"""The ASGI application: the page (GET /, its files under /static) and the JSON API (POST /api/diff, /api/verify,
/api/check, /api/code; GET /api/health). Every reply of /api is JSON, errors included: 400 a malformed request,
404/405 a wrong address or method, 413 a body or text too long, 422 an input matcalc refuses (syntax, shapes,
declarations), 503 busy, 504 past the time limit; never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .pool import Pool, Settings
from .requests import SCHEMAS, RequestError, checked

STATIC = Path(__file__).resolve().parent / "static"

# The page loads nothing from elsewhere and runs no inline or evaluated script.
_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
            (b"content-security-policy",
             b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
             b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'")]


class _SecurityHeaders:
    """Pure ASGI middleware: the headers above on every reply."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message, "summary": message}}, status_code=status)


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) past `limit` bytes, whatever its Content-Length says."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "TooLarge", f"the body is {declared} bytes; this server takes at most {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "TooLarge", f"the body is over {limit} bytes; this server takes at most {limit}")
        chunks.append(chunk)
    return b"".join(chunks)


async def _streamed(pool: Pool, endpoint: str, fields: dict[str, Any]) -> AsyncIterator[bytes]:
    """A request with "stream": true, as newline-delimited JSON: {"progress": "..."} while its proofs work (which
    sizes, how many entries of how many), then one last line {"status": <the HTTP status the plain request would
    have had>, "reply": <its JSON reply>}. A client that goes away cancels the job (its worker is replaced)."""
    lines: asyncio.Queue[bytes] = asyncio.Queue()

    def progress(text: str) -> None:
        lines.put_nowait(json.dumps({"progress": text}).encode() + b"\n")

    async def job() -> None:
        status, payload = await pool.run(endpoint, fields, progress)
        lines.put_nowait(json.dumps({"status": status, "reply": payload}).encode() + b"\n")

    task = asyncio.get_running_loop().create_task(job())
    try:
        while True:
            getter = asyncio.ensure_future(lines.get())
            done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                line = getter.result()
                yield line
                if line.startswith(b'{"status"'):
                    return
                continue
            getter.cancel()
            if task.exception() is not None:  # a bug of the server's, said as the plain request would say it
                message = "internal error; please report the request"
                yield json.dumps({"status": 500, "reply": {"error": {"type": "InternalError", "message": message,
                                                                      "summary": message}}}).encode() + b"\n"
                return
            while not lines.empty():  # the job has ended: what it said last, its reply included, is queued
                yield lines.get_nowait()
            return
    finally:
        task.cancel()


def create_app(settings: Settings | None = None) -> Starlette:
    """The application with its own pool of workers, started and stopped with the application (its lifespan)."""
    settings = settings or Settings()
    state: dict[str, Pool] = {}

    async def api(request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        if endpoint not in SCHEMAS:
            return _error(404, "NotFound", f"no endpoint /api/{endpoint[:60]}; there are "
                                           f"{', '.join('/api/' + name for name in SCHEMAS)}")
        try:
            fields = checked(endpoint, await _body(request, settings.max_body), settings.max_expr)
        except RequestError as error:
            return JSONResponse(error.payload, status_code=error.status)
        if fields.get("stream"):
            return StreamingResponse(_streamed(state["pool"], endpoint, fields), media_type="application/x-ndjson")
        status, payload = await state["pool"].run(endpoint, fields)
        return JSONResponse(payload, status_code=status)

    async def health(request: Request) -> Response:
        pool = state["pool"]
        return JSONResponse({"ok": True, "workers": len(pool.workers), "idle": pool.idle.qsize(),
                             "waiting": pool.waiting, **pool.stats})

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        return _error(error.status_code, "HTTPError", str(error.detail))

    async def internal_error(request: Request, error: Exception) -> Response:
        return _error(500, "InternalError", f"internal error: {type(error).__name__}; please report the request")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = state["pool"] = Pool(settings)
        await pool.start()
        try:
            yield
        finally:
            await pool.close()

    routes = [Route("/", index), Route("/api/health", health),
              Route("/api/{endpoint}", api, methods=["POST"]),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    handlers: dict[Any, Any] = {HTTPException: http_error, Exception: internal_error}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.add_middleware(_SecurityHeaders)
    app.state.settings = settings
    app.state.pools = state
    return app
