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

import base64
import importlib.resources
import socket
import struct
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Annotated, Any

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from .runs import Run, open_run

MAX_BODY_BYTES = 16 * 1024
Z_LIMIT = 10.0  # |z_i| accepted by the API; the prior puts essentially nothing beyond 5
MAX_SAMPLES = 64
MAX_STEPS = 16
MAX_SLIDERS = 16
MAX_SCATTER = 2500  # points drawn in the PCA plot; more only clutters it
MANIFOLD_SIDE = 15  # images per side of the decoded 2-D manifold
MANIFOLD_RANGE = 3.0  # the plane spans [-3, 3]^2 of the prior
N_NEIGHBOURS = 5
SEED_MAX = 2**31 - 1
WEB_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
             "/app.js": ("app.js", "text/javascript; charset=utf-8"),
             "/style.css": ("style.css", "text/css; charset=utf-8")}

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


def image_b64(img: torch.Tensor) -> str:
    """A [28, 28] probability image as base64 of 784 bytes (0..255)."""
    return base64.b64encode((img.clamp(0, 1) * 255).round().to(torch.uint8).contiguous().numpy().tobytes()).decode("ascii")


def png_gray(img: torch.Tensor) -> bytes:
    """A [H, W] probability image as an 8-bit grayscale PNG (no imaging library needed)."""
    h, w = img.shape
    pixels = (img.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    raw = b"".join(b"\0" + pixels[r].tobytes() for r in range(h))  # filter type 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


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


def _test_dataset(run: Run):
    """The dataset the run was trained on, without touching the network for ``auto``."""
    from .data import load_dataset

    t = run.config.train
    name = t.dataset
    recorded = (run.meta.get("dataset") or {}).get("name")
    if name == "auto" and recorded in ("embedded", "mnist", "fashion-mnist"):
        name = recorded  # "auto" resolved to this when the run was trained
    return load_dataset(name, t.data_path or None, download=False, log=lambda m: None)


class Explorer:
    """The model plus everything precomputed for the page; methods take validated arguments."""

    def __init__(self, run: Run, dataset: Any = None) -> None:
        from .train import prepare_data

        self.run = run
        self.model = run.model.cpu().eval()
        self.latent_dim = run.config.model.latent_dim
        self.lock = threading.Lock()  # one model call at a time: single-image calls, no contention worth having
        data = prepare_data(run.config, torch.device("cpu"), log=lambda m: None, dataset=dataset or _test_dataset(run))
        self.dataset = data.dataset
        self.test_x = data.test_x
        self.test_labels = data.test_labels.cpu()
        with torch.no_grad():
            self.test_mu = torch.cat([self.model.encode(b)[0].float() for b in self.test_x.split(500)])
        self.pca_mean, self.pca_axes = _pca2(self.test_mu)
        self.test_xy = self.project(self.test_mu)
        lo = torch.quantile(self.test_mu, 0.001, dim=0) if len(self.test_mu) else torch.zeros(self.latent_dim)
        hi = torch.quantile(self.test_mu, 0.999, dim=0) if len(self.test_mu) else torch.zeros(self.latent_dim)
        self.slider_lo = lo.clamp(max=-3.0).floor().clamp(min=-Z_LIMIT)
        self.slider_hi = hi.clamp(min=3.0).ceil().clamp(max=Z_LIMIT)
        self.manifold_png = self._manifold() if self.latent_dim == 2 else None
        self.loss_png = self._loss_png()

    # --- model calls ---------------------------------------------------------------------

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, D] -> probabilities [B, 28, 28]."""
        with self.lock, torch.no_grad():
            return torch.sigmoid(self.model.decode(z).float()).reshape(len(z), 28, 28)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 28, 28] in [0, 1] -> μ [B, D]."""
        with self.lock, torch.no_grad():
            return self.model.encode(x)[0].float()

    def project(self, mu: torch.Tensor) -> torch.Tensor:
        """Codes [B, D] -> their coordinates [B, 2] on the test codes' two principal axes."""
        return (mu - self.pca_mean) @ self.pca_axes

    def check_index(self, i: int, name: str) -> int:
        n = len(self.test_x)
        if not 0 <= i < n:
            raise HTTPException(422, f"{name}: test index {i} is out of range 0..{n - 1}")
        return i

    # --- precomputed figures ---------------------------------------------------------------

    def _manifold(self) -> bytes:
        # Row 0 is the top of the plane, i.e. the largest z2.
        s = torch.linspace(-MANIFOLD_RANGE, MANIFOLD_RANGE, MANIFOLD_SIDE)
        z = torch.stack([s.repeat(MANIFOLD_SIDE), s.flip(0).repeat_interleave(MANIFOLD_SIDE)], 1)
        imgs = self.decode(z).reshape(MANIFOLD_SIDE, MANIFOLD_SIDE, 28, 28)
        return png_gray(imgs.permute(0, 2, 1, 3).reshape(MANIFOLD_SIDE * 28, MANIFOLD_SIDE * 28))

    def _loss_png(self) -> bytes | None:
        path = self.run.path / "loss_curves.png"
        if path.is_file():
            return path.read_bytes()
        if not self.run.history:
            return None
        from .plots import loss_curves

        with tempfile.TemporaryDirectory() as tmp:  # drawn for the page only; the run folder is left as it is
            return loss_curves(self.run.history, Path(tmp) / "loss_curves.png", self.run.config.name).read_bytes()

    def info(self) -> dict[str, Any]:
        """Run facts and what the page needs to lay itself out."""
        cfg, last = self.run.config, (self.run.history[-1] if self.run.history else {})
        n_show = min(MAX_SLIDERS, self.latent_dim)
        return {
            "name": cfg.name,
            "description": cfg.description,
            "run": self.run.path.name,
            "latent_dim": self.latent_dim,
            "sliders": n_show,
            "slider_min": [round(float(v), 3) for v in self.slider_lo],
            "slider_max": [round(float(v), 3) for v in self.slider_hi],
            "z_limit": Z_LIMIT,
            "max_samples": MAX_SAMPLES,
            "max_steps": MAX_STEPS,
            "epochs": self.run.epoch,
            "epochs_planned": cfg.train.epochs,
            "final": {k: last.get(k) for k in ("test_loss", "test_recon", "test_kl", "train_loss")} if last else None,
            "train_seconds": round(sum(r.get("train_seconds", 0.0) for r in self.run.history), 1),
            "parameters": self.run.meta.get("parameters"),
            "created": self.run.meta.get("created"),
            "dataset": self.dataset.info() | {"sha256": self.dataset.sha256[:12]},
            "config": cfg.to_dict(),
            "config_toml": cfg.to_toml(),
            "n_test": len(self.test_x),
            "labels": "".join(str(int(v)) for v in self.test_labels),
            "has_loss_curves": self.loss_png is not None,
            "manifold": {"side": MANIFOLD_SIDE, "range": MANIFOLD_RANGE} if self.manifold_png else None,
        }

    def projection(self) -> dict[str, Any]:
        n = len(self.test_xy)
        keep = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:MAX_SCATTER].sort().values if n > MAX_SCATTER else torch.arange(n)
        xy = self.test_xy[keep]
        return {"x": [round(float(v), 3) for v in xy[:, 0]], "y": [round(float(v), 3) for v in xy[:, 1]],
                "label": [int(self.test_labels[i]) for i in keep], "index": [int(i) for i in keep], "n_test": n}


