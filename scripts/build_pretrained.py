"""Build the trained weights that ship with the package: ``src/mnist_vae/assets/pretrained/``.

For each configuration (default: lstm-plus, mlp-vae, optimized) it trains 50 epochs on the
embedded digits with seed 0 (``mnist_vae.training.train``, the code behind ``mnist-vae train``),
or with ``--from-runs DIR`` takes the finished runs ``DIR/<name>`` instead of training. Then it
copies the last checkpoint's ``model.safetensors`` byte for byte (float32 weights, the run's config
in its metadata), measures the test −ELBO again with
``mnist_vae.runs.pretrained.measure_test_elbo`` (the check ``tests/test_pretrained.py`` repeats),
and writes ``pretrained.json`` (SHA-256, size, command, source commit, epochs, seed, dataset
SHA-256, parameter count, recorded and re-measured test −ELBO, the per-epoch metrics). Every file
is written atomically; the manifest last, so it never names weights that are not there.

    python scripts/build_pretrained.py                                  # train all three (docs/api.md: how long)
    python scripts/build_pretrained.py --from-runs runs/before --source-commit a38aabf \\
        --program "python -m mnist_vae"                                 # what made the shipped files
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from mnist_vae.data import load_dataset
from mnist_vae.io import atomic_write_bytes, atomic_write_text, sha256_file
from mnist_vae.models import VAE, count_parameters
from mnist_vae.presets import get_config
from mnist_vae.runs.checkpoint import list_checkpoints, load_model_weights, read_weights, verify_checkpoint
from mnist_vae.runs.folder import read_meta, read_run_config
from mnist_vae.runs.pretrained import FORMAT, MANIFEST, measure_test_elbo, pretrained_dir, read_manifest

NAMES = ("lstm-plus", "mlp-vae", "optimized")
EPOCHS, SEED, DATASET, THREADS = 50, 0, "embedded", 2


def train_run(name: str, work: Path) -> Path:
    """Train ``name`` as ``mnist-vae train --config NAME --dataset embedded --seed 0 --epochs 50 --threads 2`` would."""
    from mnist_vae.training import train

    cfg = get_config(name).replace(dataset=DATASET, seed=SEED, epochs=EPOCHS, threads=THREADS)
    out = work / name
    train(cfg, out, force=out.exists(), progress=False)
    return out


def entry_for(name: str, run_dir: Path, out_dir: Path, program: str, commit: str) -> dict[str, Any]:
    """Copy ``run_dir``'s last checkpoint's weights to ``out_dir/<name>.safetensors`` and describe them."""
    cfg = read_run_config(run_dir)
    t = cfg.train
    if cfg.name != name:
        sys.exit(f"error: {run_dir}: holds configuration {cfg.name!r}, not {name!r}")
    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        sys.exit(f"error: {run_dir}: no checkpoint")
    last = ckpts[-1]
    problem = verify_checkpoint(last)
    if problem:
        sys.exit(f"error: {last}: {problem}")
    if not last.name.endswith("-S00000") or int(last.name[1:5]) != t.epochs:
        sys.exit(f"error: {last}: not the end of epoch {t.epochs}; the run is unfinished")
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(history) != t.epochs or history[-1].get("epoch") != t.epochs:
        sys.exit(f"error: {run_dir / 'metrics.jsonl'}: {len(history)} epochs recorded, expected {t.epochs}")
    meta = read_meta(run_dir)
    dataset = load_dataset(t.dataset, download=False)
    recorded_sha = (meta.get("dataset") or {}).get("sha256")
    if recorded_sha != dataset.sha256:
        sys.exit(f"error: {run_dir / 'meta.json'}: trained on data {recorded_sha}, but {t.dataset} here is {dataset.sha256}")

    target = out_dir / f"{name}.safetensors"
    atomic_write_bytes(target, (last / "model.safetensors").read_bytes())
    weights, config = read_weights(target)
    model = VAE(config.model)
    load_model_weights(model, weights, target)
    dtypes = sorted({str(w.dtype).removeprefix("torch.") for w in weights.values()})
    measured = measure_test_elbo(model, config, t.epochs, dataset)
    command = (
        f"{program} train --config {name} --dataset {t.dataset} --seed {t.seed} --epochs {t.epochs} "
        f"--threads {t.threads} --no-progress --out runs/{name}"
    )  # a folder of the reader's own: the one this run was trained into need not exist on their machine
    return {
        "file": target.name,
        "sha256": sha256_file(target),
        "bytes": target.stat().st_size,
        "dtype": ",".join(dtypes),
        "parameters": count_parameters(model),
        "command": command,
        "source_commit": commit,
        "epochs": t.epochs,
        "seed": t.seed,
        "dataset": {
            "name": dataset.name,
            "sha256": dataset.sha256,
            "n_train": len(dataset.train_labels),
            "n_test": len(dataset.test_labels),
        },
        "created": meta.get("created"),
        "trained_with": {k: meta.get(k) for k in ("version", "torch", "python", "machine", "device", "threads")},
        "recorded_test_loss": history[-1]["test_loss"],
        "test_elbo": {**measured, "torch": torch.__version__, "threads": torch.get_num_threads()},
        "history": history,
    }


def git_commit() -> str:
    """This checkout's commit (``+dirty`` when it has changes): what trained the runs in training mode."""
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, check=True)
    return head + ("+dirty" if dirty.stdout.strip() else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", default=",".join(NAMES), help="comma-separated configurations")
    ap.add_argument("--from-runs", metavar="DIR", help="take the finished runs DIR/<name> instead of training")
    ap.add_argument("--source-commit", help="commit the runs were trained from (default: this checkout's, when training here)")
    ap.add_argument("--program", default="mnist-vae", help="how the recorded command spells the program")
    ap.add_argument("--work", default="runs/pretrained-build", help="where training mode writes its runs")
    ap.add_argument("--out", default=str(pretrained_dir()), help="the folder of the weights and pretrained.json")
    args = ap.parse_args()
    if args.from_runs and not args.source_commit:
        sys.exit("error: --from-runs needs --source-commit (the commit that trained the runs)")
    torch.set_num_threads(THREADS)
    commit = args.source_commit or git_commit()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out_dir)
    for name in [n.strip() for n in args.names.split(",") if n.strip()]:
        run_dir = Path(args.from_runs) / name if args.from_runs else train_run(name, Path(args.work))
        e = entry_for(name, run_dir, out_dir, args.program, commit)
        manifest["models"][name] = e
        m = e["test_elbo"]
        print(
            f"{name}: {e['file']} {e['bytes']:,d} bytes ({e['dtype']}), {e['parameters']:,d} parameters, sha256 {e['sha256']}; "
            f"test -ELBO recorded {e['recorded_test_loss']:.6f}, re-measured {m['loss']:.6f} (generator seed {m['generator_seed']})"
        )
    manifest["format"] = FORMAT
    manifest["models"] = dict(sorted(manifest["models"].items()))
    atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {out_dir / MANIFEST}")


if __name__ == "__main__":
    main()
