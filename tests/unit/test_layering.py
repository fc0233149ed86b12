"""The house's layering, asserted: the cart side imports no toolchain, and no module reaches
into another's private names."""

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
]  # fmt: skip
#: What it must never load: toolchains, and the workstation side of edgevcf.
WORKSTATION = [
    "torch", "torchvision", "onnx", "nncf", "scipy", "litert_torch", "edgevcf.targets",
    "edgevcf.train", "edgevcf.export", "edgevcf.onnx_export", "edgevcf.models",
    "edgevcf.quality_fit", "edgevcf.data.synth", "edgevcf.calibration", "edgevcf.testing",
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
