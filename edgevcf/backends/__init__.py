"""Inference engines: load one artefact, run a batch. numpy in, numpy out.

Backends never import torch, a converter or a quantizer, so a cart needs numpy, pydicom and one
engine. Each backend module imports its engine inside methods (``import edgevcf.backends`` is
light); :func:`open_backend` picks the class by the artefact's ``runtime`` name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgevcf.backends.base import Backend
from edgevcf.deps import import_symbol
from edgevcf.errors import BundleError

# runtime name (as written in a bundle manifest) -> "module:Class"
RUNTIMES: dict[str, str] = {
    "onnxruntime": "edgevcf.backends.onnxruntime:OnnxRuntimeBackend",
    "openvino": "edgevcf.backends.openvino:OpenVINOBackend",
    "litert": "edgevcf.backends.litert:LiteRTBackend",
    "tensorrt": "edgevcf.backends.tensorrt:TensorRTBackend",
}


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


__all__ = ["RUNTIMES", "Backend", "backend_class", "open_backend"]
