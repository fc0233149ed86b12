"""The FP32 reference a network brought from elsewhere becomes: one loader for every kind.

An edgevcf checkpoint (``.safetensors``) is a torch network with its metadata; an **ONNX
reference** (``.onnx``) is a foreign graph normalised by :func:`import_onnx` (NCHW ``input`` ->
``logit``) carrying the same metadata (preprocessing, threshold and how it was chosen,
provenance: the source file's name and sha256, the declaration) in its ``metadata_props``. It
runs in ONNX Runtime wherever the toolkit needs the FP32 reference; nothing of it is unpickled
and no user code runs (``onnx.load`` only).

A reference's threshold is never left at 0.5 from nowhere: :func:`tune_threshold` chooses it on a
manifest's validation split as training does (Youden), with the AUC and its CI recorded, and
refuses a reference whose AUC there is near chance — the likely cause being a wrong declared
preprocessing (scaling, mean/std, channel order), which graph shapes cannot reveal.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf.data.preprocess import Preprocess
from edgevcf.deps import require
from edgevcf.errors import CheckpointError, DataError
from edgevcf.hashing import sha256_file
from edgevcf.intake.onnx_graph import normalise
from edgevcf.intake.spec import ModelSpecFile

if TYPE_CHECKING:
    from torch import nn

    from edgevcf.data.manifest import Manifest
    from edgevcf.models import CheckpointMeta

META_KEY = "edgevcf_reference"
UNTUNED = "default 0.5 (not tuned)"
#: A reference whose validation AUC's CI reaches below this is refused (near chance).
MIN_AUC = 0.6


def is_onnx_reference(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an ONNX reference (by its suffix)."""
    return Path(path).suffix.lower() == ".onnx"


def is_untuned(meta: CheckpointMeta) -> bool:
    """Whether the threshold is 0.5 from nowhere (an import not yet checked on a val split)."""
    return meta.threshold_method.startswith("default 0.5")


def reference_kind(meta: CheckpointMeta) -> str:
    """``eager`` (a torch module edgevcf builds: QAT and litert-torch work), ``torchscript``,
    ``pt2`` or ``onnx`` — what the reference can do beyond scoring."""
    from edgevcf.intake.torch_program import PROGRAM_KINDS

    prefix = meta.arch.partition(":")[0] if ":" in meta.arch else ""
    if prefix == "onnx" or prefix in PROGRAM_KINDS:
        return prefix
    return "eager"


def load_reference(
    path: str | os.PathLike[str],
) -> tuple[nn.Module | None, CheckpointMeta, Path | None]:
    """``(torch module or None, metadata, ONNX file or None)`` for any reference: an edgevcf
    checkpoint, an ONNX reference, or a TorchScript / ``.pt2`` one (adapted to one logit).

    Raises:
        CheckpointError: unreadable, or a model file that is not an edgevcf reference.
    """
    from edgevcf.intake import torch_program as tp
    from edgevcf.models import load_checkpoint

    p = Path(path)
    if p.is_dir() or p.suffix.lower() == ".safetensors":
        model, meta = load_checkpoint(path)
        return model, meta, None
    meta = read_reference_meta(p)
    kind = reference_kind(meta)
    if kind == "onnx":
        return None, meta, p
    return tp.adapt(tp.load_program(p, kind), meta.structure), meta, None


def read_reference_meta(path: str | os.PathLike[str]) -> CheckpointMeta:
    """Any reference's metadata, without loading its network."""
    from edgevcf.intake import torch_program as tp
    from edgevcf.models import read_checkpoint_meta

    p = Path(path)
    if p.is_dir() or p.suffix.lower() == ".safetensors":
        return read_checkpoint_meta(p)
    kind = tp.sniff(p)
    if kind == "onnx":
        return read_onnx_meta(p)
    meta = tp.read_meta(p) if kind in tp.PROGRAM_KINDS else None
    if meta is None:
        raise CheckpointError(
            f"{p}: a {kind.replace('_', ' ')} file, but not an edgevcf reference",
            hint=f"import it first: edgevcf import-model {p.name} [--arch NAME] --spec model.toml "
            "--out REF",
        )
    return meta


def write_reference_meta(
    path: str | os.PathLike[str], meta: CheckpointMeta, model: nn.Module | None
) -> None:
    """Store ``meta`` (e.g. a threshold tuned by ``--check``) in the reference at ``path``."""
    from edgevcf.intake import torch_program as tp
    from edgevcf.models import save_checkpoint

    kind = reference_kind(meta)
    if kind == "onnx":
        write_onnx_meta(path, meta)
    elif kind in tp.PROGRAM_KINDS:
        tp.write_program(path, kind, path, meta)
    else:
        assert model is not None
        save_checkpoint(path, model, meta)


def declared_preprocess(spec: ModelSpecFile) -> Preprocess:
    """edgevcf's preprocessing for what ``spec`` declares (mean/std in [0, 1] units)."""
    i = spec.input
    mean, std = i.unit_mean_std()
    if len(mean) == 1:  # one declared value applies to each channel
        mean = mean * i.channels
    if len(std) == 1:
        std = std * i.channels
    return Preprocess(input_size=i.size, channels=i.channels, mean=mean, std=std,
                      crop_to_field=i.crop_to_field, clahe=i.clahe)  # fmt: skip


