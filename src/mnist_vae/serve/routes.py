"""The explorer's JSON API: per-app request and answer models (built from the run) and the routes.

The models are classes defined inside :func:`add_api_routes` because their bounds come from the
run: ``z`` has exactly ``latent_dim`` numbers, test indices run to ``n_test - 1``. FastAPI reads
the routes' annotations as objects, so this module does not use ``from __future__ import
annotations`` (string annotations naming local classes could not be resolved).
"""

from typing import Annotated

import torch
from fastapi import FastAPI, HTTPException, Path
from pydantic import BaseModel, Field

from .explorer import MAX_SAMPLES, MAX_STEPS, N_NEIGHBOURS, SEED_MAX, Z_LIMIT, Explorer
from .images import image_b64
from .schema import (
    Body,
    Decoded,
    Image,
    Images,
    Info,
    IntegerText,
    Neighbour,
    Pixel,
    PNGResponse,
    Projection,
    Samples,
    WholeNumber,
    ZValue,
    errors,
    png,
)

GET_ERRORS = errors(405, 413)
POST_ERRORS = errors(400, 405, 413, 422)


def add_api_routes(app: FastAPI, ex: Explorer) -> None:
    """The JSON API the page calls, with models bounded by this run's latent size and test digits."""
    _add_fact_routes(app, ex)
    _add_test_digit_routes(app, ex)
    _add_code_routes(app, ex)


def _add_fact_routes(app: FastAPI, ex: Explorer) -> None:
    """Run facts, the PCA map and the two figures."""

    @app.get("/api/info", responses=GET_ERRORS)
    def info() -> Info:
        return Info(**ex.info())

    @app.get("/api/projection", responses=GET_ERRORS)
    def projection() -> Projection:
        return Projection(**ex.projection())

    @app.get(
        "/api/loss_curves.png",
        response_class=PNGResponse,
        responses=png("the loss curves per epoch", not_found="the run has no finished epoch"),
    )
    def loss_curves() -> PNGResponse:
        if ex.loss_png is None:
            raise HTTPException(404, "this run has no finished epoch, so no loss curves")
        return PNGResponse(ex.loss_png)

    @app.get(
        "/api/manifold.png",
        response_class=PNGResponse,
        responses=png(
            "the decoded 15x15 manifold over [-3, 3]^2",
            not_found="the latent is not 2-dimensional: the manifold is drawn for a 2-D latent only",
        ),
    )
    def manifold() -> PNGResponse:
        if ex.manifold_png is None:
            raise HTTPException(404, f"the manifold is drawn for a 2-dimensional latent only; this one has {ex.latent_dim}")
        return PNGResponse(ex.manifold_png)


def _add_test_digit_routes(app: FastAPI, ex: Explorer) -> None:
    """A test digit by index, and the interpolation between two of them: indices bounded by ``n_test``."""
    dim, last = ex.latent_dim, len(ex.test_x) - 1
    index_doc = f"test digit index, 0..{last}"

    class TestDigit(BaseModel):
        index: int = Field(ge=0, le=last)
        label: int = Field(ge=0, le=9)
        image: Image
        mu: list[ZValue] = Field(min_length=dim, max_length=dim, description="the encoder's mean, clamped to the decode range")

    class InterpolateRequest(Body):
        a: WholeNumber = Field(ge=0, le=last, description=index_doc)
        b: WholeNumber = Field(ge=0, le=last, description=index_doc)
        steps: WholeNumber = Field(10, ge=2, le=MAX_STEPS, description="images from a to b, both included")

    @app.get("/api/test/{index}", responses=GET_ERRORS | errors(422))
    def test_digit(index: Annotated[int, Path(ge=0, le=last, strict=True, description=index_doc), IntegerText]) -> TestDigit:
        return TestDigit(
            index=index,
            label=int(ex.test_labels[index]),
            image=image_b64(ex.test_x[index].reshape(28, 28)),
            mu=[round(float(v), 4) for v in ex.test_mu[index].clamp(-Z_LIMIT, Z_LIMIT)],
        )

    @app.post("/api/interpolate", responses=POST_ERRORS)
    def interpolate(req: InterpolateRequest) -> Images:
        alpha = torch.linspace(0, 1, req.steps).unsqueeze(1)
        z = (1 - alpha) * ex.test_mu[req.a] + alpha * ex.test_mu[req.b]
        return Images(images=[image_b64(img) for img in ex.decode(z)])


def _add_code_routes(app: FastAPI, ex: Explorer) -> None:
    """Decode a code, sample codes, encode an image: codes have exactly ``latent_dim`` numbers."""
    dim = ex.latent_dim

    class DecodeRequest(Body):
        z: list[ZValue] = Field(
            min_length=dim,
            max_length=dim,
            description=f"a latent code: exactly {dim} numbers (the latent size), each in [-{Z_LIMIT}, {Z_LIMIT}]",
        )

    class SamplesRequest(Body):
        seed: WholeNumber = Field(0, ge=0, le=SEED_MAX)
        n: WholeNumber = Field(32, ge=1, le=MAX_SAMPLES, description="how many digits")

    class EncodeRequest(Body):
        image: list[Pixel] = Field(min_length=784, max_length=784, description="a 28x28 image, row-major, pixels in [0, 1]")

    class Encoded(BaseModel):
        mu: list[float] = Field(min_length=dim, max_length=dim, description="the encoder's mean")
        image: Image = Field(description="the reconstruction: mu (clamped to the decode range) decoded")
        xy: list[float] = Field(min_length=2, max_length=2, description="mu on the test codes' two principal axes")
        neighbours: list[Neighbour] = Field(max_length=N_NEIGHBOURS, description="the nearest test digits in code space")

    @app.post("/api/decode", responses=POST_ERRORS)
    def decode(req: DecodeRequest) -> Decoded:
        return Decoded(image=image_b64(ex.decode(torch.tensor([req.z]))[0]))

    @app.post("/api/samples", responses=POST_ERRORS)
    def samples(req: SamplesRequest) -> Samples:
        z = torch.randn((req.n, ex.latent_dim), generator=torch.Generator().manual_seed(req.seed))
        return Samples(seed=req.seed, images=[image_b64(img) for img in ex.decode(z)])

    @app.post("/api/encode", responses=POST_ERRORS)
    def encode(req: EncodeRequest) -> Encoded:
        x = torch.tensor(req.image, dtype=torch.float32).reshape(1, 28, 28)
        mu = ex.encode(x)
        recon = ex.decode(mu.clamp(-Z_LIMIT, Z_LIMIT))[0]
        xy = ex.project(mu)[0]
        dist = (ex.test_mu - mu).pow(2).sum(1)
        near = dist.topk(min(N_NEIGHBOURS, len(dist)), largest=False).indices
        return Encoded(
            mu=[round(float(v), 4) for v in mu[0]],
            image=image_b64(recon),
            xy=[round(float(xy[0]), 3), round(float(xy[1]), 3)],
            neighbours=[Neighbour(index=int(i), label=int(ex.test_labels[i])) for i in near],
        )
