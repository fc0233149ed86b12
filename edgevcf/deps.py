"""Probes for optional backends without importing them.

``find_spec`` answers "is it installed?" in microseconds and imports nothing, which keeps
``import edgevcf`` and ``edgevcf --help`` light. ``require`` turns a missing package into a
:class:`BackendUnavailableError` whose hint names the pip extra that brings it.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from edgevcf.errors import BackendUnavailableError


@dataclass(frozen=True)
class Dependency:
    """An optional dependency: its import name and how a user gets it."""

    module: str
    pip_name: str
    hint: str


_JETPACK_HINT = (
    "TensorRT comes with JetPack 6.1+ on a Jetson (python3-libnvinfer, TensorRT >= 10.3), plus "
    "pip install 'edgevcf[jetson]' (cuda-python); on an x86 workstation with a supported NVIDIA "
    "GPU: pip install tensorrt"
)

DEPENDENCIES: dict[str, Dependency] = {
    "torch": Dependency("torch", "torch", "pip install 'edgevcf[train]'"),
    "torchvision": Dependency("torchvision", "torchvision", "pip install 'edgevcf[train]'"),
    "scipy": Dependency("scipy", "scipy", "pip install 'edgevcf[synth]'"),
    "matplotlib": Dependency("matplotlib", "matplotlib", "pip install 'edgevcf[report]'"),
    "timm": Dependency("timm", "timm", "pip install 'edgevcf[timm]'"),
    "safetensors": Dependency("safetensors", "safetensors", "pip install 'edgevcf[train]'"),
    "onnx": Dependency("onnx", "onnx", "pip install 'edgevcf[export]'"),
    "onnxruntime": Dependency("onnxruntime", "onnxruntime", "pip install 'edgevcf[onnxruntime]'"),
    "openvino": Dependency("openvino", "openvino", "pip install 'edgevcf[openvino]'"),
    "nncf": Dependency("nncf", "nncf", "pip install 'edgevcf[export]'"),
    "litert": Dependency("ai_edge_litert", "ai-edge-litert", "pip install 'edgevcf[litert]'"),
    "litert_torch": Dependency("litert_torch", "litert-torch", "pip install 'edgevcf[mobile]'"),
    "tensorrt": Dependency("tensorrt", "tensorrt", _JETPACK_HINT),
    "cuda_python": Dependency("cuda", "cuda-python", "pip install 'edgevcf[jetson]'"),
    "pynetdicom": Dependency("pynetdicom", "pynetdicom", "pip install 'edgevcf[serve]'"),
    "cryptography": Dependency("cryptography", "cryptography", "pip install 'edgevcf[signing]'"),
    "ray": Dependency("ray", "ray", "pip install 'edgevcf[ray]'"),
}


def _backend(name: str) -> Dependency:
    try:
        return DEPENDENCIES[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(DEPENDENCIES)}") from None


def available(name: str) -> bool:
    """Whether the backend can be imported here (checked without importing it)."""
    try:
        return importlib.util.find_spec(_backend(name).module) is not None
    except (ImportError, ValueError):
        return False


def missing(*names: str) -> list[str]:
    """The subset of ``names`` that is not installed."""
    return [n for n in names if not available(n)]


def import_symbol(spec: str) -> Any:
    """``"package.module:attr"`` -> the attribute, importing the module only now.

    The lazy registries (CLI commands, targets, backends) name their entries this way so that
    importing the registry imports no toolchain.
    """
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)


def require(name: str, purpose: str | None = None) -> ModuleType:
    """Import an optional backend or raise a :class:`BackendUnavailableError` with a hint.

    Args:
        name: Key of :data:`DEPENDENCIES`.
        purpose: What the caller needs it for, to make the message say why.
    """
    backend = _backend(name)
    why = f" (needed for {purpose})" if purpose else ""
    if not available(name):
        raise BackendUnavailableError(
            f"{backend.pip_name} is not installed{why}", hint=backend.hint
        )
    try:
        return importlib.import_module(backend.module)
    except ImportError as exc:  # installed but broken (ABI mismatch, missing shared library)
        raise BackendUnavailableError(
            f"{backend.pip_name} is installed but failed to import{why}: {exc}",
            hint=backend.hint,
        ) from exc
