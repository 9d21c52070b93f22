"""The docs site: every public name has an API-reference entry with a docstring; the README stays a short front door."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import mnist_vae

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api.md"


def _reference_entries() -> dict[str, str]:
    """Public name -> the dotted path its ``::: path`` entry in docs/api.md renders."""
    paths = re.findall(r"^::: ([\w.]+)$", API.read_text(encoding="utf-8"), flags=re.M)
    return {p.rsplit(".", 1)[1]: p for p in paths}


def test_every_public_name_has_a_reference_entry_for_the_object_it_is():
    entries = _reference_entries()
    assert sorted(entries) == sorted(mnist_vae.__all__)
    for name, path in entries.items():
        module, attr = path.rsplit(".", 1)
        source = __import__(module, fromlist=[attr])
        assert getattr(source, attr) is getattr(mnist_vae, name), f"{path} is not mnist_vae.{name}"


def test_every_public_name_has_the_docstring_mkdocstrings_renders():
    griffe = pytest.importorskip("griffe", reason="the docs extra is not installed")
    package = griffe.load("mnist_vae", search_paths=[str(ROOT / "src")])
    for name, path in _reference_entries().items():
        obj = package.modules_collection[path]
        assert obj.docstring is not None and obj.docstring.value.strip(), f"{path} ({name}) has no docstring"
        if obj.is_class:
            for member in obj.members.values():
                if not member.name.startswith("_"):
                    assert member.docstring is not None, f"{path}.{member.name} has no docstring"


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150
    text = "\n".join(lines)
    assert "pip install torch==2.13.0 && pip install -e . && mnist-vae train --config optimized --dataset embedded" in text
    assert "pip install torch==2.13.0 && pip install -e '.[dev]' && python -m pytest" in text
    for link in re.findall(r"\]\((docs/[^)#]+|CHANGELOG.md)", text):
        assert (ROOT / link).is_file(), f"README links to a missing {link}"


def test_every_docs_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md")) + ["tutorial.ipynb"]
    assert [p for p in pages if f": {p}" not in nav] == []
