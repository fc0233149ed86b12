"""Export toolchains, one module per target, one class each.

Targets *make* bundles (they may use torch, nncf, litert-torch); backends *run* them. The target
named ``X`` (a name of :data:`edgevcf.profiles.TARGET_NAMES`, the one table of targets and their
options) is the class ``TARGET`` of module ``edgevcf.targets.X``, imported only when asked for,
so ``import edgevcf.targets`` imports no toolchain.
"""

from __future__ import annotations

from edgevcf.deps import import_symbol
from edgevcf.errors import ConfigError
from edgevcf.profiles import TARGET_NAMES
from edgevcf.targets.base import Target


def get_target(name: str) -> Target:
    """An instance of the target class of ``name``."""
    if name not in TARGET_NAMES:
        raise ConfigError(f"unknown target {name!r}", hint=f"targets: {', '.join(TARGET_NAMES)}")
    target: Target = import_symbol(f"edgevcf.targets.{name}:TARGET")()
    return target


__all__ = ["Target", "get_target"]
