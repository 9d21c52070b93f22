# Shortcuts; each target is one documented command.
.PHONY: install test test-fast bench demo

install:
	python3 -m pip install torch==2.13.0 && python3 -m pip install -e '.[dev]'

test:
	python3 -m pytest

test-fast:
	python3 -m pytest -m "not slow"

bench:
	python3 -m mnist_vae.bench

demo:
	mnist-vae train --config optimized --dataset embedded
