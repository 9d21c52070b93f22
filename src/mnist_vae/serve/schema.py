"""The explorer API's contract: the pieces of its request and answer models, and its documented errors.

The OpenAPI schema at ``/openapi.json`` is generated from these models, so what it says is what
the server does: a constraint the server enforces is a constraint in the schema. The models that
depend on the run (latent size, number of test digits) are built per app in :mod:`.routes`.

JSON has a single number type, so an integer field takes ``55`` and ``55.0`` alike (JSON Schema
counts both as integers) but refuses ``55.5``, ``"55"`` and ``true``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .explorer import Z_LIMIT

#: Characters of a base64 string of 784 bytes (one 28x28 image).
IMAGE_B64_CHARS = 4 * ((784 + 2) // 3)


def _whole_number(value: Any) -> Any:
    """55.0 -> 55; anything else is left to strict integer validation (which refuses 55.5, "55", true)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _integer_text(value: Any) -> Any:
    """A path segment of ASCII digits -> its integer; anything else (" 7", "+7", "7_0") is refused."""
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value):
        return int(value)
    return value


#: An integer that may be written as a whole float; bounds go in ``Field(...)`` at the use site.
WholeNumber = Annotated[int, Field(strict=True), BeforeValidator(_whole_number)]
#: An integer path segment (digits only).
IntegerText = BeforeValidator(_integer_text)
ZValue = Annotated[float, Field(strict=True, ge=-Z_LIMIT, le=Z_LIMIT, allow_inf_nan=False)]
Pixel = Annotated[float, Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False)]
Image = Annotated[
    str,
    Field(
        min_length=IMAGE_B64_CHARS,
        max_length=IMAGE_B64_CHARS,
        pattern=r"^[A-Za-z0-9+/]+=*$",
        description="base64 of 784 bytes: a 28x28 image, row-major, pixel probability x 255",
    ),
]


class Body(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


# --- answers -------------------------------------------------------------------------------------


class ErrorAnswer(BaseModel):
    """Every error answer: one line."""

    error: str = Field(description='what is wrong, usually "<field>: <problem>"')


class Decoded(BaseModel):
    image: Image


class Images(BaseModel):
    images: list[Image]


class Samples(Images):
    seed: int


class Neighbour(BaseModel):
    index: int = Field(ge=0, description="test digit index")
    label: int = Field(ge=0, le=9)


class Projection(BaseModel):
    x: list[float] = Field(description="first principal coordinate of each shown test digit's code")
    y: list[float] = Field(description="second principal coordinate")
    label: list[int]
    index: list[int] = Field(description="which test digits are shown (at most 2,500)")
    n_test: int


class FinalLosses(BaseModel):
    test_loss: float | None
    test_recon: float | None
    test_kl: float | None
    train_loss: float | None


class ManifoldFacts(BaseModel):
    side: int = Field(description="decoded images per side")
    range: float = Field(description="the plane spans [-range, range]^2")


class Info(BaseModel):
    """Run facts and what the page needs to lay itself out."""

    name: str
    description: str
    run: str = Field(description="the run folder's name")
    latent_dim: int
    sliders: int = Field(description="how many sliders the page shows (at most 16)")
    slider_dims: list[int] = Field(description="the dimension each slider moves, in page order: active dimensions first")
    slider_min: list[float] = Field(description="per dimension")
    slider_max: list[float] = Field(description="per dimension")
    active: list[bool] = Field(description="per dimension: Var over the test digits of the encoder mean mu_d > active_threshold")
    latent_variance: list[float] = Field(description="per dimension: Var over the test digits of mu_d (Burda et al.'s active-unit measure)")
    latent_kl: list[float] = Field(description="per dimension: mean KL(q(z_d|x) || N(0, 1)) over the test digits, nats")
    active_threshold: float
    n_active: int
    z_limit: float
    max_samples: int
    max_steps: int
    epochs: int
    epochs_planned: int
    final: FinalLosses | None
    train_seconds: float
    parameters: int | None
    created: str | None
    dataset: dict[str, Any]
    config: dict[str, Any]
    config_toml: str
    n_test: int
    labels: str = Field(description="the label of each test digit, one character each")
    has_loss_curves: bool
    manifold: ManifoldFacts | None


class PNGResponse(Response):
    media_type = "image/png"


# --- documented errors ---------------------------------------------------------------------------

_ERRORS = {
    400: "the body could not be read (not UTF-8 JSON, or an invalid Content-Length)",
    404: "not found",
    405: "the path exists, but not with this method; the Allow header lists the methods it has",
    413: "request body over the limit (checked against Content-Length and against the bytes that arrive)",
    422: "invalid input: wrong type, length or range, a non-finite number, an unknown field, or invalid JSON",
}
_ALLOW = {"Allow": {"description": "the methods this path accepts", "required": True, "schema": {"type": "string"}}}


def errors(*codes: int, not_found: str | None = None, beside: str | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses, each answering ``{"error": "..."}`` as JSON.

    ``beside``: the route's own media type when it is not JSON (FastAPI would give a ``model``
    that type), so the errors name their JSON content explicitly.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        text = not_found if code == 404 and not_found else _ERRORS[code]
        body = (
            {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorAnswer"}}}}
            if beside
            else {"model": ErrorAnswer}
        )
        out[code] = {"description": text} | body | ({"headers": _ALLOW} if code == 405 else {})
    return out


def png(description: str, not_found: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of a route answering a PNG, or a 404 when the run has no such figure."""
    answer = {"description": description, "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}
    return {200: answer} | errors(404, 405, 413, not_found=not_found, beside="image/png")