def provenance(src: str | os.PathLike[str], kind: str, spec: ModelSpecFile | None,
               **extra: Any) -> dict[str, Any]:  # fmt: skip
    """Where a reference came from: the source file's name and sha256, its kind, the
    declaration it was imported with."""
    out: dict[str, Any] = {"file": Path(src).name, "sha256": sha256_file(Path(src)), "kind": kind,
                           **extra}  # fmt: skip
    if spec is not None:
        out["declared"] = {"input": dict(spec.input.__dict__), "output": dict(spec.output.__dict__)}
        if spec.head.layers:
            out["declared"]["head"] = dict(spec.head.__dict__)
    return out


def read_onnx_meta(path: str | os.PathLike[str]) -> CheckpointMeta:
    """An ONNX reference's metadata."""
    onnx = require("onnx", "reading an ONNX reference")
    from edgevcf.models import CheckpointMeta

    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError, OSError
        raise CheckpointError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    props = {p.key: p.value for p in m.metadata_props}
    if META_KEY not in props:
        raise CheckpointError(
            f"{path}: an ONNX file, but not an edgevcf reference",
            hint=f"import it first: edgevcf import-model {Path(path).name} --spec model.toml "
            "--out ref.onnx",
        )
    return CheckpointMeta.from_json(props[META_KEY])


def write_onnx_meta(path: str | os.PathLike[str], meta: CheckpointMeta) -> None:
    """Store ``meta`` in the ONNX file at ``path`` (replacing what was there)."""
    onnx = require("onnx", "writing an ONNX reference")
    m = onnx.load(str(path))
    kept = [p for p in m.metadata_props if p.key != META_KEY]
    del m.metadata_props[:]
    m.metadata_props.extend(kept)
    entry = m.metadata_props.add()
    entry.key, entry.value = META_KEY, meta.to_json()
    tmp = Path(str(path) + ".part")
    onnx.save(m, str(tmp))
    os.replace(tmp, path)


def import_onnx(
    src: str | os.PathLike[str], spec: ModelSpecFile, out: str | os.PathLike[str]
) -> CheckpointMeta:
    """Normalise the foreign ONNX ``src`` as ``spec`` declares into the reference ``out``.

    Raises:
        ConfigError: the declaration contradicts the graph.
        ExportError: the file is not a usable ONNX classifier.
    """
    from edgevcf.models import CheckpointMeta, package_versions

    facts = normalise(src, out, spec)
    meta = CheckpointMeta(
        arch=f"onnx:{Path(src).stem}",
        preprocess=declared_preprocess(spec),
        threshold=0.5,
        threshold_method=UNTUNED,
        train_config={"imported_from": provenance(src, "onnx", spec, opset=facts.opset)},
        versions=package_versions(),
        source=f"edgevcf import-model {Path(src).name}",
    )
    write_onnx_meta(out, meta)
    return meta


def reference_probs(
    model: nn.Module | None, onnx_file: Path | None, units: np.ndarray, spec: Preprocess
) -> np.ndarray:
    """The FP32 reference's P(fresh) on unit images, in the reference's own runtime."""
    from edgevcf.metrics import sigmoid

    if model is not None:
        from edgevcf.models import predict

        return predict(model, units, spec)
    from edgevcf.data.preprocess import InputSpec
    from edgevcf.onnx_export import onnx_logits

    assert onnx_file is not None
    x = InputSpec(shape=(0, spec.channels, spec.input_size, spec.input_size)).prepare(units, spec)
    return np.asarray(sigmoid(onnx_logits(onnx_file, x)).reshape(-1), dtype=np.float64)


def tune_threshold(
    meta: CheckpointMeta,
    model: nn.Module | None,
    onnx_file: Path | None,
    manifest: Manifest,
    split: str = "val",
) -> dict[str, Any]:
    """Choose ``meta``'s threshold on ``split`` of ``manifest`` (Youden, as training does) and
    record how; the split's AUC with its CI.

    Raises:
        DataError: the split lacks a class, or the reference's AUC there is near chance (the
            declared preprocessing is the likely cause).
    """
    from edgevcf import metrics
    from edgevcf.dataset import load_split

    data = load_split(manifest, split, meta.preprocess, desc=f"preprocess {split}")
    if not 0 < data.n_pos < len(data):
        raise DataError(f"the {split!r} split needs films of both classes to tune a threshold")
    probs = reference_probs(model, onnx_file, data.units, meta.preprocess)
    auc = metrics.auc_ci(data.labels, probs)
    if auc.ci_high < MIN_AUC:
        raise DataError(
            f"the reference's AUC on {split} is {auc.auc:.3f} (95 % CI {auc.ci_low:.3f}-"
            f"{auc.ci_high:.3f}): near chance",
            hint="check the declared preprocessing (scale, mean/std, channels, layout): a wrong "
            "one leaves shapes intact and scores meaningless",
        )
    meta.threshold = float(metrics.youden_threshold(data.labels, probs))
    meta.threshold_method = f"youden on {split} split ({len(data)} films), tuned at import"
    meta.metrics = {**meta.metrics, "reference_val": {"n": len(data), "auc": auc.to_dict()}}
    return {"n": len(data), "auc": auc.to_dict(), "threshold": meta.threshold}


__all__ = [
    "META_KEY",
    "UNTUNED",
    "declared_preprocess",
    "import_onnx",
    "is_onnx_reference",
    "is_untuned",
    "load_reference",
    "provenance",
    "read_onnx_meta",
    "read_reference_meta",
    "reference_kind",
    "reference_probs",
    "tune_threshold",
    "write_onnx_meta",
    "write_reference_meta",
]
