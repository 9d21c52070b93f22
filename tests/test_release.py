"""Release bits: one version, shown by ``mnist-vae --version``; the ``py.typed`` marker; the one-line errors a user can act on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import mnist_vae
from mnist_vae.cli import main as cli_main

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_kept_in_one_place_and_shown_by_the_cli(capsys):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "version" not in project and "version" in project["dynamic"]  # read from _version.py at build time
    assert re.fullmatch(r"\d+\.\d+\.\d+", mnist_vae.__version__)
    with pytest.raises(SystemExit) as exit_:
        cli_main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"mnist-vae {mnist_vae.__version__}"


def test_python_m_mnist_vae_version():
    p = subprocess.run([sys.executable, "-m", "mnist_vae", "--version"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == f"mnist-vae {mnist_vae.__version__}", p.stderr[-2000:]


def test_py_typed_is_shipped_as_package_data():
    assert (Path(mnist_vae.__file__).parent / "py.typed").is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]
    assert "py.typed" in data["mnist_vae"]


def test_requires_python_refuses_older_than_3_10():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["requires-python"] == ">=3.10"


def test_changelog_names_the_current_version_scheme():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert mnist_vae.__version__ in text and "## Unreleased" in text
