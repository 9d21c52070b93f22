"""The tutorial notebook (docs/tutorial.ipynb) runs from top to bottom, offline, and is kept without outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "the tutorial has no code"
    assert [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None] == []


@pytest.mark.slow
def test_notebook_runs_end_to_end(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the notebook extra is not installed")
    nbclient = pytest.importorskip("nbclient", reason="the notebook extra is not installed")
    monkeypatch.setenv("MNIST_VAE_TOUR_SERVE", "0")  # print the explorer's address, start no server
    monkeypatch.setenv("MNIST_VAE_DATA", str(tmp_path / "cache"))  # nothing in the user's cache
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's files go to a temporary folder
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert "TrainedVAE('lstm-plus'" in text
    assert len(images) >= 4  # samples, interpolation, the scored digit and its reconstruction, the trained run's samples
    assert "serving lstm-plus at http://127.0.0.1:" in text
    assert "the full report:" in text and "| lstm-plus | beats the standard MLP VAE of pytorch/examples |" in "".join(
        o.get("data", {}).get("text/markdown", "") for o in outputs
    )
