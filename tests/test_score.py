"""``mnist-vae score``: PNG / JPEG / .npy inputs of any size and colour, the canvas conversion, bad files, --out, exit codes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mnist_vae.cli import main
from mnist_vae.data import load_embedded
from mnist_vae.errors import ConfigError, DataError
from mnist_vae.evaluation.likelihood import importance_nll
from mnist_vae.evaluation.score import (
    CSV_COLUMNS,
    ELBO_SAMPLES,
    RECON_SCALE,
    image_to_input,
    load_inputs,
    score_files,
    score_image,
    write_results,
)
from mnist_vae.losses import elbo
from mnist_vae.runs.pretrained import open_pretrained

K = 20  # importance samples in these tests: enough to exercise the estimator, fast


@pytest.fixture(scope="module")
def model():
    return open_pretrained("mlp-vae").model


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return load_embedded().test_images[:6].numpy()  # uint8 [6, 28, 28], light ink on black


@pytest.fixture
def files(tmp_path, digits):
    """The same digit (#3) as a 28x28 grey PNG, a large black-on-white colour JPEG (off-centre), an RGBA PNG with
    dark ink on a transparent ground, and red ink on yellow; plus .npy arrays."""
    d = digits[3]
    out = {"png28": tmp_path / "d28.png", "jpg": tmp_path / "big.jpg", "rgba": tmp_path / "alpha.png", "colour": tmp_path / "colour.png"}
    Image.fromarray(d).save(out["png28"])
    page = Image.new("RGB", (200, 260), (255, 255, 255))  # off-centre on a tall white page
    page.paste(Image.fromarray(255 - d).resize((168, 168), Image.Resampling.BICUBIC).convert("RGB"), (10, 70))
    page.save(out["jpg"], quality=95)
    rgba = np.zeros((56, 56, 4), np.uint8)
    rgba[..., 3] = np.asarray(Image.fromarray(d).resize((56, 56), Image.Resampling.BICUBIC))  # ink only in alpha; black ink
    Image.fromarray(rgba, "RGBA").save(out["rgba"])
    ink = np.asarray(Image.fromarray(d).resize((90, 90), Image.Resampling.BICUBIC)).astype(np.float32) / 255
    colour = np.stack([255 - ink * 55, 255 - ink * 255, np.full_like(ink, 0) + (1 - ink) * 60], -1)  # red-ish ink on yellow paper
    Image.fromarray(colour.clip(0, 255).astype(np.uint8), "RGB").save(out["colour"])
    np.save(tmp_path / "many.npy", digits)
    np.save(tmp_path / "one.npy", digits[3].astype(np.float64) / 255)
    out["many"], out["one"] = tmp_path / "many.npy", tmp_path / "one.npy"
    return out


def _centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    yy, xx = np.indices(img.shape)
    return float((img * yy).sum() / img.sum()), float((img * xx).sum() / img.sum())


def test_a_28x28_png_resized_is_the_digit_itself_and_the_npy_gives_the_same_scores(files, digits, model):
    (item,) = load_inputs(files["png28"], fit="resize")
    assert item.conversion == "resize" and torch.equal(item.image, torch.from_numpy(digits[3]).float() / 255)
    (arr,) = load_inputs(files["one"])
    assert arr.conversion == "npy" and torch.allclose(arr.image, item.image)
    assert score_image(model, item.image, k=K) == pytest.approx(score_image(model, arr.image, k=K), abs=1e-4)


@pytest.mark.parametrize("kind", ["png28", "jpg", "rgba", "colour"])
def test_any_size_or_colour_becomes_light_ink_scaled_into_20x20_and_centred_by_mass(files, digits, kind):
    (item,) = load_inputs(files[kind])
    x = item.image.numpy()
    assert x.shape == (28, 28) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert item.conversion == ("canvas" if kind == "png28" else "canvas, inverted")
    cy, cx = _centre_of_mass(x)
    assert abs(cy - 13.5) < 1 and abs(cx - 13.5) < 1  # app.js puts the mass at pixel 140 of 280, i.e. 13.55 in 28x28 pixel coordinates
    ys, xs = np.nonzero(x > 0.1)
    assert 17 <= max(np.ptp(ys), np.ptp(xs)) + 1 <= 22  # the ink's longer side fills the 20-pixel box
    reference = load_inputs(files["png28"])[0].image.numpy()
    assert np.abs(x - reference).mean() < 0.06  # the same digit, whatever the file looked like


def test_invert_can_be_forced_and_a_blank_image_is_an_error(tmp_path):
    img = Image.new("L", (40, 40), 0)
    with pytest.raises(ValueError, match="no ink"):
        image_to_input(img)
    _, inverted = image_to_input(img, invert="yes")
    assert inverted
    with pytest.raises(ConfigError, match="fit: 'crop' is not one of canvas, resize"):
        image_to_input(img, fit="crop")


def test_npy_shapes_and_dtypes(tmp_path, digits):
    np.save(tmp_path / "f.npy", digits.astype(np.float32) / 255)
    items = load_inputs(tmp_path / "f.npy")
    assert [i.name for i in items] == [f"{tmp_path / 'f.npy'}[{i}]" for i in range(6)]
    for name, arr, problem in [
        ("shape.npy", np.zeros((3, 27, 27), np.uint8), r"expected an array of shape \[28, 28\] or \[N, 28, 28\], got \[3, 27, 27\]"),
        ("range.npy", np.full((28, 28), 2.0), r"float pixels must be finite and in \[0, 1\]"),
        ("nan.npy", np.full((28, 28), np.nan), r"float pixels must be finite"),
        ("int.npy", np.zeros((28, 28), np.int32), "expected uint8 pixels"),
        ("empty.npy", np.zeros((0, 28, 28), np.uint8), "holds no images"),
        ("objects.npy", np.array([{"a": 1}], dtype=object), "not a readable .npy array"),
    ]:
        np.save(tmp_path / name, arr, allow_pickle=True)
        with pytest.raises(DataError, match=problem) as err:
            load_inputs(tmp_path / name)
        assert str(err.value).startswith(f"{tmp_path / name}: ") and "\n" not in str(err.value)


def test_scores_are_the_package_estimators_and_do_not_depend_on_the_other_images(model, digits):
    x = torch.from_numpy(digits[:2]).float() / 255
    s = score_image(model, x[1], k=K, seed=5)
    e = elbo(model, x[1:2].expand(ELBO_SAMPLES, 28, 28), generator=torch.Generator().manual_seed(5))
    n = importance_nll(model, x[1:2], k=K, seed=5)
    assert s == {"neg_elbo": e["loss"], "recon": e["recon"], "kl": e["kl"], "nll": n["nll"]}
    assert s["nll"] < s["neg_elbo"]  # the -ELBO bounds the NLL from above (both estimates, 100 and K draws)


def test_a_bad_file_among_good_ones_is_named_and_the_others_are_scored(tmp_path, files, model):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(files["png28"].read_bytes()[:50])
    heard: list[tuple[str, str]] = []
    paths = [files["jpg"], bad, files["many"], truncated, tmp_path / "missing.png"]
    result = score_files(model, paths, k=K, recon_dir=tmp_path / "recon", on_failure=lambda f, p: heard.append((f, p)))
    assert [r["file"] for r in result.rows] == [str(files["jpg"])] + [str(files["many"])] * 6
    assert [f for f, _ in result.failures] == [str(bad), str(truncated), str(tmp_path / "missing.png")] and heard == result.failures
    assert "not an image" in result.failures[0][1] and "damaged image" in result.failures[1][1] and "cannot read" in result.failures[2][1]
    for row in result.rows:
        png = Image.open(row["reconstruction"])
        assert png.size == ((2 * 28 + 3) * RECON_SCALE, (28 + 2) * RECON_SCALE) and png.mode == "L"
    same = score_files(model, [files["many"]], k=K)
    assert [r["nll"] for r in same.rows] == [r["nll"] for r in result.rows[1:]] and same.rows[0]["reconstruction"] is None


def test_results_are_written_as_csv_or_json(tmp_path, files, model):
    result = score_files(model, [files["png28"], tmp_path / "nothing.png"], k=K)
    write_results(tmp_path / "r.csv", result, {"k": K})
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert tuple(rows[0]) == CSV_COLUMNS and float(rows[0]["nll"]) == pytest.approx(result.rows[0]["nll"]) and rows[1]["error"]
    write_results(tmp_path / "r.json", result, {"k": K})
    body = json.loads((tmp_path / "r.json").read_text())
    assert body["k"] == K and body["results"] == result.rows and body["failed"][0]["file"].endswith("nothing.png")
    with pytest.raises(ConfigError, match="must end in .csv or .json"):
        write_results(tmp_path / "r.txt", result, {})
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("r.")) == ["r.csv", "r.json"]  # no temporaries left


def test_cli_prints_a_line_per_image_writes_out_and_exits_3_when_a_file_fails(tmp_path, files, capsys):
    out = tmp_path / "scores.json"
    assert main(["score", "--pretrained", "mlp-vae", str(files["jpg"]), str(files["many"]), "--k", str(K), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"NLL: importance-weighted, K={K}, seed 0" in printed and "inverted if the border is light" in printed
    lines = [line for line in printed.splitlines() if line.startswith(str(tmp_path))]
    assert len(lines) == 7 and all(str(tmp_path / "scores-recon") in line for line in lines)
    body = json.loads(out.read_text())
    assert body["model"]["config"] == "mlp-vae" and len(body["results"]) == 7 and body["failed"] == []
    assert f"{body['results'][0]['neg_elbo']:.2f}" in lines[0] and f"{body['results'][0]['nll']:.2f}" in lines[0]
    assert len(list((tmp_path / "scores-recon").glob("*.png"))) == 7

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert main(["score", "--pretrained", "mlp-vae", str(bad), str(files["png28"]), "--k", str(K), "--out", str(tmp_path / "s.csv")]) == 3
    cap = capsys.readouterr()
    errors = cap.err.splitlines()
    assert errors[0].startswith(f"error: {bad}: ") and errors[-1] == "error: 1 of 2 files could not be scored (exit code 3)"
    assert "scored 1 image from 1 of 2 files" in cap.out and (tmp_path / "s.csv").is_file()


def test_cli_refuses_bad_options_in_one_line(tmp_path, files, capsys):
    f = str(files["png28"])
    assert main(["score", "--pretrained", "nosuch", f]) == 2
    assert main(["score", "--pretrained", "mlp-vae", f, "--out", str(tmp_path / "x.txt")]) == 2
    assert main(["score", "--pretrained", "mlp-vae", f, "--k", "0"]) == 2
    assert main(["score", str(tmp_path)]) == 2  # a run folder with nothing to score
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 4 and "valid names: lstm-plus, mlp-vae, optimized" in errors[0]
    assert "must end in .csv or .json" in errors[1] and errors[2].startswith("error: --k") and "no FILE to score" in errors[3]
