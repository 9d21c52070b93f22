"""mkdocs hook: the docstrings use Sphinx roles (:class:`~a.b.C`), which mkdocstrings shows as written; render them as code."""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):<code>(~?)([\w.]+)</code>")


def _code(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **_: Any) -> str:
    """Replace each role with its target in code font (``~`` keeps the last name only, as Sphinx does)."""
    return _ROLE.sub(_code, html)
