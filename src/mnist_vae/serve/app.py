"""``mnist-vae serve RUN``: a one-page latent-space explorer with a small JSON API (FastAPI).

Everything heavy is computed once at startup (the test digits' posterior means, their PCA
projection, the 2-D manifold); a request only decodes or encodes one image (or a few), which
takes a few milliseconds on one CPU thread. Images travel as base64 strings of 784 bytes
(row-major 28x28, pixel probability x 255), so a decode answer is about 1 KB.

The API trusts nothing it is sent: bodies over :data:`MAX_BODY_BYTES` are refused with 413
before they are parsed, every field is typed, bounded and finite, unknown fields are refused,
and no request names a file: the only files read are the run's own, chosen at startup. Its
OpenAPI schema is published at ``/openapi.json`` and generated from the same models that
validate the requests (:mod:`.schema`, :mod:`.routes`); no documentation page is served, since
FastAPI's would load its scripts from the internet.
"""

from __future__ import annotations

import importlib.resources
import logging
import socket
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from ..errors import MnistVaeError
from ..runs.folder import Run, open_run
from .explorer import Explorer
from .routes import add_api_routes

log = logging.getLogger(__name__)

#: Largest request body accepted (413 beyond). A 28x28 image as ``json.dumps`` of 784 full-precision
#: floats is 17-20 KB, pretty-printed under 24 KB; 64 KB leaves room for any reasonable client.
MAX_BODY_BYTES = 64 * 1024
WEB_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
API_DESCRIPTION = f"""The JSON API behind the mnist-vae latent-space explorer page (served at `/`).

Images are base64 strings of 784 bytes (a 28x28 image, row-major, pixel probability x 255).
Every error answer is `{{"error": "<one line>"}}`: 422 for invalid input, 413 for a body over
{MAX_BODY_BYTES} bytes, 400 for a body that cannot be read, 404 for an unknown path or a figure
this run does not have, 405 (with an `Allow` header) for a method a path does not have.
Integers may be written as whole floats (`55.0`). Bounds that depend on the run (the latent
size, the number of test digits) are in this schema as served for this run."""


class _BodyLimit:
    """ASGI middleware: read the whole body first and refuse it with 413 past ``limit`` bytes.

    Checks Content-Length up front and counts what actually arrives, so a chunked body or one
    that lies about its length is cut off at the limit too.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = JSONResponse({"error": f"request body over {self.limit} bytes"}, status_code=413)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await JSONResponse({"error": "invalid Content-Length"}, status_code=400)(scope, receive, send)
                return
            if declared > self.limit:
                await too_big(scope, receive, send)
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.limit:
                await too_big(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body, sent = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _field_message(err: dict[str, Any], ex: Explorer) -> str:
    """One validation error as ``<field>: <problem>``, in the API's own words where they say more."""
    loc = [str(p) for p in err.get("loc", ())]
    if loc and loc[0] in ("body", "path", "query"):
        loc = loc[1:]
    field, kind, ctx = ".".join(loc) or "body", err.get("type"), err.get("ctx") or {}
    if loc and loc[-1] in ("index", "a", "b") and kind in ("greater_than_equal", "less_than_equal"):
        return f"{field}: test index {err.get('input')} is out of range 0..{len(ex.test_x) - 1}"
    if loc in (["z"], ["image"]) and kind in ("too_short", "too_long"):
        want = f"{ex.latent_dim} numbers (the latent size)" if loc == ["z"] else "784 numbers (28x28 pixels)"
        got = ctx.get("actual_length")
        return f"{field}: expected {want}, got {got if got is not None else 'more'}"
    return f"{field}: {err.get('msg', 'invalid')}"


def _validation_message(exc: RequestValidationError, ex: Explorer) -> str:
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return "body: not valid JSON"
    parts = [_field_message(err, ex) for err in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def create_app(run: Run | str | Path, dataset: Any = None) -> FastAPI:
    """The explorer's FastAPI app for a run folder (or an opened :class:`Run`).

    ``dataset`` replaces the run's own test digits (tests); by default the dataset the run was
    trained on is loaded without any download.
    """
    if not isinstance(run, Run):
        run = open_run(run)
    ex = Explorer(run, dataset)
    web = importlib.resources.files("mnist_vae.serve").joinpath("web")
    pages = {route: (web.joinpath(name).read_bytes(), kind) for route, (name, kind) in WEB_FILES.items()}

    app = FastAPI(
        title="mnist-vae explorer",
        version=__version__,
        description=API_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.explorer = ex
    _add_error_handlers(app, ex)

    def static(route: str):
        body, kind = pages[route]
        return lambda: Response(body, media_type=kind, headers={"Cache-Control": "no-cache"})

    for route in pages:
        app.add_api_route(route, static(route), methods=["GET"], response_class=HTMLResponse, include_in_schema=False)
    add_api_routes(app, ex)
    app.add_middleware(_BodyLimit, limit=MAX_BODY_BYTES)
    return app


def _add_error_handlers(app: FastAPI, ex: Explorer) -> None:
    """Every error answer is ``{"error": "<one line>"}``; a 405 keeps its ``Allow`` header."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _validation_message(exc, ex)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's HTTPException is a subclass
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (port 0 picks a free one); OSError if the address is taken.

    The protocol is named (IPPROTO_TCP, not 0) because asyncio only sets TCP_NODELAY on accepted
    connections whose socket says TCP; without it, Nagle's algorithm and delayed ACKs add about
    40 ms to every answer on a kept-alive connection, i.e. to every slider move in a browser.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def make_server(app: Any, log_level: str = "warning") -> Any:
    """A uvicorn Server for ``app`` (run it with ``server.run(sockets=[sock])``)."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off"))


def serve(run_dir: Run | str | Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Open the run (a folder, or an opened :class:`Run` such as a shipped model), precompute, and serve the explorer until interrupted."""
    if not 0 <= port <= 65535:
        raise MnistVaeError(f"--port: {port} is not a TCP port (0..65535)")
    try:  # claim the address before the slow start-up, so a taken port fails at once
        sock = listen_socket(host, port)
    except OSError as e:
        raise MnistVaeError(f"--host/--port: cannot listen on {host}:{port} ({e.strerror or e})") from None
    try:
        app = create_app(run_dir)
    except BaseException:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    what = run_dir.path if isinstance(run_dir, Run) else run_dir
    log.info(f"serving {what} at http://{shown}:{bound}/ (Ctrl+C to stop)")
    torch.set_num_threads(1)  # single-image calls: one thread is fastest and leaves the other cores alone
    make_server(app).run(sockets=[sock])
