"""Scoring your own images with a trained model: −ELBO, importance-weighted NLL and a reconstruction each.

Inputs are PNG or JPEG files (any size, colour or grey, transparency allowed) and ``.npy`` arrays
([28, 28] or [N, 28, 28]; uint8 0..255 or floats in [0, 1]). Arrays are used as they are: they
are already model input. Images are converted the way the explorer's drawing pad converts a
drawing (``serve/web/app.js``, ``padToInput``), so a photo of a digit looks like an MNIST digit:

1. grey (ITU-R 601 luma); transparent pixels count as white paper;
2. light ink on a dark ground, like MNIST: inverted when the border is light (``invert="auto"``),
   then the border's grey level (its median) is set to black, levels rescaled so 255 stays 255
   (a clean light-on-black image, such as an MNIST digit, is unchanged);
3. ``fit="canvas"``: cropped to the ink (pixels above 20/255), scaled so its longer side is 20
   of the 28 pixels (on a 280-pixel canvas, as the pad), centred, shifted so its centre of mass
   is at the centre, then averaged over 10x10 cells to 28x28 (rounded to 1/1000, as the page);
   ``fit="resize"``: the whole image resized to 28x28 (nothing cropped or moved).

Each score depends only on the image, the model, K and the seed (every image gets a fresh
generator seeded ``seed``), not on which other images are scored with it. The numbers come from
the package's own estimators: :func:`mnist_vae.losses.elbo` (the mean over 100 z ~ q(z|x)) and
:func:`mnist_vae.evaluation.likelihood.importance_nll`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import IMAGE_SIZE, EvalConfig
from ..errors import ConfigError, DataError
from ..io import atomic_write_bytes, atomic_write_text
from ..losses import elbo
from ..models import VAE
from ..viz.tiles import tile
from .likelihood import importance_nll

FITS = ("canvas", "resize")
INVERTS = ("auto", "yes", "no")
#: The drawing pad's geometry (serve/web/index.html, app.js): a 280-pixel canvas of 10x10 cells,
#: the ink's bounding box scaled into 20x20 cells, pixels above 20/255 count as ink.
CELL = 10
CANVAS = IMAGE_SIZE * CELL
BOX = 20
INK = 20
#: Draws of z ~ q(z|x) the −ELBO of one image is averaged over.
ELBO_SAMPLES = 100
#: Reconstruction PNGs: the model input and its reconstruction side by side, this many times larger.
RECON_SCALE = 4
NPY_MAGIC = b"\x93NUMPY"
FORMATS = {"PNG", "JPEG"}
OUT_SUFFIXES = (".csv", ".json")


def conversion_text(fit: str = "canvas", invert: str = "auto") -> str:
    """One line saying how image files become model input (for the output and the help)."""
    how = {
        "auto": "inverted if the border is light (the model expects light ink on dark)",
        "yes": "inverted",
        "no": "not inverted",
    }[invert]
    fitted = (
        "cropped to the ink, scaled into 20x20 of 28x28 and centred by its centre of mass, as the explorer's drawing pad does"
        if fit == "canvas"
        else "resized to 28x28 as a whole"
    )
    return (
        f"images: grey (transparent = white), {how}, the border's grey set to black, {fitted}; "
        ".npy arrays: used as they are (uint8 / 255, or floats in [0, 1])"
    )


@dataclass
class ScoreInput:
    """One image to score: where it came from and the model input it became."""

    file: str
    index: int | None  # position in a .npy array of several images; None for an image file or a single array
    image: torch.Tensor  # float32 [28, 28] in [0, 1]
    conversion: str  # "canvas", "resize" or "npy", plus ", inverted" when it was

    @property
    def name(self) -> str:
        """``file`` or ``file[index]``."""
        return self.file if self.index is None else f"{self.file}[{self.index}]"


@dataclass
class ScoreResult:
    """Scores of the inputs that loaded and the one-line problems of the files that did not."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file, problem)


# --- reading ------------------------------------------------------------------------------------


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(choices)}")


def _border_level(grey: np.ndarray) -> float:
    """The median grey (0..255) of the outer 5% frame, at least one pixel wide: the paper's or the ground's level."""
    h, w = grey.shape
    b = max(1, round(0.05 * min(h, w)))
    frame = np.concatenate([grey[:b].ravel(), grey[-b:].ravel(), grey[:, :b].ravel(), grey[:, -b:].ravel()])
    return float(np.median(frame))


