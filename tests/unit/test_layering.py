"""The house's layering, asserted: the cart side imports no toolchain, no module reaches into
another's private names, and no modules import each other in a circle (deferred imports
inside functions included)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: What a cart runs (bundle, runtime, backends, the quality gate, serve).
CART = [
    "edgevcf.bundle", "edgevcf.runtime", "edgevcf.quality", "edgevcf.signing",
    "edgevcf.backends.onnxruntime", "edgevcf.backends.openvino", "edgevcf.backends.litert",
    "edgevcf.backends.tensorrt", "edgevcf.serve.service", "edgevcf.serve.scp", "edgevcf.serve.sr",
    "edgevcf.serve.workers", "edgevcf.serve.systemd", "edgevcf.watch.drift", "edgevcf.cusum",
    "edgevcf.watch.shadow", "edgevcf.watch.shadow_report", "edgevcf.serve.shadowing",
    "edgevcf.serve.watching", "edgevcf.watch.promotion", "edgevcf.jsonutil",
]  # fmt: skip
#: What it must never load: toolchains, and the workstation side of edgevcf.
WORKSTATION = [
    "torch", "torchvision", "onnx", "nncf", "scipy", "litert_torch", "edgevcf.targets",
    "edgevcf.train", "edgevcf.export", "edgevcf.onnx_export", "edgevcf.models",
    "edgevcf.quality_fit", "edgevcf.data.synth", "edgevcf.calibration", "edgevcf.testing",
    "edgevcf.pipeline", "edgevcf.precision_auto", "edgevcf.intake",
]  # fmt: skip


def test_the_cart_side_imports_no_toolchain() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for m in {CART!r}:\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except ImportError as exc:\n"
        "        if not str(exc).startswith('needs '):  # an optional engine absent: fine\n"
        "            raise\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    leaked = sorted(m for m in loaded if any(m == w or m.startswith(w + ".") for w in WORKSTATION))
    assert leaked == []


def test_no_private_name_is_imported_across_modules() -> None:
    found = []
    for path in sorted([*(ROOT / "edgevcf").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgevcf"):
                found += [f"{path.relative_to(ROOT)}: {node.module}.{a.name}"
                          for a in node.names if a.name.startswith("_")
                          and not a.name.startswith("__")]  # fmt: skip
    assert found == []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The edgevcf modules ``path`` imports anywhere (functions included), except under
    ``if TYPE_CHECKING:`` (annotations only, never executed)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                out.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - child.level + 1]
                mod = ".".join([*base, child.module or ""]).strip(".") if child.level else (
                    child.module or "")  # fmt: skip
                out.add(mod)
                out.update(f"{mod}.{a.name}" for a in child.names)  # a submodule by name
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in out if m in known and m != name}


def test_no_import_cycles_deferred_imports_included() -> None:
    """A circle through an import inside a function still ties modules together (seen:
    export -> precision_auto -> export); what two sides share goes below both."""
    paths = {_module_name(p): p for p in (ROOT / "edgevcf").rglob("*.py")}
    graph = {n: _imports(p, n, set(paths)) for n, p in paths.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    assert cycles == []
    assert "edgevcf.export" in graph["edgevcf.cli.export"]  # the walk sees deferred imports
