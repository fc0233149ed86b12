"""What the export pipeline and the targets share, below both: the export's context, the
record of an artefact measured against the FP32 reference, the export's result, and the one
build-measure-fallback step (used by :mod:`edgevcf.export` and :mod:`edgevcf.precision_auto`).

It imports neither :mod:`edgevcf.export` nor any target module, so the pipeline, the targets and
``--precision auto`` depend on it and never on each other in a circle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf import metrics, progress
from edgevcf.bundle import Artifact
from edgevcf.data.manifest import Manifest
from edgevcf.data.preprocess import InputSpec, Preprocess
from edgevcf.errors import DataError
from edgevcf.hashing import sha256_file
from edgevcf.profiles import TargetProfile

if TYPE_CHECKING:
    from torch import nn

    from edgevcf.dataset import SplitData
    from edgevcf.targets.base import Target

#: The input quality gate learns "in scope" from this split (what the model was trained on).
GATE_SPLIT = "train"


@dataclass
class ExportContext:
    """Everything a target needs to build its artefacts, and the pipeline's own operations a
    target's fallback uses (:meth:`run`, :meth:`measure`); filled by :func:`export_bundle`."""

    target: Target
    profile: TargetProfile
    work: Path  # the staging folder (becomes the bundle)
    scratch: Path  # files that do not go into the bundle
    model: nn.Module | None  # None for an ONNX reference
    spec: Preprocess
    input: InputSpec
    fp32_onnx: Path  # in scratch
    calib_inputs: np.ndarray | None  # (N, C, S, S) graph inputs from the training split
    tuning_inputs: np.ndarray  # (M, C, S, S) graph inputs of the tuning split
    tuning_labels: np.ndarray
    threshold: float
    fp32_probs: np.ndarray  # PyTorch eager P(fresh) on the tuning split
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # per-target facts for the manifest
    manifest: Manifest | None = None  # the data manifest (its training split: QAT, the gate)
    #: what the reference is (:func:`edgevcf.intake.reference.reference_kind`): QAT needs
    #: ``eager``; litert-torch's .tflite ``eager`` or ``pt2``
    model_kind: str = "eager"
    structure: dict[str, Any] = field(default_factory=dict)  # the reference's (CheckpointMeta)
    _train: SplitData | None = field(default=None, repr=False)
    # (artefact, its options, its files' digests) -> tuning probabilities: a fallback measures
    # the artefacts it returns, and the export measures what a fallback returned
    _probs: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict, repr=False)

    def training_split(self) -> SplitData:
        """The training split, preprocessed once per export (quantisation-aware training and
        the quality gate learn from it; DataError when the manifest has none)."""
        from edgevcf.dataset import load_split

        if self._train is None:
            if self.manifest is None:
                raise DataError("this export has no data manifest to train from")
            self._train = load_split(
                self.manifest, GATE_SPLIT, self.spec, desc=f"preprocess {GATE_SPLIT}"
            )
        return self._train

    def run(self, art: Artifact, x: np.ndarray) -> np.ndarray:
        """Logits of an artefact of this bundle-in-making on graph inputs ``x``."""
        from edgevcf.backends import open_backend

        return open_backend(art.runtime, self.work / art.file, **art.options).run_all(x)

    def measure(self, artifacts: list[Artifact]) -> dict[str, ArtifactMetrics]:
        """Each measurable artefact against the FP32 reference on the tuning split."""
        out = {}
        for art in progress.track(
            self.target.measured_artifacts(artifacts),
            desc=f"{self.target.name}: measure",
            unit="artifact",
        ):
            key = (
                art.name,
                art.runtime,
                json.dumps(art.options, sort_keys=True, default=str),
                *(sha256_file(self.work / f) for f in art.files()),
            )
            if key not in self._probs:
                self._probs[key] = metrics.sigmoid(self.run(art, self.tuning_inputs)).reshape(-1)
            probs = self._probs[key]
            out[art.name] = measure(
                self.tuning_labels, self.fp32_probs, probs, self.threshold, self.profile
            )
            self.extra.setdefault("tuning_probs", {})[art.name] = probs
        return out


@dataclass
class ArtifactMetrics:
    """An artefact measured against the FP32 reference on the tuning split."""

    auc: dict[str, Any] | None
    paired: dict[str, Any] | None
    flips: dict[str, Any]
    at_threshold: dict[str, Any] | None
    max_abs_prob_diff: float
    gate: dict[str, Any]


@dataclass
class ExportResult:
    """What an export produced (for the CLI's summary table)."""

    bundle: Path
    profile: str
    target: str
    precision: str
    size_bytes: int
    fp32_size_bytes: int
    fp32_auc: float | None
    auc: float | None
    delta_auc: dict[str, Any] | None
    flip_rate: float
    gate_passed: bool | None
    seconds: float
    notes: list[str]
    manifest: dict[str, Any]
    gate: dict[str, Any] = field(default_factory=dict)  # the default artefact's, criteria and all


def measure(
    labels: np.ndarray,
    ref_probs: np.ndarray,
    probs: np.ndarray,
    threshold: float,
    profile: TargetProfile,
) -> ArtifactMetrics:
    """Paired comparison of an artefact with the FP32 reference on the same cases."""
    g = metrics.gate_for(profile.tolerance, labels, ref_probs, probs, threshold)
    flips = g.flips
    auc = paired = at = None
    gate = g.to_dict()
    if g.paired is not None:
        auc = metrics.auc_ci(labels, probs).to_dict()
        paired = g.paired.to_dict()
        at = metrics.binary_metrics(labels, probs, threshold).to_dict()
    else:
        gate["reason"] = "tuning split lacks a class: AUC not measurable"
    return ArtifactMetrics(
        auc=auc,
        paired=paired,
        flips=flips.to_dict(),
        at_threshold=at,
        max_abs_prob_diff=float(np.max(np.abs(probs - ref_probs))) if len(probs) else 0.0,
        gate=gate,
    )


def build_and_measure(ctx: ExportContext) -> tuple[list[Artifact], dict[str, ArtifactMetrics]]:
    """The target's artefacts, measured; after a failed gate (or always, when the profile asks
    for accuracy-aware quantisation or QAT) the target's fallback, measured again."""
    artifacts = ctx.target.build(ctx)
    measured = ctx.measure(artifacts)
    first = measured[artifacts[0].name]
    q = ctx.profile.quantize
    if first.gate.get("passed") is False or q.accuracy_aware or q.qat:
        fixed = ctx.target.fallback(ctx, artifacts, first)
        if fixed is not None:
            artifacts = fixed
            measured = ctx.measure(artifacts)
    return artifacts, measured


__all__ = [
    "GATE_SPLIT",
    "ArtifactMetrics",
    "ExportContext",
    "ExportResult",
    "build_and_measure",
    "measure",
]