def image_to_input(img: Any, fit: str = "canvas", invert: str = "auto") -> tuple[np.ndarray, bool]:
    """A Pillow image -> (float32 [28, 28] in [0, 1], whether it was inverted); see the module's steps.

    :class:`ValueError` if no ink is left to centre (a blank image).
    """
    from PIL import Image

    _check_choice("fit", fit, FITS)
    _check_choice("invert", invert, INVERTS)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(paper, rgba)
    arr = np.asarray(img.convert("L"), dtype=np.float64)
    inverted = invert == "yes" or (invert == "auto" and _border_level(arr) > 127.5)
    if inverted:
        arr = 255 - arr
    ground = min(_border_level(arr), 254.0)  # set to black, 255 stays 255: a clean light-on-black image is unchanged
    if ground > 0:
        arr = np.clip((arr - ground) * 255 / (255 - ground), 0, 255)
    grey = Image.fromarray(np.round(arr).astype(np.uint8))
    arr = np.asarray(grey)
    if fit == "resize":
        out = np.asarray(grey.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
        return out, inverted
    ys, xs = np.nonzero(arr > INK)
    if len(xs) == 0:
        raise ValueError(f"no ink: no pixel above {INK}/255 after the conversion to light ink on dark (a blank image?)")
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    w, h = x1 - x0 + 1, y1 - y0 + 1
    s = BOX * CELL / max(w, h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    scaled = np.asarray(grey.crop((x0, y0, x1 + 1, y1 + 1)).resize((nw, nh), Image.Resampling.LANCZOS), dtype=np.float64)
    canvas = np.zeros((CANVAS, CANVAS))
    top, left = round((CANVAS - nh) / 2), round((CANVAS - nw) / 2)
    canvas[top : top + nh, left : left + nw] = scaled
    mass = canvas.sum()
    if mass <= 0:
        raise ValueError("no ink left after scaling (a blank image?)")
    yy, xx = np.indices(canvas.shape)
    dx, dy = round(CANVAS / 2 - (canvas * xx).sum() / mass), round(CANVAS / 2 - (canvas * yy).sum() / mass)
    moved = np.zeros_like(canvas)  # shifted by (dx, dy); what leaves the canvas is lost, as in drawImage
    moved[max(0, dy) : CANVAS + min(0, dy), max(0, dx) : CANVAS + min(0, dx)] = canvas[
        max(0, -dy) : CANVAS + min(0, -dy), max(0, -dx) : CANVAS + min(0, -dx)
    ]
    cells = moved.reshape(IMAGE_SIZE, CELL, IMAGE_SIZE, CELL).mean(axis=(1, 3)) / 255.0
    return (np.round(cells * 1000) / 1000).astype(np.float32), inverted


def _array_inputs(path: Path) -> list[ScoreInput]:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(arr, np.ndarray) or arr.ndim not in (2, 3) or arr.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{path}: expected an array of shape [28, 28] or [N, 28, 28], got {list(np.shape(arr))}")
    if arr.dtype == np.uint8:
        images = arr.astype(np.float32) / 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        images = arr.astype(np.float32)
        if not np.isfinite(images).all():
            raise DataError(f"{path}: float pixels must be finite and in [0, 1] (found NaN or infinity)")
        if images.size and (images.min() < 0 or images.max() > 1):
            raise DataError(f"{path}: float pixels must be finite and in [0, 1] (got {images.min():g}..{images.max():g})")
    else:
        raise DataError(f"{path}: expected uint8 pixels (0..255) or floats in [0, 1], got {arr.dtype}")
    if arr.ndim == 2:
        return [ScoreInput(str(path), None, torch.from_numpy(images.copy()), "npy")]
    if len(arr) == 0:
        raise DataError(f"{path}: the array holds no images (shape {list(arr.shape)})")
    return [ScoreInput(str(path), i, torch.from_numpy(images[i].copy()), "npy") for i in range(len(arr))]


def load_inputs(path: str | Path, fit: str = "canvas", invert: str = "auto") -> list[ScoreInput]:
    """The model inputs in one file (PNG, JPEG or .npy, recognised by content); :class:`DataError` naming the file otherwise."""
    from PIL import Image, UnidentifiedImageError

    _check_choice("fit", fit, FITS)
    _check_choice("invert", invert, INVERTS)
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(NPY_MAGIC))
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an image") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if head == NPY_MAGIC:
        return _array_inputs(path)
    try:
        with Image.open(path) as img:
            kind = img.format
            if kind not in FORMATS:
                raise DataError(f"{path}: a {kind} image; expected PNG, JPEG or a .npy array")
            img.load()
            pixels, inverted = image_to_input(img, fit, invert)
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image (neither PNG, JPEG nor a .npy array)") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:  # truncated or damaged files
        raise DataError(f"{path}: damaged image ({str(exc).splitlines()[0][:120]})") from None
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None
    return [ScoreInput(str(path), None, torch.from_numpy(pixels), fit + (", inverted" if inverted else ""))]


# --- scoring ------------------------------------------------------------------------------------


@torch.no_grad()
def score_image(model: VAE, image: torch.Tensor, k: int = EvalConfig.k, seed: int = 0, chunk: int = EvalConfig.chunk) -> dict[str, float]:
    """−ELBO (its reconstruction and KL terms) and the importance-weighted NLL of one [28, 28] image, in nats.

    The −ELBO is :func:`~mnist_vae.losses.elbo` over :data:`ELBO_SAMPLES` copies of the image, i.e. its
    mean over that many z ~ q(z|x) drawn from a generator seeded ``seed`` (one draw alone would
    scatter by several nats); the NLL is :func:`~mnist_vae.evaluation.likelihood.importance_nll`
    with ``k`` importance samples and the same seed.
    """
    device = next(model.parameters()).device
    x = image.reshape(1, IMAGE_SIZE, IMAGE_SIZE).float().to(device)
    e = elbo(model, x.expand(ELBO_SAMPLES, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator(device=device).manual_seed(seed))
    n = importance_nll(model, x, k=k, chunk=chunk, seed=seed)
    return {"neg_elbo": e["loss"], "recon": e["recon"], "kl": e["kl"], "nll": n["nll"]}


def reconstruction_png(model: VAE, image: torch.Tensor) -> bytes:
    """The model input and its reconstruction (decoded posterior mean) side by side, as a grey PNG."""
    from PIL import Image

    model.eval()
    with torch.no_grad():
        recon = model.reconstruct(image.reshape(1, IMAGE_SIZE, IMAGE_SIZE).float())[0].float().cpu()
    pair = tile(torch.stack([image.float().cpu(), recon]).numpy(), ncols=2, pad=1, fill=0.5)
    pixels = (np.clip(pair, 0, 1) * 255).round().astype(np.uint8).repeat(RECON_SCALE, 0).repeat(RECON_SCALE, 1)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _recon_name(number: int, item: ScoreInput) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(item.file).stem)[:60]
    return f"{number:04d}-{stem}" + (f"-{item.index}" if item.index is not None else "") + ".png"


def score_files(
    model: VAE,
    paths: Sequence[str | Path],
    k: int = EvalConfig.k,
    seed: int = 0,
    chunk: int = EvalConfig.chunk,
    fit: str = "canvas",
    invert: str = "auto",
    recon_dir: str | Path | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_failure: Callable[[str, str], None] | None = None,
) -> ScoreResult:
    """Score every image in ``paths``; a file that cannot be read is recorded with its problem and the rest go on.

    Each row: file, index, conversion, neg_elbo, recon, kl, nll, k, seed and ``reconstruction``
    (the PNG written into ``recon_dir``, or None). ``on_row`` / ``on_failure`` hear of each as it happens.
    """
    _check_choice("fit", fit, FITS)
    _check_choice("invert", invert, INVERTS)
    EvalConfig(k=k, chunk=chunk, seed=seed)  # the same bounds as `evaluate`: a one-line ConfigError
    model.eval()
    result = ScoreResult()
    if recon_dir is not None:
        Path(recon_dir).mkdir(parents=True, exist_ok=True)
    for path in paths:
        try:
            items = load_inputs(path, fit, invert)
        except DataError as exc:
            problem = str(exc).removeprefix(f"{path}: ")
            result.failures.append((str(path), problem))
            if on_failure is not None:
                on_failure(str(path), problem)
            continue
        for item in items:
            scores = score_image(model, item.image, k, seed, chunk)
            written = None
            if recon_dir is not None:
                written = Path(recon_dir) / _recon_name(len(result.rows) + 1, item)
                atomic_write_bytes(written, reconstruction_png(model, item.image))
            row = {"file": item.file, "index": item.index, "conversion": item.conversion, **scores, "k": k, "seed": seed}
            row["reconstruction"] = str(written) if written else None
            result.rows.append(row)
            if on_row is not None:
                on_row(row)
    return result


# --- writing ------------------------------------------------------------------------------------

CSV_COLUMNS = ("file", "index", "conversion", "neg_elbo", "recon", "kl", "nll", "k", "seed", "reconstruction", "error")


def check_out_path(path: str | Path) -> Path:
    """``path`` if it ends in .csv or .json; :class:`ConfigError` otherwise."""
    path = Path(path)
    if path.suffix.lower() not in OUT_SUFFIXES:
        raise ConfigError(f"--out: {path} must end in .csv or .json")
    return path


def write_results(path: str | Path, result: ScoreResult, about: dict[str, Any]) -> Path:
    """Write the rows (and the failed files) to a .csv or .json file atomically; ``about`` goes into the JSON."""
    path = check_out_path(path)
    if path.suffix.lower() == ".json":
        body = {**about, "results": result.rows, "failed": [{"file": f, "error": p} for f, p in result.failures]}
        atomic_write_text(path, json.dumps(body, indent=1) + "\n")
        return path
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({c: ("" if row.get(c) is None else row.get(c)) for c in CSV_COLUMNS})
    for file, problem in result.failures:
        writer.writerow({"file": file, "error": problem})
    atomic_write_text(path, buf.getvalue())
    return path
