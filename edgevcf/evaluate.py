"""Evaluate an FP32 checkpoint on a manifest split the way the study reported its models.

AUC with a DeLong 95 % CI, and at the checkpoint's own decision threshold: accuracy,
sensitivity, specificity, F1 and precision (with Wilson CIs). Clinicians' reads, when given, are
placed on the ROC and compared with the model at its threshold by McNemar's test on the same
cases, as the study compared its networks with two spine surgeons.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevcf import metrics
from edgevcf.data.manifest import Manifest
from edgevcf.dataset import load_split
from edgevcf.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class ReaderResult:
    """One clinician's calls on the evaluated cases, against the model."""

    name: str
    n: int
    metrics: metrics.BinaryMetrics
    model_right_reader_wrong: int
    model_wrong_reader_right: int
    mcnemar_p: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "n": self.n,
            "metrics": self.metrics.to_dict(),
            "model_right_reader_wrong": self.model_right_reader_wrong,
            "model_wrong_reader_right": self.model_wrong_reader_right,
            "mcnemar_p": self.mcnemar_p,
        }


@dataclass
class EvalResult:
    """Everything ``edgevcf evaluate`` reports."""

    checkpoint: str
    arch: str
    split: str
    n: int
    auc: metrics.AUCResult
    at_threshold: metrics.BinaryMetrics
    threshold_method: str
    roc: tuple[np.ndarray, np.ndarray]
    scores: np.ndarray
    labels: np.ndarray
    readers: list[ReaderResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (no per-case scores: those may identify cases)."""
        return {
            "checkpoint": self.checkpoint,
            "arch": self.arch,
            "split": self.split,
            "n": self.n,
            "n_pos": int(self.labels.sum()),
            "auc": self.auc.to_dict(),
            "threshold_method": self.threshold_method,
            "at_threshold": self.at_threshold.to_dict(),
            "readers": [r.to_dict() for r in self.readers],
            "skipped": len(self.skipped),
            "notes": self.notes,
        }


def evaluate(
    checkpoint: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str],
    *,
    split: str = "test",
    readers: str | os.PathLike[str] | None = None,
    cache: bool = True,
) -> EvalResult:
    """Score ``split`` of the manifest with the FP32 reference (a checkpoint in PyTorch eager,
    an ONNX reference in ONNX Runtime; CPU)."""
    from edgevcf.intake.reference import load_reference, reference_probs

    model, meta, ref_onnx = load_reference(checkpoint)
    manifest = Manifest.load(manifest_path)
    data = load_split(manifest, split, meta.preprocess, cache=cache, desc=f"preprocess {split}")
    if len(data) == 0 or data.n_pos in (0, len(data)):
        raise DataError(
            f"split {split!r} needs both classes to evaluate "
            f"({len(data)} images, {data.n_pos} positive)"
        )
    scores = reference_probs(model, ref_onnx, data.units, meta.preprocess)
    notes = []
    tuned_on = str(meta.train_config.get("val_split", "val"))
    if split == str(meta.train_config.get("train_split", "train")):
        notes.append(f"split {split!r} is the one the model was trained on: not an evaluation")
    elif split == tuned_on:
        notes.append(
            f"split {split!r} also chose the checkpoint and its threshold: these figures are "
            "optimistic; confirm on a split that tuned nothing (e.g. test)"
        )
    if meta.data_fingerprint and meta.data_fingerprint != manifest.fingerprint():
        notes.append("manifest differs from the one the model was trained with")
    fpr, tpr, _ = metrics.roc_curve(data.labels, scores)
    result = EvalResult(
        checkpoint=str(checkpoint),
        arch=meta.arch,
        split=split,
        n=len(data),
        auc=metrics.auc_ci(data.labels, scores),
        at_threshold=metrics.binary_metrics(data.labels, scores, meta.threshold),
        threshold_method=meta.threshold_method,
        roc=(fpr, tpr),
        scores=scores,
        labels=data.labels,
        skipped=data.skipped,
        notes=notes,
    )
    if readers is not None:
        paths = [s.path for s in data.studies]
        result.readers = _compare_readers(
            Path(readers), paths, data.labels, scores >= meta.threshold
        )
    return result


def _compare_readers(
    path: Path, case_paths: list[str], labels: np.ndarray, model_calls: np.ndarray
) -> list[ReaderResult]:
    """Read ``path, reader, call`` rows and compare each reader with the model on shared cases."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise DataError(f"cannot read reader file {path}: {exc}") from exc
    need = {"path", "reader", "call"}
    if not rows or not need <= set(rows[0]):
        raise DataError(
            f"{path}: reader file needs columns {', '.join(sorted(need))}",
            hint="one row per reader and case: path as in the manifest, reader name, call 0/1",
        )
    index = {p: i for i, p in enumerate(case_paths)}
    calls: dict[str, dict[int, int]] = {}
    for n, row in enumerate(rows, start=1):
        if row["call"].strip() not in ("0", "1"):
            raise DataError(f"{path}: row {n}: call must be 0 or 1, got {row['call']!r}")
        i = index.get(row["path"].strip())
        if i is not None:
            calls.setdefault(row["reader"].strip(), {})[i] = int(row["call"])
    out = []
    for name, by_case in sorted(calls.items()):
        idx = np.array(sorted(by_case), dtype=np.int64)
        r = np.array([by_case[i] for i in idx])
        y, m = labels[idx], model_calls[idx].astype(int)
        b = int(((m == y) & (r != y)).sum())
        c = int(((m != y) & (r == y)).sum())
        out.append(
            ReaderResult(
                name,
                len(idx),
                metrics.binary_metrics(y, r.astype(float), 0.5),
                b,
                c,
                metrics.mcnemar(b, c),
            )
        )
    if not out:
        log.warning("no reader rows matched the evaluated cases of %s", path)
    return out
