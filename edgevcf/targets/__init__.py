"""Export toolchains, one module per target, one class each, registered by name.

Targets *make* bundles (they may use torch, nncf, litert-torch); backends *run* them. The
registry maps names to ``module:Class`` strings so ``import edgevcf.targets`` imports no
toolchain.
"""

from __future__ import annotations

from edgevcf.deps import import_symbol
from edgevcf.errors import ConfigError
from edgevcf.targets.base import Target

TARGETS: dict[str, str] = {
    "jetson": "edgevcf.targets.jetson:JetsonTarget",
    "openvino": "edgevcf.targets.openvino:OpenVINOTarget",
    "mobile": "edgevcf.targets.mobile:MobileTarget",
    "onnx": "edgevcf.targets.onnx:OnnxTarget",
}


def get_target(name: str) -> Target:
    """An instance of the target class registered as ``name``."""
    if name not in TARGETS:
        raise ConfigError(f"unknown target {name!r}", hint=f"targets: {', '.join(TARGETS)}")
    target: Target = import_symbol(TARGETS[name])()
    return target


__all__ = ["TARGETS", "Target", "get_target"]
