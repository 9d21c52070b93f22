"""Property-based tests: random bytes and random dicts may only raise the project's own errors.

Each property has a deadline, so a hang or a huge allocation fails the test. The number of
examples per property is ``FUZZ_EXAMPLES`` (default 150; the note in docs/reliability.md gives the
counts of a longer run).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_vae.config import ModelConfig, RunConfig, TrainConfig
from mnist_vae.data import read_idx
from mnist_vae.errors import MnistVaeError
from mnist_vae.models import VAE
from mnist_vae.runs.checkpoint import load_checkpoint, read_weights, save_checkpoint

from _idx_helpers import idx_bytes
from helpers import small_dataset, tiny_config

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
COUNTS: dict[str, int] = {}


def counted(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print("\nfuzz cases run: " + ", ".join(f"{k} {v}" for k, v in sorted(COUNTS.items())) + f" (total {sum(COUNTS.values())})")


def only_own_errors(fn, *args) -> None:
    try:
        fn(*args)
    except MnistVaeError as exc:
        assert "\n" not in str(exc), f"multi-line message: {exc!r}"


# --- IDX reader ----------------------------------------------------------------------------------

VALID_IDX = idx_bytes(torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8).numpy())
IDX_HEADS = st.sampled_from([b"", b"\0\0\x08\x03", b"\0\0\x08\x01", b"\0\0\x09\x03", b"\0\0\x08\x03\xff\xff\xff\xff"])


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buf = bytearray(data)
    for pos, val in edits:
        if buf:
            buf[pos % len(buf)] = val
    return bytes(buf[:cut] if cut is not None else buf)


@FUZZ
@given(head=IDX_HEADS, body=st.binary(max_size=3000), gz=st.booleans())
def test_read_idx_random_bytes(tmp_path_factory, head, body, gz):
    counted("read_idx random bytes")
    path = tmp_path_factory.mktemp("idx") / "f.idx"
    data = head + body
    path.write_bytes(gzip.compress(data) if gz else data)
    only_own_errors(read_idx, path)


@FUZZ
@given(
    edits=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 255)), max_size=4),
    cut=st.one_of(st.none(), st.integers(0, len(VALID_IDX))),
    gz=st.booleans(),
    gz_cut=st.booleans(),
)
def test_read_idx_mutated_real_file(tmp_path_factory, edits, cut, gz, gz_cut):
    counted("read_idx mutated file")
    path = tmp_path_factory.mktemp("idx") / "f.idx"
    data = _mutate(VALID_IDX, edits, cut)
    if gz:
        data = gzip.compress(data)
        if gz_cut:
            data = data[: len(data) // 2]
    path.write_bytes(data)
    only_own_errors(read_idx, path)


# --- checkpoint loader -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory):
    run = tmp_path_factory.mktemp("ckpt")
    cfg = tiny_config(1)
    torch.manual_seed(0)
    model = VAE(cfg.model)
    opt = torch.optim.Adam(model.parameters())
    model(small_dataset(100, 10).train_images[:10].float() / 255)[0].sum().backward()
    opt.step()
    trainer = {
        "optimizer": opt.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "data_rng": torch.get_rng_state(),
        "state": {"epoch": 1, "step": 0, "history": [], "snapshots": {}, "partial": None, "seconds": 0.0},
    }
    return save_checkpoint(run, cfg, model, trainer, 1, 0)


def _rewrite_manifest(folder: Path) -> None:
    m = json.loads((folder / "manifest.json").read_text())
    m["files"] = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in ("model.safetensors", "trainer.pt")}
    (folder / "manifest.json").write_text(json.dumps(m))


@FUZZ
@given(
    data=st.binary(max_size=4000),
    prefix=st.sampled_from([b"", b"\x08\0\0\0\0\0\0\0{}", b"\xff\xff\xff\xff\xff\xff\xff\x7f", b"PK\x03\x04"]),
)
def test_read_weights_random_bytes(tmp_path_factory, data, prefix):
    counted("read_weights random bytes")
    path = tmp_path_factory.mktemp("w") / "model.safetensors"
    path.write_bytes(prefix + data)
    only_own_errors(read_weights, path)


@FUZZ
@given(
    which=st.sampled_from(["model.safetensors", "trainer.pt", "manifest.json"]),
    edits=st.lists(st.tuples(st.integers(0, 1 << 24), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 1 << 24)),
    fix_manifest=st.booleans(),
)
def test_load_checkpoint_mutated(tmp_path_factory, real_checkpoint, which, edits, cut, fix_manifest):
    """Mutate one file of a real checkpoint; with fix_manifest the checksums are recomputed so the loaders see the damage."""
    counted("load_checkpoint mutated file")
    folder = tmp_path_factory.mktemp("c") / real_checkpoint.name
    shutil.copytree(real_checkpoint, folder)
    f = folder / which
    data = f.read_bytes()
    # Edits near the start hit headers (safetensors' JSON header, the zip's local header, the manifest).
    edits = [(pos % min(len(data), 600) if i % 2 == 0 else pos, v) for i, (pos, v) in enumerate(edits)]
    f.write_bytes(_mutate(data, edits, None if cut is None else cut % (len(data) + 1)))
    if fix_manifest and which != "manifest.json":
        _rewrite_manifest(folder)
    only_own_errors(load_checkpoint, folder)


@FUZZ
@given(data=st.binary(max_size=3000), manifest=st.one_of(st.none(), st.text(max_size=200)))
def test_load_checkpoint_random_trainer_bytes(tmp_path_factory, real_checkpoint, data, manifest):
    counted("load_checkpoint random trainer.pt")
    folder = tmp_path_factory.mktemp("c") / real_checkpoint.name
    shutil.copytree(real_checkpoint, folder)
    (folder / "trainer.pt").write_bytes(data)
    _rewrite_manifest(folder)
    if manifest is not None:
        (folder / "manifest.json").write_text(manifest)
    only_own_errors(load_checkpoint, folder)


# --- config validator ----------------------------------------------------------------------------------

MODEL_KEYS = [f for f in ModelConfig.__dataclass_fields__] + ["latnt_dim"]
TRAIN_KEYS = [f for f in TrainConfig.__dataclass_fields__] + ["learning_rate"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([0, -1, 1, 2**63, 2**1024, -(10**400), float("nan"), float("inf"), 1e308]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["lstm", "mlp", "all", "last", "conv", "dense", "every-hidden", "between-convs", "dynamic", "fp16"]),
)
VALUES = st.recursive(
    SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=12
)


def _section(keys):
    return st.dictionaries(st.sampled_from(keys), VALUES, max_size=6)


@FUZZ
@given(
    data=st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "name": VALUES,
                "description": VALUES,
                "model": st.one_of(_section(MODEL_KEYS), VALUES),
                "train": st.one_of(_section(TRAIN_KEYS), VALUES),
            },
        ),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), VALUES, max_size=4),
        VALUES,
    )
)
def test_config_validator_random_dicts(data):
    counted("RunConfig.from_dict random dicts")
    only_own_errors(RunConfig.from_dict, data)


@FUZZ
@given(
    convs=st.lists(st.tuples(st.integers(-3, 10**12), st.integers(-3, 10**12)), max_size=5),
    reshape=st.lists(st.integers(-3, 10**9), min_size=0, max_size=4),
    dense=st.lists(st.integers(-3, 10**12), max_size=3),
    kernel=st.integers(-3, 10**6),
    dropout=st.floats(allow_nan=True),
)
def test_config_validator_decoder_shapes(convs, reshape, dense, kernel, dropout):
    """Architectures with absurd sizes are judged without building (or allocating) anything."""
    counted("ModelConfig decoder shapes")
    only_own_errors(
        RunConfig.from_dict,
        {
            "model": {
                "decoder_convs": [list(c) for c in convs],
                "decoder_reshape": reshape,
                "decoder_dense": dense,
                "kernel_size": kernel,
                "dropout": dropout,
            }
        },
    )


@FUZZ
@given(items=st.lists(st.text(max_size=40), max_size=3))
def test_override_random_assignments(items):
    counted("RunConfig.override random --set")
    only_own_errors(RunConfig().override, items)


@FUZZ
@given(field=st.sampled_from([("model", k) for k in MODEL_KEYS] + [("train", k) for k in TRAIN_KEYS]), value=VALUES)
def test_config_validator_one_field(field, value):
    """One random value in one field, so every field's own check is reached (in a random dict the first bad key wins)."""
    counted("RunConfig.from_dict one field")
    section, key = field
    only_own_errors(RunConfig.from_dict, {section: {key: value}})
