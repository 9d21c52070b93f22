"""The explorer's JSON API, in process (FastAPI TestClient): answers, validation, limits, CLI."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import socket
import struct
import sys
import time
import warnings

import pytest
import torch

pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="httpx (needed by FastAPI's TestClient) is not installed")

from mnist_vae.cli import main
from mnist_vae.serve.app import MAX_BODY_BYTES, create_app, listen_socket
from mnist_vae.serve.images import png_gray

from _serve_helpers import ACTIVE_DIMS, shared_run, small_dataset, with_active_dims

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx vs httpx2
    from fastapi.testclient import TestClient

JSON = {"Content-Type": "application/json"}


def pixels(b64: str) -> torch.Tensor:
    raw = base64.b64decode(b64)
    assert len(raw) == 784
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(28, 28)


@pytest.fixture(scope="module")
def small():
    return small_dataset()


@pytest.fixture(scope="module")
def run16(tmp_path_factory, small):
    out = shared_run(tmp_path_factory, small, latent_dim=16)
    return out, json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])


@pytest.fixture(scope="module")
def client(run16, small):
    """The 16-dimensional run with dimensions 2, 9 and 13 made active (one epoch leaves all 16 collapsed)."""
    with TestClient(create_app(with_active_dims(run16[0], small), dataset=small)) as c:
        yield c


@pytest.fixture(scope="module")
def client2(tmp_path_factory, small):
    out = shared_run(tmp_path_factory, small, latent_dim=2)
    with TestClient(create_app(out, dataset=small)) as c:
        yield c


def test_info_reports_the_run(client, run16):
    info = client.get("/api/info").json()
    metrics = run16[1]
    assert info["latent_dim"] == 16 and info["sliders"] == 16
    assert info["n_test"] == 200 and len(info["labels"]) == 200
    assert info["epochs"] == 1
    assert info["final"]["test_loss"] == pytest.approx(metrics["test_loss"])
    assert info["dataset"]["n_test"] == 200
    assert info["manifold"] is None
    assert all(lo <= -3 and hi >= 3 for lo, hi in zip(info["slider_min"], info["slider_max"]))
    # The run was trained without figures: the loss curves are drawn for the page, not written into the run.
    assert info["has_loss_curves"]
    png = client.get("/api/loss_curves.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert not (run16[0] / "loss_curves.png").exists()


def test_page_and_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for name in ("/app.js", "/style.css"):
        assert name in page.text
        assert client.get(name).status_code == 200
    # Offline page: nothing is loaded from another host.
    for text in (page.text, client.get("/app.js").text, client.get("/style.css").text):
        assert "http://" not in text and "https://" not in text


def test_decode_is_deterministic_and_depends_on_z(client):
    z0, z1 = [0.0] * 16, [2.0] + [0.0] * 15
    a = pixels(client.post("/api/decode", json={"z": z0}).json()["image"])
    b = pixels(client.post("/api/decode", json={"z": z0}).json()["image"])
    c = pixels(client.post("/api/decode", json={"z": z1}).json()["image"])
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_decode_is_fast(client):
    z = {"z": [0.1] * 16}
    client.post("/api/decode", json=z)
    times = []
    for _ in range(15):
        t = time.perf_counter()
        assert client.post("/api/decode", json=z).status_code == 200
        times.append(time.perf_counter() - t)
    assert sorted(times)[len(times) // 2] < 0.050, f"median decode request {sorted(times)[7] * 1000:.1f} ms"


def test_test_digit_code_matches_encoding_its_pixels(client):
    d = client.get("/api/test/7").json()
    assert d["index"] == 7 and 0 <= d["label"] <= 9 and len(d["mu"]) == 16
    img = (pixels(d["image"]).float() / 255).flatten().tolist()
    enc = client.post("/api/encode", json={"image": [round(v, 6) for v in img]}).json()
    assert enc["mu"] == pytest.approx(d["mu"], abs=1e-3)
    # The digit is its own nearest neighbour in code space.
    assert enc["neighbours"][0] == {"index": 7, "label": d["label"]}
    assert len(enc["xy"]) == 2 and len(pixels(enc["image"])) == 28


def test_samples_follow_the_seed(client):
    a = client.post("/api/samples", json={"seed": 1, "n": 6}).json()
    b = client.post("/api/samples", json={"seed": 1, "n": 6}).json()
    c = client.post("/api/samples", json={"seed": 2, "n": 6}).json()
    assert len(a["images"]) == 6 and a["images"] == b["images"]
    assert a["images"] != c["images"]


def test_interpolation_ends_at_the_two_codes(client):
    steps = client.post("/api/interpolate", json={"a": 3, "b": 150, "steps": 5}).json()["images"]
    assert len(steps) == 5
    for index, img in ((3, steps[0]), (150, steps[-1])):
        mu = client.get(f"/api/test/{index}").json()["mu"]
        direct = client.post("/api/decode", json={"z": mu}).json()["image"]
        assert (pixels(direct).int() - pixels(img).int()).abs().max() <= 1  # μ is rounded to 4 places on the way


def test_projection_covers_the_test_digits(client):
    p = client.get("/api/projection").json()
    assert len(p["x"]) == len(p["y"]) == len(p["label"]) == 200
    assert set(p["label"]) == set(range(10))
    assert max(p["x"]) > min(p["x"]) and max(p["y"]) > min(p["y"])


BAD = [
    ("post", "/api/decode", {"z": [0.0] * 3}, 422, "expected 16 numbers"),
    ("post", "/api/decode", {"z": [11.0] + [0.0] * 15}, 422, "less than or equal to 10"),
    ("post", "/api/decode", {"z": ["1"] + [0.0] * 15}, 422, "valid number"),
    ("post", "/api/decode", {"z": [True] + [0.0] * 15}, 422, "valid number"),
    ("post", "/api/decode", {"z": [0.0] * 16, "path": "/etc/passwd"}, 422, "Extra inputs"),
    ("post", "/api/decode", [1, 2], 422, "body"),
    ("post", "/api/samples", {"seed": -1}, 422, "seed"),
    ("post", "/api/samples", {"seed": 2**31}, 422, "seed"),
    ("post", "/api/samples", {"n": 0}, 422, "n:"),
    ("post", "/api/samples", {"n": 65}, 422, "n:"),
    ("post", "/api/interpolate", {"a": 0, "b": 200}, 422, "out of range 0..199"),
    ("post", "/api/interpolate", {"a": 0, "b": 1, "steps": 1000}, 422, "steps"),
    ("post", "/api/encode", {"image": [0.5] * 783}, 422, "784"),
    ("post", "/api/encode", {"image": [1.5] * 784}, 422, "less than or equal to 1"),
    ("post", "/api/encode", {"image": [-0.1] * 784}, 422, "greater than or equal to 0"),
    ("get", "/api/test/200", None, 422, "out of range 0..199"),
    ("get", "/api/test/-1", None, 422, "out of range"),
    ("get", "/api/test/x", None, 422, "integer"),
    ("get", "/api/test/+7", None, 422, "integer"),
    ("get", "/api/test/7.5", None, 422, "integer"),
    ("get", "/api/manifold.png", None, 404, "2-dimensional"),
    ("get", "/etc/passwd", None, 404, "Not Found"),
    ("put", "/api/decode", None, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize("method,path,body,status,message", BAD, ids=[f"{m} {p} {i}" for i, (m, p, *_) in enumerate(BAD)])
def test_bad_input_gets_4xx_with_a_message(client, method, path, body, status, message):
    r = getattr(client, method)(path, **({} if body is None else {"json": body}))
    assert r.status_code == status
    assert message in r.json()["error"]


@pytest.mark.parametrize("body", [b'{"z": [NaN' + b", 0" * 15 + b"]}", b'{"z": [1e400' + b", 0" * 15 + b"]}"])
def test_non_finite_numbers_are_refused(client, body):
    r = client.post("/api/decode", content=body, headers=JSON)
    assert r.status_code == 422 and "finite" in r.json()["error"]


def test_invalid_json_is_refused(client):
    r = client.post("/api/decode", content=b"{not json", headers=JSON)
    assert r.status_code == 422 and r.json()["error"] == "body: not valid JSON"


def test_oversized_bodies_are_refused_before_parsing(client):
    big = b'{"z": [' + b"0, " * MAX_BODY_BYTES + b"0]}"
    r = client.post("/api/decode", content=big, headers=JSON)
    assert r.status_code == 413 and str(MAX_BODY_BYTES) in r.json()["error"]

    def chunks():  # no Content-Length: the server has to count
        yield b'{"image": ['
        for _ in range(MAX_BODY_BYTES // 15 + 1):
            yield b"0.5, 0.5, 0.5, "
        yield b"0.5]}"

    r = client.post("/api/encode", content=chunks(), headers=JSON)
    assert r.status_code == 413
    # Just under the limit is parsed (and refused for its content, not its size).
    ok = b'{"z": [' + b" " * (MAX_BODY_BYTES - 20) + b"0]}"
    assert len(ok) <= MAX_BODY_BYTES
    assert client.post("/api/decode", content=ok, headers=JSON).status_code == 422


def faint_noisy_image(seed: int = 0) -> list[float]:
    """What a client might send: a faint noisy background in full float64 precision."""
    rng = random.Random(seed)
    return [min(1.0, abs(rng.gauss(0.0, 0.05))) for _ in range(784)]


def test_a_realistic_full_precision_image_is_accepted(client):
    body = json.dumps({"image": faint_noisy_image()}).encode()
    assert 16 * 1024 < len(body) < 20 * 1024  # over the old 16 KB limit
    r = client.post("/api/encode", content=body, headers=JSON)
    assert r.status_code == 200 and len(r.json()["mu"]) == 16
    # Pretty-printed, and with every number at its longest (about 22 characters each), still fits.
    pretty = json.dumps({"image": faint_noisy_image(1)}, indent=4).encode()
    longest = ('{"image": [' + ", ".join(["1.2345678901234567e-05"] * 784) + "]}").encode()
    for body in (pretty, longest):
        assert 18 * 1024 < len(body) < MAX_BODY_BYTES
        assert client.post("/api/encode", content=body, headers=JSON).status_code == 200
    assert MAX_BODY_BYTES == 64 * 1024  # the limit against abuse, as docs/explorer.md says


def test_integers_written_as_floats_are_those_integers(client):
    a = client.post("/api/samples", json={"seed": 3, "n": 5}).json()
    assert client.post("/api/samples", json={"seed": 3.0, "n": 5.0}).json() == a
    assert len(client.post("/api/samples", json={"n": 55.0}).json()["images"]) == 55
    steps = client.post("/api/interpolate", json={"a": 3.0, "b": 150.0, "steps": 14.0}).json()["images"]
    assert steps == client.post("/api/interpolate", json={"a": 3, "b": 150, "steps": 14}).json()["images"] and len(steps) == 14
    for body, message in [
        ({"n": 55.5}, "n: Input should be a valid integer"),
        ({"n": "55"}, "n: Input should be a valid integer"),
        ({"n": True}, "n: Input should be a valid integer"),
        ({"n": 1e300}, "n: Input should be less than or equal to 64"),
        ({"a": 0, "b": 1.5}, "b: Input should be a valid integer"),
    ]:
        r = client.post("/api/samples" if "n" in body else "/api/interpolate", json=body)
        assert r.status_code == 422 and r.json()["error"] == message


@pytest.mark.parametrize(
    "method,path,allow", [("PUT", "/api/decode", {"POST"}), ("POST", "/api/info", {"GET"}), ("DELETE", "/api/test/3", {"GET"})]
)
def test_a_wrong_method_gets_405_with_an_allow_header(client, method, path, allow):
    r = client.request(method, path)
    assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"}
    assert set(r.headers["allow"].split(", ")) == allow


def test_info_marks_inactive_dimensions_and_puts_the_active_ones_first(client):
    info = client.get("/api/info").json()
    inactive = [d for d in range(16) if d not in ACTIVE_DIMS]
    assert info["active"] == [d in ACTIVE_DIMS for d in range(16)]
    assert info["n_active"] == len(ACTIVE_DIMS) and info["active_threshold"] == 0.01
    assert info["slider_dims"] == [*ACTIVE_DIMS, *inactive] and info["sliders"] == 16
    var, kl = info["latent_variance"], info["latent_kl"]
    assert all(var[d] == pytest.approx(1.0, rel=1e-3) for d in ACTIVE_DIMS)
    assert all(var[d] < 0.01 for d in inactive)
    assert min(kl[d] for d in ACTIVE_DIMS) > 10 * max(kl[d] for d in inactive) and min(kl) >= 0


def test_active_dimensions_come_first_when_not_all_get_a_slider(run16, small, monkeypatch):
    from mnist_vae.serve import explorer

    monkeypatch.setattr(explorer, "MAX_SLIDERS", 2)
    ex = explorer.Explorer(with_active_dims(run16[0], small, dims=(5, 14)), small)
    assert ex.slider_dims == [5, 14] and ex.info()["sliders"] == 2


def test_connections_are_accepted_with_tcp_nodelay():
    """asyncio sets TCP_NODELAY on accepted connections only when the listening socket says IPPROTO_TCP;
    without it every answer on a kept-alive connection (a browser's) waited ~40 ms for a delayed ACK."""
    sock = listen_socket("127.0.0.1", 0)

    async def accept_one() -> int:
        loop = asyncio.get_running_loop()
        nodelay = loop.create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport) -> None:
                nodelay.set_result(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await loop.create_server(Probe, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname())
        try:
            return await asyncio.wait_for(nodelay, 5)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accept_one()) != 0


