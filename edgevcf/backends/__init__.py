"""Inference engines: load one artefact, run a batch. numpy in, numpy out.

Backends never import torch, a converter or a quantizer, so a cart needs numpy, pydicom and one
engine. Each backend module imports its engine inside methods (``import edgevcf.backends`` is
light); :func:`open_backend` picks the class by the artefact's ``runtime`` name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgevcf.backends.base import Backend
from edgevcf.deps import available, import_symbol
from edgevcf.errors import BundleError

# runtime name (as written in a bundle manifest) -> "module:Class"
RUNTIMES: dict[str, str] = {
    "onnxruntime": "edgevcf.backends.onnxruntime:OnnxRuntimeBackend",
    "openvino": "edgevcf.backends.openvino:OpenVINOBackend",
    "litert": "edgevcf.backends.litert:LiteRTBackend",
    "tensorrt": "edgevcf.backends.tensorrt:TensorRTBackend",
}

#: What each runtime needs installed beyond its own package (TensorRT runs through cuda-python's
#: bindings: a Jetson without them falls back to the bundle's ONNX artefact).
NEEDS: dict[str, tuple[str, ...]] = {"tensorrt": ("tensorrt", "cuda_python")}


def runnable(runtime: str) -> bool:
    """Whether an artefact of ``runtime`` can run here (probed without importing anything)."""
    return all(available(n) for n in NEEDS.get(runtime, (runtime,)))


def backend_class(runtime: str) -> type[Backend]:
    """The backend class for a runtime name."""
    if runtime not in RUNTIMES:
        raise BundleError(
            f"unknown runtime {runtime!r}", hint=f"known runtimes: {', '.join(RUNTIMES)}"
        )
    backend: type[Backend] = import_symbol(RUNTIMES[runtime])
    return backend


def open_backend(runtime: str, path: Path, **options: Any) -> Backend:
    """Load ``path`` with the named runtime."""
    return backend_class(runtime)(path, **options)


__all__ = ["NEEDS", "RUNTIMES", "Backend", "backend_class", "open_backend", "runnable"]
