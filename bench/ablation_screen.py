"""Screen LSTM-encoder variants of the VAE (issue 15): many variants x seeds in parallel on one GPU.

Self-contained: only the dataset loader comes from the project (``load_embedded``: 8,000 train /
2,000 test digits). Rebuilt here: an encoder with options (LSTM size, layers, bidirectional, readout
last/mean/attention, LayerNorm, dense layers; or the MLP of ``dense-encoder``), the ``optimized``
decoder, and ``mlp-vae`` = pytorch/examples vae/main.py (784-400-20, batch 128, loss summed over the
batch). Adam 1e-3, batch 100, grey pixels (``--binarize dynamic``: Bernoulli resampled every epoch,
test set binarized once, seed 0); KL warm-up, free bits, lr schedules, IWAE, weight decay (AdamW)
are variant options (DEFAULTS). Each job (variant, seed) trains, then is evaluated on the test
digits in fp32: test -ELBO (one seeded z per image), IWAE NLL with K samples, active units.

Jobs are ordered seed-major, references first, and taken from a shared counter by ``--workers``
spawned processes; none starts after ``--budget-s`` (``--hard-s`` stops running ones), so a
cut-short run still covers every variant. Each finished job appends a JSON line to
OUT/results.jsonl at once; at the end OUT/ablation.md gets mean +- 95% Student-t intervals over
seeds and NLL differences paired by seed against optimized, dense-encoder and mlp-vae (printed too).

GPU machine (one H200, about 6 minutes):
    PYTHONPATH=src python bench/ablation_screen.py --out $OUT/screen --budget-s 300 --hard-s 345
Tiny CPU test:
    PYTHONPATH=src python bench/ablation_screen.py --out /tmp/abl --epochs 1 --seeds 2 --k 20 --workers 2 \
        --n-train 1000 --n-test 200 --variants optimized,dense-encoder,mlp-vae,bi128-mean-d256-cos
``--summarize OUT`` re-makes the table from OUT/results.jsonl; ``--cpu-speed`` writes
OUT/cpu_speed.json: training images/s of each variant on 1 CPU thread (batch 100), step time vs optimized.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import queue
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

try:  # the one project import; adjust here when src/ moves
    from mnist_vae.data import load_embedded
except Exception:
    try:
        from mnist_vae.data.datasets import load_embedded  # type: ignore[no-redef]
    except Exception:  # e.g. safetensors missing where this runs: see embedded_fallback
        load_embedded = None  # type: ignore[assignment]

# --- the variants: edit here --------------------------------------------------------------------
DEFAULTS: dict[str, Any] = {
    "kind": "lstm",  # lstm | mlp (dense-encoder) | mlp-vae (pytorch/examples)
    "hidden": 64,
    "layers": 1,
    "bi": False,
    "readout": "last",  # readout: last | mean | attention | all
    "layernorm": False,
    "dense": [],  # LayerNorm on the readout; dense ReLU layers before the heads
    "latent": 16,
    "batch": 100,
    "lr": 1e-3,
    "reduction": "mean",  # mean | sum (loss over the batch)
    "warmup": 0,
    "free_bits": 0.0,
    "sched": "none",
    "max_lr": 3e-3,  # sched: none | cosine | onecycle
    "iwae_k": 1,
    "wd": 0.0,  # wd: AdamW (decoupled) weight decay
}
BI128 = {"bi": True, "hidden": 128, "readout": "mean", "dense": [256], "sched": "cosine"}
VARIANTS: dict[str, dict[str, Any]] = {
    "optimized": {},
    "dense-encoder": {"kind": "mlp"},
    "mlp-vae": {"kind": "mlp-vae", "latent": 20, "batch": 128, "reduction": "sum"},
    # each single change on top of optimized
    "bi": {"bi": True},
    "h128": {"hidden": 128},
    "h256": {"hidden": 256},
    "layers2": {"layers": 2},
    "mean": {"readout": "mean"},
    "attention": {"readout": "attention"},
    "layernorm": {"layernorm": True},
    "dense256": {"dense": [256]},
    "warmup10": {"warmup": 10},
    "freebits0.25": {"free_bits": 0.25},
    "cosine": {"sched": "cosine"},
    "onecycle": {"sched": "onecycle"},
    "iwae5": {"iwae_k": 5},
    "wd1e-4": {"wd": 1e-4},
    # combinations
    "bi128-mean-d256-cos": BI128,
    "bi128-mean-d256-cos-fb": {**BI128, "free_bits": 0.25},
    "bi128-mean-d256-cos-iwae5": {**BI128, "iwae_k": 5},
    "bi128-attn-ln-d256-cos": {**BI128, "readout": "attention", "layernorm": True},
    "bi256-mean-d256-cos": {**BI128, "hidden": 256},
    # the readout of all 28 row states, flattened (position kept, as a dense encoder sees it)
    "all": {"readout": "all"},
    "all-d256": {"readout": "all", "dense": [256]},
    "all-d256-cos": {"readout": "all", "dense": [256], "sched": "cosine"},
    "h128-all-d256-cos": {"hidden": 128, "readout": "all", "dense": [256], "sched": "cosine"},
    "bi64-all-d256-cos": {"bi": True, "readout": "all", "dense": [256], "sched": "cosine"},
}
CHOICES = {
    "kind": ("lstm", "mlp", "mlp-vae"),
    "readout": ("last", "mean", "attention", "all"),
    "sched": ("none", "cosine", "onecycle"),
    "reduction": ("mean", "sum"),
}
REFERENCES = ("optimized", "dense-encoder", "mlp-vae")


def options(spec: dict[str, Any]) -> dict[str, Any]:
    bad = set(spec) - set(DEFAULTS)
    if bad:
        raise ValueError(f"unknown variant option(s) {sorted(bad)}; known: {sorted(DEFAULTS)}")
    o = {**DEFAULTS, **spec}
    for key, allowed in CHOICES.items():
        if o[key] not in allowed:
            raise ValueError(f"variant option {key} = {o[key]!r}: expected one of {allowed}")
    if o["iwae_k"] < 1 or (o["iwae_k"] > 1 and o["free_bits"] > 0):
        raise ValueError("iwae_k must be >= 1, and free bits apply to the ELBO (iwae_k = 1) only")
    return o


# --- models ---------------------------------------------------------------------------------------
class Encoder(nn.Module):
    """x [B, 28, 28] -> (mu, logvar) [B, latent]: LSTM over the 28 rows (or the MLP of dense-encoder)."""

    def __init__(self, o: dict[str, Any]) -> None:
        super().__init__()
        self.o = o
        if o["kind"] == "mlp":
            self.lstm = None
            self.body: nn.Module = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU())
            width = 128
        else:
            self.lstm = nn.LSTM(28, o["hidden"], num_layers=o["layers"], batch_first=True, bidirectional=o["bi"])
            width = o["hidden"] * (2 if o["bi"] else 1)
            self.att = nn.Linear(width, 1) if o["readout"] == "attention" else None
            width *= 28 if o["readout"] == "all" else 1
            layers: list[nn.Module] = [nn.LayerNorm(width)] if o["layernorm"] else []
            for units in o["dense"]:
                layers += [nn.Linear(width, units), nn.ReLU()]
                width = units
            self.body = nn.Sequential(*layers)
        self.mu, self.logvar = nn.Linear(width, o["latent"]), nn.Linear(width, o["latent"])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.lstm is None:
            h = x.flatten(1)
        else:
            out, (h_n, _) = self.lstm(x)  # out [B, 28, D]; h_n [layers * dirs, B, H]
            if self.o["readout"] == "last":  # last layer's final state, both directions if bidirectional
                h = torch.cat([h_n[-2], h_n[-1]], 1) if self.o["bi"] else h_n[-1]
            elif self.o["readout"] == "mean":
                h = out.mean(1)
            elif self.o["readout"] == "all":
                h = out.flatten(1)  # [B, 28 * D]
            else:  # learned softmax weights over the 28 outputs
                assert self.att is not None
                h = (torch.softmax(self.att(out), 1) * out).sum(1)
        h = self.body(h)
        return self.mu(h), self.logvar(h)


class VAE(nn.Module):
    """Encoder(o) + the `optimized` decoder: z [B, 16] -> logits [B, 784] (parameters in the project's order)."""

    def __init__(self, o: dict[str, Any]) -> None:
        super().__init__()
        self.enc = Encoder(o)
        self.dec = nn.Sequential(
            nn.Linear(o["latent"], 128),
            nn.ReLU(),
            nn.Linear(128, 7 * 7 * 64),
            nn.ReLU(),
            nn.Unflatten(1, (64, 7, 7)),
            nn.ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 3, stride=1, padding=1),
            nn.Flatten(),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.enc(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z)


class ExamplesVAE(nn.Module):
    """pytorch/examples vae/main.py, layer for layer (decode returns logits; sigmoid is in the BCE)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1 = F.relu(self.fc1(x.reshape(-1, 784)))
        return self.fc21(h1), self.fc22(h1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc4(F.relu(self.fc3(z)))


Model = VAE | ExamplesVAE


def build(o: dict[str, Any]) -> Model:
    return ExamplesVAE() if o["kind"] == "mlp-vae" else VAE(o)


def make_optimizer(model: Model, o: dict[str, Any], total_steps: int, dev: torch.device) -> tuple[Any, Any]:
    kw: dict[str, Any] = {"lr": o["lr"], "fused": True} if dev.type == "cuda" else {"lr": o["lr"]}
    opt = torch.optim.AdamW(model.parameters(), weight_decay=o["wd"], **kw) if o["wd"] else torch.optim.Adam(model.parameters(), **kw)
    if o["sched"] == "cosine":
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps)))
    if o["sched"] == "onecycle":
        return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=o["max_lr"], total_steps=total_steps)
    return opt, None


# --- losses and evaluation ------------------------------------------------------------------------
def train_loss(model: Model, x: torch.Tensor, o: dict[str, Any], beta: float) -> torch.Tensor:
    mu, logvar = model.encode(x)
    xf, k = x.flatten(1), o["iwae_k"]
    if k == 1:  # ELBO, analytic KL (with free bits: floor on each dimension's batch-mean KL)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        rec = F.binary_cross_entropy_with_logits(model.decode(z), xf, reduction="none").sum(1)
        kld = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
        kl = kld.mean(0).clamp(min=o["free_bits"]).sum() if o["free_bits"] else kld.sum(1).mean()
        loss = rec.mean() + beta * kl
    else:  # IWAE bound with k samples; warm-up scales log p(z) - log q(z|x)
        eps = torch.randn((k, *mu.shape), device=mu.device, dtype=mu.dtype)
        z = mu + eps * (0.5 * logvar).exp()
        logits = model.decode(z.reshape(-1, mu.shape[1])).view(k, x.shape[0], -1)
        logpx = -F.binary_cross_entropy_with_logits(logits, xf.expand(k, -1, -1), reduction="none").sum(-1)
        loss = -(torch.logsumexp(logpx + beta * log_ratio(z, eps, logvar), 0) - math.log(k)).mean()
    return loss * x.shape[0] if o["reduction"] == "sum" else loss


def log_ratio(z: torch.Tensor, eps: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log p(z) - log q(z|x) for z = mu + eps * sigma, summed over the last axis (the 2 pi terms cancel)."""
    return (0.5 * (eps.pow(2) - z.pow(2) + logvar)).sum(-1)


def train_step(model: Model, opt: Any, sched: Any, x: torch.Tensor, o: dict[str, Any], beta: float) -> torch.Tensor:
    loss = train_loss(model, x, o, beta)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if sched is not None:
        sched.step()
    return loss.detach()


@torch.no_grad()
def test_elbo(model: Model, x: torch.Tensor, seed: int, bs: int = 1000) -> torch.Tensor:
    """[-ELBO, reconstruction, KL], nats per image, one seeded z per image; stays on the device."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    tot = torch.zeros(2, device=x.device, dtype=torch.float64)
    for i in range(0, len(x), bs):
        mu, logvar = model.encode(x[i : i + bs])
        z = mu + torch.randn(mu.shape, generator=g, device=x.device) * (0.5 * logvar).exp()
        rec = F.binary_cross_entropy_with_logits(model.decode(z), x[i : i + bs].flatten(1), reduction="sum")
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum()
        tot += torch.stack([rec, kl]).double()
    tot /= len(x)
    return torch.stack([tot.sum(), tot[0], tot[1]])


@torch.no_grad()
def iw_nll(model: Model, x: torch.Tensor, k: int, chunk: int, seed: int) -> tuple[float, float, int]:
    """(NLL mean, its standard error over images, active units): Burda et al. with k samples."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    lls, mus = [], []
    for i in range(0, len(x), 100):
        xb = x[i : i + 100]
        xf = xb.flatten(1)
        mu, logvar = model.encode(xb)
        mus.append(mu)
        std, b, d = (0.5 * logvar).exp(), mu.shape[0], mu.shape[1]
        kc, lw = max(1, chunk // b), []
        for j in range(0, k, kc):
            m = min(kc, k - j)
            eps = torch.randn((m, b, d), generator=g, device=x.device)
            z = mu + std * eps
            logits = model.decode(z.reshape(m * b, d)).view(m, b, -1)
            logpx = -F.binary_cross_entropy_with_logits(logits, xf.expand(m, -1, -1), reduction="none").sum(-1)
            lw.append((logpx + log_ratio(z, eps, logvar)).double())
        lls.append(torch.logsumexp(torch.cat(lw), 0) - math.log(k))
    ll = torch.cat(lls)
    au = int((torch.cat(mus).double().var(0) > 0.01).sum())
    return -ll.mean().item(), (ll.std() / math.sqrt(len(ll))).item() if len(ll) > 1 else float("nan"), au


# --- data, one job, the workers -------------------------------------------------------------------
def embedded_fallback() -> tuple[np.ndarray, np.ndarray]:
    """The embedded digits' train/test images read straight from the package's asset file, split as
    ``load_embedded`` splits them (stratified, 20% of each class to test, largest remainders, rng
    20240601); used only when the package cannot be imported (say, an optional dependency is missing)."""
    path = next((Path(__file__).resolve().parents[1] / "src").rglob("mnist_embedded.npz"))
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != "29f7e412a2d57447c339a8f5d6f3240bf5917b436b5717d9d749fe43ab28592d":
        raise SystemExit(f"{path}: SHA-256 mismatch")
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        images, labels = z["images"], z["labels"]
    classes, counts = np.unique(labels, return_counts=True)
    n_test = np.floor(counts * 0.2).astype(int)
    n_test[np.argsort(-(counts * 0.2 - n_test), kind="stable")[: round(len(labels) * 0.2) - int(n_test.sum())]] += 1
    rng = np.random.default_rng(20240601)
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, n_test)])] = True
    return images[~is_test], images[is_test]