def test_two_dimensional_latent_has_a_manifold(client2):
    info = client2.get("/api/info").json()
    assert info["latent_dim"] == 2 and info["manifold"] == {"side": 15, "range": 3.0}
    png = client2.get("/api/manifold.png").content
    assert png.startswith(b"\x89PNG") and struct.unpack(">II", png[16:24]) == (420, 420)
    a = client2.post("/api/decode", json={"z": [-2.0, 2.0]}).json()["image"]
    b = client2.post("/api/decode", json={"z": [2.0, -2.0]}).json()["image"]
    assert a != b
    assert client2.post("/api/decode", json={"z": [0.0] * 16}).status_code == 422
    assert len(client2.post("/api/encode", json={"image": [0.0] * 784}).json()["mu"]) == 2


def test_png_gray_round_trips():
    from PIL import Image

    img = torch.rand(5, 7)
    img[0, :3] = torch.tensor([-0.5, 0.0, 1.5])  # clamped to 0..1 first
    png = png_gray(img)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and struct.unpack(">II", png[16:24]) == (7, 5)
    with Image.open(io.BytesIO(png)) as decoded:
        assert decoded.format == "PNG" and decoded.mode == "L" and decoded.size == (7, 5)
        got = torch.frombuffer(bytearray(decoded.tobytes()), dtype=torch.uint8).reshape(5, 7)
    assert torch.equal(got, (img.clamp(0, 1) * 255).round().to(torch.uint8))


def test_cli_without_the_web_extra(monkeypatch, capsys, run16):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # makes `import fastapi` raise ImportError
    assert main(["serve", str(run16[0])]) == 2
    assert capsys.readouterr().err.strip() == "error: serve needs the web extra: pip install 'mnist-vae[web]'"


def test_cli_refuses_a_bad_or_taken_port(capsys, run16, tmp_path):
    assert main(["serve", str(run16[0]), "--port", "70000"]) == 2
    assert "--port: 70000 is not a TCP port" in capsys.readouterr().err
    taken = listen_socket("127.0.0.1", 0)
    try:
        assert main(["serve", str(run16[0]), "--port", str(taken.getsockname()[1])]) == 2
        assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
    finally:
        taken.close()
    assert main(["serve", str(tmp_path / "missing"), "--port", "0"]) == 2
    assert "run folder not found" in capsys.readouterr().err
