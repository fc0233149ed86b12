"""The Target interface: what one export toolchain (jetson, openvino, mobile, onnx) adds.

A target only says how to turn the FP32 ONNX into its artefacts (:meth:`Target.build`) and,
optionally, how to recover accuracy when the gate fails (:meth:`Target.fallback`). The pipeline
around it — checkpoint, ONNX and parity, calibration, measurement, golden vectors, quality gate,
the bundle — is :mod:`edgevcf.export` (``export_bundle(target, ...)``), the same for every
target; a target never calls the pipeline (what both share is :mod:`edgevcf.pipeline`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from edgevcf.bundle import Artifact

if TYPE_CHECKING:
    from edgevcf.pipeline import ArtifactMetrics, ExportContext
    from edgevcf.profiles import TargetProfile


class Target(ABC):
    """One export toolchain (jetson, openvino, mobile, onnx)."""

    name: str = ""
    #: backends this target's artefacts need to be measured here
    needs: tuple[str, ...] = ("onnx", "onnxruntime")
    #: the toolchain's packages (distribution names), whose versions each bundle records
    toolchain: tuple[str, ...] = ("onnx", "onnxruntime")

    @abstractmethod
    def build(self, ctx: ExportContext) -> list[Artifact]:
        """Write the target's artefacts into ``ctx.work``; the first is the default one."""

    def measured_artifacts(self, artifacts: list[Artifact]) -> list[Artifact]:
        """Artefacts that can be run here to measure them (all by default)."""
        return artifacts

    def fallback(
        self, ctx: ExportContext, artifacts: list[Artifact], measured: ArtifactMetrics
    ) -> list[Artifact] | None:
        """Recover accuracy after a failed gate, given how the first try measured.

        Called when the default artefact fails the gate, or always when the profile asks for
        accuracy-aware quantisation. None: nothing better to offer (keep ``artifacts``).
        """
        return None

    def precision_candidates(self, profile: TargetProfile) -> list[tuple[str, str]]:
        """What ``--precision auto`` tries, fastest expected first, as (precision, why not):
        an empty reason is a candidate, a reason says why this machine cannot try it."""
        return [("int8", ""), ("fp32", "")]

    def versions(self) -> dict[str, str]:
        """Versions of the toolchain packages installed (those absent are left out)."""
        from importlib.metadata import PackageNotFoundError, version

        out = {}
        for pkg in self.toolchain:
            try:
                out[pkg] = version(pkg)
            except PackageNotFoundError:
                continue
        return out

    def check_available(self, profile: TargetProfile) -> None:
        """Raise BackendUnavailableError naming what is missing (before any work)."""
        from edgevcf.deps import require

        for name in self.needs:
            require(name, f"the {self.name} target")
