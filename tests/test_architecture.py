"""The package's layers: every import (at module level or inside a function) points down, never up or around.

    cli  ->  study / bench  ->  evaluation / serve / api  ->  training  ->  runs / viz  ->  models / data
         ->  runtime / io  ->  config / presets / losses / stats / errors

Model files import neither the CLI, data, files nor matplotlib (docs/architecture.md). Outside the
package, scripts/ (maintenance) and experiments/ (results for the docs) sit above every layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mnist_vae

PACKAGE = Path(mnist_vae.__file__).parent

#: Layer of each top-level part; a module may import its own layer's siblings (no cycles, checked
#: below) and anything in a lower layer.
LAYERS = {
    "errors": 0,
    "config": 0,
    "fields": 0,
    "kinds": 0,
    "presets": 0,
    "losses": 0,
    "stats": 0,
    "seeds": 0,
    "_version": 0,
    "io": 1,
    "runtime": 1,
    "accel": 1,
    "models": 2,
    "data": 2,
    "runs": 3,
    "viz": 3,
    "training": 4,
    "evaluation": 5,
    "serve": 5,
    "study": 6,
    "api": 5,
    "bench": 6,
    "cli": 7,
    "__main__": 8,
    "__init__": 8,  # the package's face: `from mnist_vae import load_run`
}


def _module_name(path: Path) -> str:
    """mnist_vae/runs/folder.py -> mnist_vae.runs.folder; a package's __init__.py -> the package."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p) for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every mnist_vae module ``path`` imports, resolved to absolute names (function-level imports too)."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("mnist_vae")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("mnist_vae"):
                # `from pkg import module` imports the module; `from module import name`, the module.
                out |= {f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names}
    return {m for m in out if m in MODULES and m != me}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_every_part_has_a_layer():
    assert {_part(m) for m in _graph()} <= set(LAYERS)


def test_imports_point_down():
    upward = [
        f"{m} imports {t}"
        for m, targets in _graph().items()
        for t in targets
        if LAYERS[_part(t)] > LAYERS[_part(m)] and _part(t) != _part(m)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_models_import_no_cli_data_files_or_plots():
    for path in (PACKAGE / "models").glob("*.py"):
        bad = {t for t in _imports(path) if _part(t) in ("cli", "data", "io", "viz", "runs", "training")}
        source = path.read_text(encoding="utf-8")
        assert not bad and "matplotlib" not in source, f"{path.name}: {bad or 'matplotlib'}"


ROOT = PACKAGE.parents[1]
#: Python outside the package, by role: maintenance scripts and experiments that produce docs results.
#: The benchmarks a user runs live in the package (mnist_vae.bench); the core-sharing study and one-off
#: measurements are experiments. Both folders sit above every layer: they may import
#: any public module of the package, and nothing imports them.
OUTSIDE = ("scripts", "experiments")


def _outside_files() -> list[Path]:
    return [p for folder in OUTSIDE for p in sorted((ROOT / folder).glob("*.py"))]


def test_scripts_and_experiments_import_only_existing_modules():
    bad = []
    for path in _outside_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mnist_vae"):
                if node.module not in MODULES:
                    bad.append(f"{path.name}: {node.module}")
    assert _outside_files() and not bad, bad


def test_no_second_implementation_outside_the_package():
    """Experiments run the shipped code: no model, layer or t-table of their own outside mnist_vae."""
    found = []
    for path in [*_outside_files(), *(PACKAGE / "bench").glob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any("Module" in ast.unparse(b) for b in node.bases):
                found.append(f"{path.name}: class {node.name}")
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "").upper().startswith("_T975") for t in node.targets):
                found.append(f"{path.name}: a t-table")
    assert not found, found


def test_the_package_never_imports_scripts_or_experiments():
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert not any(f"import {o}" in source or f"from {o}" in source for o in OUTSIDE), path


#: The one definition outside losses.py that may write the loss itself: bench's plain reference loop.
#: The benchmark times the product's training against it, so it must not share the product's code.
PLAIN_REFERENCE = ("mnist_vae.bench.loops", "ReferenceLoop")


def _writes_the_loss(node: ast.AST) -> bool:
    """Whether a definition spells the ELBO out: the Bernoulli reconstruction term and the Gaussian KL term."""
    text = ast.unparse(node)
    return "binary_cross_entropy_with_logits" in text and "logvar.exp()" in text


def test_the_loss_is_written_once_and_by_the_plain_reference():
    writers = []
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        if module != "mnist_vae.losses":
            tree = ast.parse(path.read_text(encoding="utf-8"))
            writers += [(module, n.name) for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef) and _writes_the_loss(n)]
    assert writers == [PLAIN_REFERENCE]
