"""The export pipeline: checkpoint -> FP32 ONNX (+ parity) -> a target's artefacts -> measured,
checksummed bundle. One orchestration for every target, so every target is measured the same way.

The FP32 reference is PyTorch eager on the *tuning* split (the validation split that chose the
checkpoint and its threshold — never the test split, which stays for ``edgevcf bench`` to
confirm); each artefact is run with its own backend on the same images, and the comparison is
paired (:func:`edgevcf.metrics.accuracy_gate`: DeLong ΔAUC with CI, non-inferiority at the
profile's tolerance, decision flips at the bundled threshold). A target (:mod:`edgevcf.targets`)
only says how to turn the FP32 ONNX into its artefacts and, optionally, how to recover accuracy
when the gate fails; the bundle's manifest schema is :mod:`edgevcf.bundle`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf import __version__, metrics, progress
from edgevcf.bundle import GOLDEN, Artifact, Golden, new_manifest, staging, write_manifest
from edgevcf.calibration import CalibrationSet, load_recipe, patient_record, select
from edgevcf.data.manifest import Manifest
from edgevcf.data.preprocess import InputSpec, Preprocess
from edgevcf.errors import CalibrationError, ConfigError, DataError
from edgevcf.hashing import sha256_file
from edgevcf.onnx_export import ParityResult
from edgevcf.pipeline import (
    GATE_SPLIT,
    ArtifactMetrics,
    ExportContext,
    ExportResult,
    build_and_measure,
)
from edgevcf.profiles import TargetProfile

if TYPE_CHECKING:
    from torch import nn

    from edgevcf.dataset import SplitData
    from edgevcf.targets.base import Target

GOLDEN_COUNT = 8
TUNING_SPLIT = "val"
EVALUATED_SPLITS = ("val", "test")
GATE_MAX_IMAGES = 2000
# |logit| tolerance for golden vectors per precision (verify on another machine's runtime).
GOLDEN_ATOL = {"fp32": 1e-3, "fp16": 5e-2, "int8": 0.25}
#: Golden inputs lie at least this far (logits) from the threshold: 4x the INT8 tolerance.
GOLDEN_MIN_MARGIN = 4 * GOLDEN_ATOL["int8"]


def logit_margin(probs: np.ndarray, threshold: float) -> np.ndarray:
    """|logit(p) - logit(threshold)| per case: how far a decision is from flipping."""
    eps = 1e-12
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    t = min(max(float(threshold), eps), 1 - eps)
    return np.asarray(np.abs(np.log(p / (1 - p)) - math.log(t / (1 - t))))


def golden_indices(labels: np.ndarray, margin: np.ndarray, count: int = GOLDEN_COUNT) -> np.ndarray:
    """Up to ``count`` cases, half of each class when possible: the first whose ``margin`` is at
    least :data:`GOLDEN_MIN_MARGIN`, then the largest margins of the rest (sorted indices)."""
    clear = margin >= GOLDEN_MIN_MARGIN
    order = np.concatenate(
        [np.flatnonzero(clear), np.flatnonzero(~clear)[np.argsort(-margin[~clear], kind="stable")]]
    )
    pos = order[labels[order] == 1][: count // 2]
    neg = order[labels[order] == 0][: count - len(pos)]
    return np.sort(np.concatenate([pos, neg]))


def export_bundle(
    target: Target,
    checkpoint: str | os.PathLike[str],
    profile: TargetProfile,
    data: str | os.PathLike[str] | Manifest,
    out: str | os.PathLike[str],
    *,
    onnx_path: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> ExportResult:
    """Export ``checkpoint`` for ``target`` into the bundle folder ``out``: the one pipeline.

    Args:
        checkpoint: An edgevcf checkpoint (``.safetensors``).
        profile: The target profile (CLI overrides applied).
        data: The data manifest (with splits): calibration from train, tuning from val.
        out: Bundle folder to create.
        onnx_path: Use this FP32 ONNX instead of exporting the checkpoint's network.
        force: Replace an existing ``out``.
    """
    from edgevcf.dataset import load_split
    from edgevcf.intake.reference import (
        is_untuned,
        load_reference,
        reference_kind,
        reference_probs,
        tune_threshold,
    )

    t0 = time.perf_counter()
    target.check_available(profile)
    manifest = data if isinstance(data, Manifest) else Manifest.load(data)
    model, meta, ref_onnx = load_reference(checkpoint)
    if model is None:  # an ONNX reference: it is the FP32 graph, run by ONNX Runtime
        if onnx_path is not None:
            raise ConfigError("--onnx goes with a torch checkpoint; an ONNX reference is its own "
                              "FP32 graph")  # fmt: skip
        onnx_path = ref_onnx
    if is_untuned(meta):  # an imported network: never 0.5 from nowhere
        tune_threshold(meta, model, ref_onnx, manifest, TUNING_SPLIT)
        meta.threshold_method = meta.threshold_method.replace("at import", "at export")
    spec = meta.preprocess
    if profile.export.input_size and profile.export.input_size != spec.input_size:
        spec = dataclasses.replace(spec, input_size=profile.export.input_size)
    calib = _calibration(profile, manifest)
    tuning = load_split(manifest, TUNING_SPLIT, spec, desc=f"preprocess {TUNING_SPLIT}")
    if len(tuning) == 0:
        raise DataError(f"no readable images in the {TUNING_SPLIT!r} split")
    with staging(out, force=force) as work:
        scratch = work.parent / f"{work.name}-scratch"
        scratch.mkdir()
        try:
            fp32_onnx = scratch / "model.fp32.onnx"
            inp, parity = _fp32_graph(target, model, spec, profile, fp32_onnx, onnx_path, tuning)
            x_tune = inp.prepare(tuning.units, spec)
            x_calib = _calibration_inputs(calib, manifest, spec, inp)
            fp32_probs = reference_probs(model, ref_onnx, tuning.units, spec)
            ctx = ExportContext(
                target=target,
                profile=profile,
                work=work,
                scratch=scratch,
                model=model,
                spec=spec,
                input=inp,
                fp32_onnx=fp32_onnx,
                calib_inputs=x_calib,
                tuning_inputs=x_tune,
                tuning_labels=tuning.labels,
                threshold=meta.threshold,
                fp32_probs=fp32_probs,
                manifest=manifest,
                model_kind=reference_kind(meta),
                structure=meta.structure,
            )
            if profile.quantize.precision == "auto":
                from edgevcf import precision_auto

                ctx, artifacts, measured = precision_auto.search(ctx)
            else:
                artifacts, measured = build_and_measure(ctx)
            default = artifacts[0]
            golden = _golden(ctx, artifacts)
            golden.save(work / GOLDEN)
            gate = _quality_gate(ctx, tuning)
            fp32_size = fp32_onnx.stat().st_size
            m = _manifest(
                ctx,
                meta,
                artifacts,
                measured,
                parity,
                calib,
                checkpoint,
                fp32_size,
                gate,
                [s.patient_id for s in tuning.studies],
            )
            final = write_manifest(work, m)
        finally:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)
    dm = measured[default.name]
    size = sum((Path(out) / f).stat().st_size for f in default.files())
    return ExportResult(
        bundle=Path(out),
        profile=profile.name,
        target=target.name,
        precision=default.precision,
        size_bytes=size,
        fp32_size_bytes=fp32_size,
        fp32_auc=(
            metrics.auc(tuning.labels, fp32_probs) if 0 < tuning.n_pos < len(tuning) else None
        ),
        auc=dm.auc["auc"] if dm.auc else None,
        delta_auc=dm.paired,
        flip_rate=dm.flips["flip_rate"]["value"],
        gate_passed=dm.gate.get("passed"),
        gate=dm.gate,
        seconds=time.perf_counter() - t0,
        notes=ctx.notes,
        manifest=final,
    )


_REFERENCE_RUNTIME = {
    "eager": "PyTorch eager FP32",
    "torchscript": "PyTorch FP32 (an imported TorchScript program)",
    "pt2": "PyTorch FP32 (an imported torch.export program)",
    "onnx": "ONNX Runtime FP32 (an imported ONNX reference)",
}


def _fp32_graph(
    target: Target,
    model: nn.Module | None,
    spec: Preprocess,
    profile: TargetProfile,
    dest: Path,
    onnx_path: str | os.PathLike[str] | None,
    tuning: SplitData,
) -> tuple[InputSpec, ParityResult]:
    """The FP32 ONNX every target starts from (exported, or the user's, checked) in ``dest``,
    and its parity with the checkpoint's network on real tuning images."""
    from edgevcf.onnx_export import check_onnx_file, check_parity, export_onnx

    with progress.step(f"{target.name}: export FP32 ONNX"):
        if onnx_path is not None:
            inp = check_onnx_file(onnx_path, spec)
            dest.write_bytes(Path(onnx_path).read_bytes())
        else:
            assert model is not None  # an ONNX reference always comes with its graph
            inp = export_onnx(
                model,
                spec,
                dest,
                opset=profile.export.opset,
                batch=profile.export.batch,
                grey_input=profile.export.grey_input,
            )
    if model is None:  # the graph is the reference itself: nothing to compare it with
        return inp, ParityResult(0, 0.0, 0.0, profile.export.parity_atol)
    parity = check_parity(
        dest,
        model,
        inp.prepare(tuning.units[: max(GOLDEN_COUNT, 16)], spec),
        atol=profile.export.parity_atol,
        grey_input=inp.kind == "unit",
        spec=spec,
    )
    return inp, parity


def _calibration_inputs(
    calib: CalibrationSet | None, manifest: Manifest, spec: Preprocess, inp: InputSpec
) -> np.ndarray | None:
    """The calibration images as graph inputs (None without a calibration set)."""
    from edgevcf.dataset import load_split

    if calib is None:
        return None
    cal = load_split(calib.manifest(manifest.root), None, spec, desc="preprocess calibration")
    if len(cal) < calib.recipe.min_samples:
        raise CalibrationError(
            f"only {len(cal)} calibration images were readable "
            f"(recipe {calib.recipe.name!r} needs {calib.recipe.min_samples})"
        )
    return inp.prepare(cal.units, spec)


def _quality_gate(ctx: ExportContext, tuning: SplitData) -> dict[str, Any] | None:
    """Fit the input quality gate (:mod:`edgevcf.quality`) and write it into the bundle.

    In scope is what this model was trained on: the training split (up to
    :data:`GATE_MAX_IMAGES`, evenly spaced), against generated out-of-scope images; the
    thresholds come from the tuning split. Without a usable training split the bundle gets
    no learned gate, and a note says so (the runtime then applies its rules only).
    """
    from edgevcf.errors import ConfigError
    from edgevcf.quality import GATE_FILE
    from edgevcf.quality_fit import fit_for_bundle

    try:
        train = ctx.training_split()
    except DataError as exc:
        ctx.notes.append(f"no learned quality gate: {exc.message}")
        return None
    keep = np.arange(len(train))
    if len(keep) > GATE_MAX_IMAGES:
        keep = np.unique(np.linspace(0, len(keep) - 1, GATE_MAX_IMAGES).round().astype(int))
    try:
        with progress.step(f"{ctx.target.name}: fit the input quality gate"):
            gate, record = fit_for_bundle(
                train.units[keep],
                [train.studies[i].patient_id for i in keep],
                tuning.units,
                ctx.spec,
            )
    except ConfigError as exc:
        ctx.notes.append(f"no learned quality gate: {exc.message}")
        return None
    gate.save(ctx.work / GATE_FILE)
    record["split"] = GATE_SPLIT
    record["tuning_split"] = TUNING_SPLIT
    return record


def _calibration(profile: TargetProfile, manifest: Manifest) -> CalibrationSet | None:
    if profile.quantize.precision not in ("int8", "auto"):
        return None
    recipe = load_recipe(profile.quantize.calibration)
    return select(
        manifest, recipe, samples=profile.quantize.samples or None, evaluated=EVALUATED_SPLITS
    )


def _golden(ctx: ExportContext, artifacts: list[Artifact]) -> Golden:
    """A few real tuning inputs, both classes when possible, with FP32 and expected logits.

    ``verify`` demands every golden decision be the same on the cart, and another CPU's
    kernels move an INT8 logit by up to its tolerance; so the inputs are those furthest from
    kernels move an INT8 logit by up to its tolerance: the inputs are the first tuning cases
    at least :data:`GOLDEN_MIN_MARGIN` logits from the threshold (by FP32 and by every
    measured artefact), then the furthest of the rest — never a borderline case.
    """
    margin = logit_margin(ctx.fp32_probs, ctx.threshold)
    for probs in ctx.extra.get("tuning_probs", {}).values():
        margin = np.minimum(margin, logit_margin(probs, ctx.threshold))
    idx = golden_indices(ctx.tuning_labels, margin)
    x = ctx.tuning_inputs[idx]
    from edgevcf.onnx_export import onnx_logits

    fp32 = onnx_logits(ctx.fp32_onnx, x)
    expected = {a.name: ctx.run(a, x) for a in ctx.target.measured_artifacts(artifacts)}
    return Golden(x.astype(np.float32), fp32.astype(np.float32), expected)


def _manifest(
    ctx: ExportContext,
    meta: Any,
    artifacts: list[Artifact],
    measured: dict[str, ArtifactMetrics],
    parity: ParityResult,
    calib: CalibrationSet | None,
    checkpoint: str | os.PathLike[str],
    fp32_size: int,
    quality_gate: dict[str, Any] | None,
    tuning_patients: list[str],
) -> dict[str, Any]:
    """The new bundle's manifest (schema: :func:`edgevcf.bundle.new_manifest`)."""
    from edgevcf.backends import backend_class

    labels = ctx.tuning_labels
    both = 0 < int(labels.sum()) < len(labels)
    versions = {"edgevcf": __version__, "python": platform.python_version()}
    versions.update(ctx.target.versions())
    for rt in {a.runtime for a in artifacts}:
        # an engine absent here (tensorrt) is recorded when the engine is built
        with contextlib.suppress(Exception):
            versions.update(backend_class(rt).versions())
    ckpt = {
        "file": Path(checkpoint).name,
        "arch": meta.arch,
        "data_fingerprint": meta.data_fingerprint,
        "threshold_method": meta.threshold_method,
        "sha256": sha256_file(Path(checkpoint)),
    }
    if meta.train_config.get("data_source"):  # what the model was trained on (model card)
        ckpt["data_source"] = meta.train_config["data_source"]
    imported = meta.train_config.get("imported_from")
    if imported:  # where a network brought from elsewhere came from
        ckpt["imported_from"] = imported
    # The salt is derived from what the bundle is made of, so the same inputs give the same
    # manifest byte for byte (a re-export keeps its signed content); the export's duration is
    # in its result, not in the bundle, for the same reason.
    made_of = f"{ckpt['sha256']}:{calib.fingerprint if calib else '-'}"
    salt = hashlib.sha256(f"patients:{made_of}:{ctx.profile.name}".encode()).hexdigest()
    return new_manifest(
        target=ctx.target.name,
        profile=ctx.profile.to_dict(),
        backbone=meta.arch,
        input=ctx.input,
        preprocess=ctx.spec,
        threshold=ctx.threshold,
        threshold_method=meta.threshold_method,
        artifacts=artifacts,
        metrics={
            "split": TUNING_SPLIT,
            "n": len(labels),
            "n_pos": int(labels.sum()),
            "reference": _REFERENCE_RUNTIME[ctx.model_kind],
            "fp32_auc": (metrics.auc_ci(labels, ctx.fp32_probs).to_dict() if both else None),
            "fp32_at_threshold": (
                metrics.binary_metrics(labels, ctx.fp32_probs, ctx.threshold).to_dict()
                if both
                else None
            ),
            "artifacts": {k: dataclasses.asdict(v) for k, v in measured.items()},
            "parity": parity.to_dict(),
            "fp32_onnx_bytes": fp32_size,
        },
        calibration=calib.summary() if calib else None,
        checkpoint=ckpt,
        golden_atol=GOLDEN_ATOL,
        tuning_split=TUNING_SPLIT,
        target_facts={k: v for k, v in ctx.extra.items() if k != "tuning_probs"},
        notes=ctx.notes,
        versions=versions,
        quality_gate=quality_gate,
        patients=patient_record(
            [s.patient_id for s in calib.studies] if calib else [],
            tuning_patients,
            salt=salt[:32],
        ),
        threshold_envelope=_envelope(ctx) if both else None,
    )


def _envelope(ctx: ExportContext) -> dict[str, Any]:
    """Where a site may move the threshold later (see :func:`metrics.threshold_envelope`)."""
    margin = ctx.profile.tolerance.site_threshold_margin
    low, high = metrics.threshold_envelope(ctx.tuning_labels, ctx.fp32_probs, ctx.threshold, margin)
    return {
        "low": low,
        "high": high,
        "margin": margin,
        "rule": f"FP32 sensitivity and specificity on the {TUNING_SPLIT} split each within "
        f"{margin:g} of those at the exported threshold",
        "source": "export",
    }
