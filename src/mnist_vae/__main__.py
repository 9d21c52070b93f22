"""``python -m mnist_vae`` is the ``mnist-vae`` command (and what torchrun starts)."""

import sys

from .cli import main

sys.exit(main())
