"""``mnist-vae serve RUN``: a one-page latent-space explorer with a small JSON API (FastAPI).

Everything heavy is computed once at startup (the test digits' posterior means, their PCA
projection, the 2-D manifold); a request only decodes or encodes one image (or a few), which
takes a few milliseconds on one CPU thread. Images travel as base64 strings of 784 bytes
(row-major 28x28, pixel probability x 255), so a decode answer is about 1 KB.

The API trusts nothing it is sent: bodies over :data:`MAX_BODY_BYTES` are refused with 413
before they are parsed, every field is typed, bounded and finite, unknown fields are refused,
and no request names a file: the only files read are the run's own, chosen at startup.
"""

from __future__ import annotations

import importlib.resources
import logging
import socket
from pathlib import Path
from typing import Annotated, Any

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ..errors import MnistVaeError
from ..runs.folder import Run, open_run
from .explorer import MAX_SAMPLES, MAX_STEPS, N_NEIGHBOURS, SEED_MAX, Z_LIMIT, Explorer
from .images import image_b64

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
WEB_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}

ZValue = Annotated[float, Field(strict=True, ge=-Z_LIMIT, le=Z_LIMIT, allow_inf_nan=False)]
Pixel = Annotated[float, Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DecodeRequest(_Body):
    z: list[ZValue] = Field(max_length=1024)


class SamplesRequest(_Body):
    seed: Annotated[int, Field(strict=True, ge=0, le=SEED_MAX)] = 0
    n: Annotated[int, Field(strict=True, ge=1, le=MAX_SAMPLES)] = 32


class InterpolateRequest(_Body):
    a: Annotated[int, Field(strict=True, ge=0)]
    b: Annotated[int, Field(strict=True, ge=0)]
    steps: Annotated[int, Field(strict=True, ge=2, le=MAX_STEPS)] = 10


class EncodeRequest(_Body):
    image: list[Pixel] = Field(min_length=784, max_length=784)


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


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    parts = []
    for err in errors[:3]:
        if err.get("type") == "json_invalid":
            return "body: not valid JSON"
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
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

    app = FastAPI(title="mnist-vae explorer", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.explorer = ex
    _add_error_handlers(app)

    def static(route: str):
        body, kind = pages[route]
        return lambda: Response(body, media_type=kind, headers={"Cache-Control": "no-cache"})

    for route in pages:
        app.add_api_route(route, static(route), methods=["GET"], response_class=HTMLResponse, include_in_schema=False)
    _add_api_routes(app, ex)
    app.add_middleware(_BodyLimit, limit=MAX_BODY_BYTES)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error answer is ``{"error": "<one line>"}``."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _validation_message(exc)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def _starlette(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)


def _add_api_routes(app: FastAPI, ex: Explorer) -> None:
    """The JSON API the page calls."""

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return ex.info()

    @app.get("/api/projection")
    def projection() -> dict[str, Any]:
        return ex.projection()

    @app.get("/api/loss_curves.png")
    def loss_curves() -> Response:
        if ex.loss_png is None:
            raise HTTPException(404, "this run has no finished epoch, so no loss curves")
        return Response(ex.loss_png, media_type="image/png")

    @app.get("/api/manifold.png")
    def manifold() -> Response:
        if ex.manifold_png is None:
            raise HTTPException(404, f"the manifold is drawn for a 2-dimensional latent only; this one has {ex.latent_dim}")
        return Response(ex.manifold_png, media_type="image/png")

    @app.get("/api/test/{index}")
    def test_digit(index: int) -> dict[str, Any]:
        i = ex.check_index(index, "index")
        mu = ex.test_mu[i]
        return {
            "index": i,
            "label": int(ex.test_labels[i]),
            "image": image_b64(ex.test_x[i].reshape(28, 28)),
            "mu": [round(float(v), 4) for v in mu.clamp(-Z_LIMIT, Z_LIMIT)],
        }

    @app.post("/api/decode")
    def decode(req: DecodeRequest) -> dict[str, Any]:
        if len(req.z) != ex.latent_dim:
            raise HTTPException(422, f"z: expected {ex.latent_dim} numbers (the latent size), got {len(req.z)}")
        return {"image": image_b64(ex.decode(torch.tensor([req.z]))[0])}

    @app.post("/api/samples")
    def samples(req: SamplesRequest) -> dict[str, Any]:
        z = torch.randn((req.n, ex.latent_dim), generator=torch.Generator().manual_seed(req.seed))
        return {"seed": req.seed, "images": [image_b64(img) for img in ex.decode(z)]}

    @app.post("/api/interpolate")
    def interpolate(req: InterpolateRequest) -> dict[str, Any]:
        a, b = ex.check_index(req.a, "a"), ex.check_index(req.b, "b")
        alpha = torch.linspace(0, 1, req.steps).unsqueeze(1)
        z = (1 - alpha) * ex.test_mu[a] + alpha * ex.test_mu[b]
        return {"images": [image_b64(img) for img in ex.decode(z)]}

    @app.post("/api/encode")
    def encode(req: EncodeRequest) -> dict[str, Any]:
        x = torch.tensor(req.image, dtype=torch.float32).reshape(1, 28, 28)
        mu = ex.encode(x)
        recon = ex.decode(mu.clamp(-Z_LIMIT, Z_LIMIT))[0]
        xy = ex.project(mu)[0]
        dist = (ex.test_mu - mu).pow(2).sum(1)
        near = dist.topk(min(N_NEIGHBOURS, len(dist)), largest=False).indices
        return {
            "mu": [round(float(v), 4) for v in mu[0]],
            "image": image_b64(recon),
            "xy": [round(float(xy[0]), 3), round(float(xy[1]), 3)],
            "neighbours": [{"index": int(i), "label": int(ex.test_labels[i])} for i in near],
        }


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (port 0 picks a free one); OSError if the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
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


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Open the run, precompute, and serve the explorer until interrupted."""
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
    log.info(f"serving {run_dir} at http://{shown}:{bound}/ (Ctrl+C to stop)")
    torch.set_num_threads(1)  # single-image calls: one thread is fastest and leaves the other cores alone
    make_server(app).run(sockets=[sock])