def _pca2(mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [D] and the two leading principal axes [D, 2] (zero-padded when D < 2)."""
    d = mu.shape[1]
    mean = mu.mean(0) if len(mu) else torch.zeros(d)
    if len(mu) < 2:
        return mean, torch.eye(d, 2)
    _, _, vh = torch.linalg.svd(mu - mean, full_matrices=False)
    axes = torch.zeros(d, 2)
    k = min(2, vh.shape[0])
    axes[:, :k] = vh[:k].T
    for j in range(k):  # fix the sign so the picture does not flip between runs of the same model
        if axes[:, j].sum() < 0:
            axes[:, j] = -axes[:, j]
    return mean, axes


def create_app(run: Run | str | Path, dataset: Any = None) -> FastAPI:
    """The explorer's FastAPI app for a run folder (or an opened :class:`Run`).

    ``dataset`` replaces the run's own test digits (tests); by default the dataset the run was
    trained on is loaded without any download.
    """
    if not isinstance(run, Run):
        run = open_run(run, warn=lambda m: None)
    ex = Explorer(run, dataset)
    web = importlib.resources.files("mnist_vae").joinpath("web")
    pages = {route: (web.joinpath(name).read_bytes(), kind) for route, (name, kind) in WEB_FILES.items()}

    app = FastAPI(title="mnist-vae explorer", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.explorer = ex

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

    def static(route: str):
        body, kind = pages[route]
        return lambda: Response(body, media_type=kind, headers={"Cache-Control": "no-cache"})

    for route in pages:
        app.add_api_route(route, static(route), methods=["GET"], response_class=HTMLResponse, include_in_schema=False)

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
        return {"index": i, "label": int(ex.test_labels[i]), "image": image_b64(ex.test_x[i].reshape(28, 28)),
                "mu": [round(float(v), 4) for v in mu.clamp(-Z_LIMIT, Z_LIMIT)]}

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
        return {"mu": [round(float(v), 4) for v in mu[0]], "image": image_b64(recon),
                "xy": [round(float(xy[0]), 3), round(float(xy[1]), 3)],
                "neighbours": [{"index": int(i), "label": int(ex.test_labels[i])} for i in near]}

    app.add_middleware(_BodyLimit, limit=MAX_BODY_BYTES)
    return app


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


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, log: Any = print) -> None:
    """Open the run, precompute, and serve the explorer until interrupted."""
    from .errors import MnistVaeError

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
    log(f"serving {run_dir} at http://{shown}:{bound}/ (Ctrl+C to stop)")
    torch.set_num_threads(1)  # single-image calls: one thread is fastest and leaves the other cores alone
    make_server(app).run(sockets=[sock])
