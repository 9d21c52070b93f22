"""``mnist-vae configs`` and ``mnist-vae train``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..config import RESUMABLE
from ..errors import ConfigError
from .common import TRAIN_FLAGS, Adder, add_train_options, resolve_config

log = logging.getLogger("mnist_vae.cli")

#: Options that a resumed run may not be given: its own config.toml governs it (all but the RESUMABLE fields).
RESUME_CONFLICTS = ("config", "set", *(f for f in TRAIN_FLAGS if f not in RESUMABLE), "out", "force")


def cmd_configs(args: argparse.Namespace) -> int:
    """List the configurations, or print one as TOML (``--show NAME``: only the TOML, a file --config accepts)."""
    from ..models import VAE, count_parameters
    from ..presets import get_config, list_configs
    from ..runs.pretrained import read_manifest

    if args.show:
        print(get_config(args.show).to_toml(), end="")
        return 0
    width = max(map(len, list_configs()))
    shipped = read_manifest()["models"]
    headings = {
        "write-up": "the seven configurations of the original write-up",
        "reference": "reference (not one of the seven): the standard baseline every study measures against",
        "control": "control: a switch turned off, to test a claim of the write-up",
        "beyond": "beyond the write-up",
    }
    for i, (kind, heading) in enumerate(headings.items()):
        print(("\n" if i else "") + heading + ":")
        for name in list_configs(kind):
            cfg = get_config(name)
            params = count_parameters(VAE(cfg.model)) if args.params else None
            extra = f"  {params:>10,d} params" if params is not None else ""
            tag = f"  {'pretrained' if name in shipped else '':<10}" if shipped else ""
            print(f"  {name:<{width}}  lr {cfg.train.lr:<6g} latent {cfg.model.latent_dim:<3d}{extra}{tag}  {cfg.description}")
    if shipped:
        made = ", ".join(
            f"{n} ({e.get('epochs')} epochs on {(e.get('dataset') or {}).get('name')}, seed {e.get('seed')})"
            for n, e in sorted(shipped.items())
        )
        print(
            f"\npretrained: trained weights ship for {made}; use them with `serve --pretrained NAME`, `score --pretrained NAME` or mnist_vae.load_pretrained(NAME)"
        )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train a configuration (or continue a run with --resume) and print one summary line."""
    if args.nproc != 1:
        from .launch import launch_nproc

        return launch_nproc(args.nproc, args.argv)
    from ..runs.folder import read_run_config
    from ..training import train

    if args.resume:
        # The run's own config.toml governs a resumed run; silently ignoring other settings would
        # train something the user did not ask for.
        given = [f"--{k.replace('_', '-')}" for k in RESUME_CONFLICTS if getattr(args, k, None) not in (None, False, [])]
        if given:
            raise ConfigError(
                f"--resume continues a run with its own config.toml; only {' and '.join(f'--{f}' for f in RESUMABLE)} may be given with it, "
                f"not {', '.join(given)}"
            )
        cfg = read_run_config(Path(args.resume))
        changes = {k: getattr(args, k) for k in RESUMABLE if getattr(args, k) is not None}
        cfg = cfg.replace(**changes) if changes else cfg
        out = args.resume
    else:
        cfg = resolve_config(args)
        out = args.out
    m = train(cfg, out, resume=bool(args.resume), force=args.force, progress=not args.no_progress, tensorboard=args.tensorboard)
    epochs = f"{m['epoch']} epoch{'s' if m['epoch'] != 1 else ''}"
    log.info(
        f"done: {epochs} in {m['total_train_seconds']:.1f} s of training ({m['mean_images_per_second']:.0f} img/s on average); "
        f"test loss {m['test_loss']:.2f} (recon {m['test_recon']:.2f}, KL {m['test_kl']:.2f}); run folder {m['run_dir']}"
    )
    return 0


def add_commands(add: Adder) -> None:
    """Register ``configs`` and ``train``."""
    p = add("configs", cmd_configs, "list the named configurations")
    p.add_argument("--params", action="store_true", help="also count each configuration's parameters")
    p.add_argument("--show", metavar="NAME", help="print only that configuration as TOML (save it and pass it to --config)")

    p = add("train", cmd_train, "train a configuration; writes a run folder with checkpoints, metrics.jsonl and figures")
    add_train_options(p)
    p.add_argument("--out", help="run folder (default: runs/<config>-<timestamp>)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its newest checkpoint (--epochs may extend it)")
    p.add_argument("--force", action="store_true", help="replace an existing run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch only)")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="data-parallel training in N processes on this machine, started by torch's elastic launcher "
        "(the same as `torchrun --standalone --nproc_per_node N -m mnist_vae train ...`); --batch-size is per process",
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log scalars, sample grids and hyper-parameters to RUN/tb/ (needs: pip install 'mnist-vae[tensorboard]')",
    )