def load_data(n_train: int, n_test: int, binarize: str, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey train images and test images (binarized once, seed 0, under --binarize dynamic), on dev."""
    ds: Any = load_embedded() if load_embedded is not None else embedded_fallback()
    if hasattr(ds, "train_images"):
        tx, vx = ds.train_images, ds.test_images
    elif len(ds) == 2:  # embedded_fallback's (train_x, test_x), or ((train_x, train_y), (test_x, test_y))
        tx, vx = (ds[0][0], ds[1][0]) if isinstance(ds[0], tuple) else ds
    else:  # (train_x, train_y, test_x, test_y)
        tx, vx = ds[0], ds[2]
    tx, vx = torch.as_tensor(np.asarray(tx)), torch.as_tensor(np.asarray(vx))
    rng = np.random.default_rng(0)  # the split is in class blocks: a subset must be random
    tx = tx[torch.as_tensor(rng.permutation(len(tx))[:n_train])] if n_train < len(tx) else tx
    vx = vx[torch.as_tensor(rng.permutation(len(vx))[:n_test])] if n_test < len(vx) else vx
    train, test = tx.float().div(255), vx.float().div(255)
    if binarize == "dynamic":
        test = torch.bernoulli(test, generator=torch.Generator().manual_seed(0))
    return train.to(dev), test.to(dev)


def set_tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on


def sync(dev: torch.device) -> float:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter()


def run_job(
    name: str, spec: dict[str, Any], seed: int, data: tuple[torch.Tensor, torch.Tensor], a: dict[str, Any], dev: torch.device
) -> dict[str, Any]:
    o, (xtr, xte) = options(spec), data
    torch.manual_seed(seed)
    model = build(o).to(dev)
    n, bs, epochs = len(xtr), o["batch"], a["epochs"]
    spe = math.ceil(n / bs)
    opt, sched = make_optimizer(model, o, spe * epochs, dev)
    g = torch.Generator(device=dev).manual_seed(seed)
    rec: dict[str, Any] = {
        "variant": name,
        "seed": seed,
        "opts": spec,
        "status": "ok",
        "curve": [],
        "params": sum(p.numel() for p in model.parameters()),
        "latent": o["latent"],
        **{key: a[key] for key in ("epochs", "k", "n_train", "n_test", "binarize", "device")},
    }
    train_s, step = 0.0, 0
    set_tf32(a["tf32_train"])  # off by default; evaluation is always fp32
    for ep in range(epochs):
        t0 = sync(dev)
        model.train()
        xe = torch.bernoulli(xtr) if a["binarize"] == "dynamic" else xtr
        perm = torch.randperm(n, device=dev, generator=g)
        acc = torch.zeros((), device=dev)
        for i in range(0, n, bs):
            beta = min(1.0, (step + 1) / (o["warmup"] * spe)) if o["warmup"] else 1.0
            acc += train_step(model, opt, sched, xe[perm[i : i + bs]], o, beta)
            step += 1
        train_s += sync(dev) - t0
        model.eval()
        set_tf32(False)
        loss_sum, elbo = torch.stack([acc.double(), test_elbo(model, xte, seed=1)[0]]).tolist()  # one sync
        if not (math.isfinite(loss_sum) and math.isfinite(elbo)):
            rec.update(status="nan", error=f"non-finite loss in epoch {ep + 1}")
            break
        rec["curve"].append(round(elbo, 4))
        set_tf32(a["tf32_train"])
    set_tf32(False)
    rec["train_s"] = train_s
    if rec["status"] == "ok":
        t0 = sync(dev)
        rec["elbo"], rec["recon"], rec["kl"] = test_elbo(model, xte, seed=2).tolist()
        rec["nll"], rec["nll_se"], rec["au"] = iw_nll(model, xte, a["k"], a["chunk"], seed=3)
        rec["eval_s"] = sync(dev) - t0
    return rec


def worker(wid: int, jobs: list[tuple[str, dict[str, Any], int]], next_job: Any, results: Any, a: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    dev = torch.device(a["device"])
    try:
        data = load_data(a["n_train"], a["n_test"], a["binarize"], dev)
        gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else ""
        for spec in ({}, {"bi": True, "readout": "mean"}):  # load the kernels before any job is timed
            warm = build(options(spec)).to(dev)
            opt, _ = make_optimizer(warm, options(spec), 1, dev)
            train_step(warm, opt, None, data[0][:100], options(spec), 1.0)
            iw_nll(warm, data[1][:2], 2, 4, 0)
        print(f"worker {wid} ready on {gpu or dev} at t={time.time() - a['start']:.1f}s", flush=True)
        seen: dict[str, float] = {}  # this worker's job wall seconds per variant
        while time.time() < a["deadline"]:
            with next_job.get_lock():
                i = next_job.value
                next_job.value += 1
            if i >= len(jobs):
                break
            name, spec, seed = jobs[i]
            t0 = time.time()
            if a["hard"] and t0 + seen.get(name, max(seen.values(), default=0.0)) > a["hard"]:
                continue  # would not end before --hard-s: leave the device to the running jobs
            try:
                rec = run_job(name, spec, seed, data, a, dev)
            except Exception as e:  # one bad variant must not stop the screen
                rec = {"variant": name, "seed": seed, "opts": spec, "status": "error", "error": f"{e!r}\n{traceback.format_exc(limit=3)}"}
            rec.update(job_wall_s=time.time() - t0, worker=wid, gpu=gpu, finished_s=time.time() - a["start"])
            seen[name] = rec["job_wall_s"]
            results.put(rec)
    finally:
        results.put({"done": wid})


def run_screen(a: argparse.Namespace, jobs: list[tuple[str, dict[str, Any], int]]) -> None:
    if load_embedded is None:
        print("mnist_vae.data cannot be imported here: reading the embedded digits' file directly", flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = torch.multiprocessing.get_context("spawn")
    start = time.time()
    shared = {
        "epochs": a.epochs,
        "k": a.k,
        "n_train": a.n_train,
        "n_test": a.n_test,
        "binarize": a.binarize,
        "device": a.device,
        "chunk": a.chunk,
        "tf32_train": a.tf32_train,
        "start": start,
        "deadline": start + a.budget_s,
        "hard": start + a.hard_s if a.hard_s else 0.0,
    }
    next_job, results = ctx.Value("i", 0), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(w, jobs, next_job, results, shared), daemon=True) for w in range(min(a.workers, len(jobs)))]
    for p in procs:
        p.start()
    print(f"{len(jobs)} jobs, {len(procs)} workers on {a.device}, budget {a.budget_s:.0f} s", flush=True)
    done: set[int] = set()
    finished = 0
    with open(out / "results.jsonl", "a") as f:
        while len(done) < len(procs):
            try:
                rec = results.get(timeout=1.0)
            except queue.Empty:  # nothing waiting: the moment to check for crashed workers and the hard limit
                done |= {w for w, p in enumerate(procs) if not p.is_alive() and p.exitcode not in (0, None)}
                if a.hard_s and time.time() - start > a.hard_s:
                    print(f"hard limit {a.hard_s:.0f} s reached: stopping the running jobs", flush=True)
                    for p in procs:
                        p.terminate()
                    break
                continue
            if "done" in rec:
                done.add(rec["done"])
                continue
            f.write(json.dumps(rec) + "\n")
            f.flush()
            finished += 1
            what = (
                (
                    f"NLL {rec['nll']:.2f} -ELBO {rec['elbo']:.2f} AU {rec['au']}/{rec['latent']} "
                    f"train {rec['train_s']:.1f} s eval {rec['eval_s']:.1f} s"
                )
                if rec["status"] == "ok"
                else f"{rec['status'].upper()}: {rec.get('error', '')}"
            )
            print(
                f"[{finished}/{len(jobs)} t={rec['finished_s']:.0f}s w{rec['worker']}] {rec['variant']} "
                f"seed {rec['seed']}: {what} (job {rec['job_wall_s']:.1f} s)",
                flush=True,
            )
    print(f"{finished} of {len(jobs)} jobs finished in {time.time() - start:.0f} s wall", flush=True)
    summarize(out)


# --- the table ------------------------------------------------------------------------------------
T975 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]


def ci(xs: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% Student-t interval (n - 1 dof); nan half-width for n < 2."""
    n = len(xs)
    if n < 2:
        return (xs[0] if xs else float("nan")), float("nan")
    t = T975[n - 2] if n - 1 <= len(T975) else 1.96 + 2.4 / (n - 1)
    return statistics.fmean(xs), t * statistics.stdev(xs) / math.sqrt(n)


def fmt(xs: list[float], digits: int = 2) -> str:
    m, h = ci(xs)
    return "–" if not xs else f"{m:.{digits}f}" if math.isnan(h) else f"{m:.{digits}f} ± {h:.{digits}f}"


def paired(by_seed: dict[int, dict[str, Any]], ref: dict[int, dict[str, Any]]) -> str:
    d = [by_seed[s]["nll"] - ref[s]["nll"] for s in sorted(set(by_seed) & set(ref))]
    if not d:
        return "–"
    m, h = ci(d)
    flag = "" if math.isnan(h) else " *" if abs(m) > h else ""
    return f"{fmt(d)}{flag} (n={len(d)})"


def summarize(out: Path) -> str:
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    ok = [r for r in recs if r.get("status") == "ok"]
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for r in ok:  # a later line for the same (variant, seed) replaces an earlier one
        runs.setdefault(r["variant"], {})[r["seed"]] = r
    order = [v for v in VARIANTS if v in runs] + [v for v in runs if v not in VARIANTS]
    settings = sorted({json.dumps({k: r[k] for k in ("epochs", "k", "n_train", "n_test", "binarize", "device")}) for r in ok})
    gpus = sorted({r.get("gpu") or "" for r in ok} - {""})
    lines = [
        "# Encoder ablation screen (issue 15)",
        "",
        (
            f"Settings: {'; '.join(settings)}{' (MIXED settings: compare with care)' if len(settings) > 1 else ''}"
            f"{'; GPU ' + ', '.join(gpus) if gpus else ''}. Mean ± 95% Student-t half-width over seeds; "
            "ΔNLL = variant − reference paired by seed (negative = variant better; * = interval excludes 0). "
            "Train s = training loop only, with the other jobs sharing the device."
        ),
        "",
        (
            "| variant | seeds | NLL | test −ELBO | recon | KL | active units | train s | "
            "ΔNLL vs optimized | ΔNLL vs dense-encoder | ΔNLL vs mlp-vae |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in order:
        rs = [runs[v][s] for s in sorted(runs[v])]
        col = {key: [float(r[key]) for r in rs] for key in ("nll", "elbo", "recon", "kl", "au", "train_s")}
        deltas = [paired(runs[v], runs[ref]) if ref in runs and ref != v else "–" for ref in REFERENCES]
        lines.append(
            f"| {v} | {len(rs)} | {fmt(col['nll'])} | {fmt(col['elbo'])} | {fmt(col['recon'])} | "
            f"{fmt(col['kl'])} | {fmt(col['au'], 1)} of {rs[0]['latent']} | {fmt(col['train_s'], 0)} | " + " | ".join(deltas) + " |"
        )
    best = sorted(order, key=lambda v: statistics.fmean(r["nll"] for r in runs[v].values()))[:5]
    lines += [
        "",
        "Lowest mean NLL: " + ", ".join(best) + ".",
        "",
        "Variants (changes to DEFAULTS): " + "; ".join(f"{v} {json.dumps(next(iter(runs[v].values()))['opts'])}" for v in order),
    ]
    bad = [r for r in recs if r.get("status") != "ok"]
    if bad:
        lines += [
            "",
            "Failed jobs: "
            + "; ".join(f"{r['variant']} seed {r['seed']}: {r['status']} {(r.get('error') or '-').splitlines()[0][:120]}" for r in bad),
        ]
    text = "\n".join(lines) + "\n"
    (out / "ablation.md").write_text(text)
    print(text, flush=True)
    return text


# --- CPU cost of one training step ----------------------------------------------------------------
def cpu_speed(a: argparse.Namespace, names: list[str]) -> None:
    """Median time of a training step per variant; rounds interleave the variants so that load from
    other processes on the machine spreads over all of them rather than skewing one."""
    torch.set_num_threads(1)
    dev = torch.device("cpu")
    x = load_data(100, 1, "none", dev)[0]  # 100 real training digits, one batch
    setup: dict[str, tuple[Any, ...]] = {}
    times: dict[str, list[float]] = {name: [] for name in names}
    load_before = os.getloadavg()
    for name in names:
        o = options(VARIANTS[name])
        torch.manual_seed(0)
        model = build(o)
        setup[name] = (o, model, *make_optimizer(model, o, 10_000, dev))
        for _ in range(3):  # warm-up
            train_step(model, setup[name][2], setup[name][3], x, o, 1.0)
    for _ in range(a.rounds):
        for name in names:
            o, model, opt, sched = setup[name]
            for _ in range(math.ceil(a.steps / a.rounds)):
                t0 = time.perf_counter()
                train_step(model, opt, sched, x, o, 1.0)
                times[name].append(time.perf_counter() - t0)
    res: dict[str, Any] = {}
    for name in names:
        ms = statistics.median(times[name]) * 1000
        res[name] = {
            "ms_per_step": round(ms, 2),
            "img_s": round(100 / ms * 1000, 1),
            "params": sum(p.numel() for p in setup[name][1].parameters()),
        }
    if "optimized" in res:
        for r in res.values():
            r["time_ratio_vs_optimized"] = round(r["ms_per_step"] / res["optimized"]["ms_per_step"], 3)
    meta = {
        "threads": 1,
        "batch": 100,
        "steps": len(times[names[0]]),
        "rounds": a.rounds,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "cpu_speed.json").write_text(json.dumps({"meta": meta, "variants": res}, indent=1))
    for name, r in res.items():
        print(
            f"{name:28s} {r['img_s']:8.1f} img/s {r['ms_per_step']:8.2f} ms/step "
            f"{r.get('time_ratio_vs_optimized', float('nan')):6.2f}x optimized's step time",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="ablation-screen", help="output folder (results.jsonl, ablation.md)")
    p.add_argument("--only", default="", help="explicit NAME:SEED jobs, comma-separated (replaces --variants/--seeds)")
    p.add_argument("--variants", default="", help="comma-separated names (default: all); see VARIANTS")
    p.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help='extra variant, e.g. bi64mean=\'{"bi": true, "readout": "mean"}\' (repeatable)',
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per variant (default 3)")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--k", type=int, default=1000, help="importance samples for the NLL (default 1000)")
    p.add_argument("--chunk", type=int, default=0, help="latent codes decoded at once (default 10000 GPU, 1000 CPU)")
    p.add_argument("--binarize", choices=("none", "dynamic"), default="none")
    p.add_argument("--tf32-train", action="store_true", help="allow TF32 in training (GPU; evaluation stays fp32)")
    p.add_argument("--n-train", type=int, default=8000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--workers", type=int, default=max(1, min(12, (os.cpu_count() or 1) - 2)))
    p.add_argument("--device", default="auto", help="auto (cuda if available), cuda, cuda:1, cpu")
    p.add_argument("--budget-s", type=float, default=1e9, help="no job starts after this many seconds")
    p.add_argument(
        "--hard-s", type=float, default=0, help="stop running jobs after this many seconds, and start none expected to end later (0: never)"
    )
    p.add_argument("--summarize", metavar="DIR", help="re-make DIR/ablation.md from DIR/results.jsonl; no training")
    p.add_argument("--cpu-speed", action="store_true", help="time a training step of each variant on 1 CPU thread")
    p.add_argument("--steps", type=int, default=20, help="timed steps per variant for --cpu-speed")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds the --cpu-speed steps are split into")
    a = p.parse_args(argv)
    if a.summarize:
        summarize(Path(a.summarize))
        return 0
    for item in a.add:
        name, _, spec = item.partition("=")
        VARIANTS[name] = json.loads(spec)
    names = [v for v in a.variants.split(",") if v] or list(VARIANTS)
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    for v in names:
        options(VARIANTS[v])  # fail now, not in a worker
    if a.cpu_speed:
        cpu_speed(a, names)
        return 0
    a.device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    a.chunk = a.chunk or (10000 if a.device.startswith("cuda") else 1000)
    # Seed-major: every variant's seed 0 before any seed 1, references first, so a cut run covers all.
    names = [v for v in REFERENCES if v in names] + [v for v in names if v not in REFERENCES]
    jobs = [(v, VARIANTS[v], s) for s in range(a.seeds) for v in names]
    if a.only:  # explicit NAME:SEED pairs, e.g. to add seeds to an earlier screen
        pairs = [item.split(":") for item in a.only.split(",") if item]
        jobs = [(v, VARIANTS[v], int(seed)) for v, seed in pairs]
    run_screen(a, jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
