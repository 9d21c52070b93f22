"""``python -m mnist_vae.bench``."""

import sys

from .cli import main

sys.exit(main())
