"""Run by the distributed tests under torchrun: trains a tiny config and saves each rank's final weights.

Usage: torchrun --nproc_per_node N tests/_ddp_worker.py DATA.npz OUT_DIR BATCH_SIZE
Writes OUT_DIR/plain (uninterrupted run) and OUT_DIR/resumed (stopped after 3 steps, then resumed in
the same processes), plus OUT_DIR/{plain,resumed}-rank{R}.pt with that rank's in-memory weights.
"""

import sys

import torch
import torch.distributed as dist

import mnist_vae.training as T
import mnist_vae.training.run as R
from mnist_vae.presets import get_config

made = []


_build_model = R.build_model


def recording_build_model(*args, **kwargs):  # lets the test see every rank's model, not only rank 0's checkpoint
    model = _build_model(*args, **kwargs)
    made.append(model)
    return model


R.build_model = recording_build_model


def main() -> None:
    data, out, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # The worker owns the process group, so train() reuses it across the three calls below.
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    cfg = get_config("optimized").override(["epochs=2", "threads=1", f"batch_size={batch}", f'data_path="{data}"'])
    quiet = dict(progress=False, figures=False)
    T.train(cfg, f"{out}/plain", force=True, **quiet)
    torch.save(made[-1].state_dict(), f"{out}/plain-rank{rank}.pt")
    try:
        T.train(cfg, f"{out}/resumed", force=True, stop_after_steps=3, **quiet)
        raise SystemExit("expected an interruption")
    except T.Interrupted:
        pass
    T.train(cfg, f"{out}/resumed", resume=True, **quiet)
    torch.save(made[-1].state_dict(), f"{out}/resumed-rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
