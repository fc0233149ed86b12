"""``edgevcf import-model``: any trained classifier file in, the FP32 reference out.

One entry for every way in, chosen by what the file holds
(:func:`~edgevcf.intake.torch_program.sniff`):

=============== ============================ ===================================================
file            needs                        reference written
=============== ============================ ===================================================
ONNX            model.toml                   ``REF.onnx`` (normalised graph + metadata)
TorchScript     model.toml                   ``REF.pt`` (the program + metadata)
``.pt2``        model.toml                   ``REF.pt2`` (the program + metadata)
state dict      ``--arch`` (zoo or timm:)    ``REF.safetensors`` (an edgevcf checkpoint); a
                                             changed head in model.toml ``[head]``
=============== ============================ ===================================================

After writing, the reference is loaded back through the loader every command uses and its
logits compared with the original network's own (in the original's runtime) on the same
images (:func:`parity`): what the toolkit will call the reference is what the user brought.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf.errors import ConfigError, ExportError
from edgevcf.intake import torch_program as tp

if TYPE_CHECKING:
    from torch import nn

    from edgevcf.data.preprocess import Preprocess
    from edgevcf.intake.spec import ModelSpecFile
    from edgevcf.models import CheckpointMeta

#: ``sample(preprocess) -> (N, S, S) unit images``: real films for the parity check.
Sampler = Callable[["Preprocess"], np.ndarray]

#: The reference's suffix per kind of source.
SUFFIXES = {"onnx": (".onnx",), tp.TORCHSCRIPT: (".pt", ".ts"), tp.EXPORTED: (".pt2",),
            "state_dict": (".safetensors",), "safetensors": (".safetensors",)}  # fmt: skip
#: Largest logit difference between the reference and the original network accepted (relative
#: to the logit where it exceeds 1: float32 rounding of log-probabilities grows with them).
PARITY_ATOL = 1e-4


@dataclass
class Imported:
    """What :func:`import_model` wrote."""

    kind: str
    meta: CheckpointMeta
    model: nn.Module | None  # the torch reference (None for ONNX)
    onnx_file: Path | None  # the ONNX reference (None for torch)
    parity_max_abs: float  # reference vs original on the parity images


def spec_for(src: Path, spec_path: Path | None, kind: str) -> ModelSpecFile | None:
    """The declaration: ``--spec``, else ``SRC.toml`` beside the model; required for ONNX and
    programs (graph shapes cannot tell a scaling or which class is fresh)."""
    from edgevcf.intake.spec import load_model_spec

    beside = src.with_suffix(".toml")
    spec_path = spec_path or (beside if beside.is_file() else None)
    if spec_path is not None:
        return load_model_spec(spec_path)
    if kind in ("state_dict", "safetensors"):
        return None
    raise ConfigError(
        f"{src.name}: a{'n' if kind == 'onnx' else ''} {kind} model needs its declaration (input "
        "size, channels, layout, scaling, mean/std; output kind)",
        hint=f"write {beside.name} beside it or pass --spec model.toml (docs/byo.md)",
    )


def import_model(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    arch: str | None = None,
    spec_path: str | os.PathLike[str] | None = None,
    sample: Sampler | None = None,
) -> Imported:
    """Import ``src`` as the FP32 reference ``out`` (see the module docstring); ``sample``
    gives real films for the parity check (else 16 seeded noise images of the declared input).

    Raises:
        ConfigError: a missing or contradicted declaration, a wrong ``--out`` suffix.
        CheckpointError: an unreadable file, weights that do not fit ``arch``.
    """
    src, out = Path(src), Path(out)
    kind = tp.sniff(src)
    if kind in ("state_dict", "safetensors") and not arch:
        raise ConfigError(
            f"{src.name}: a state dict holds weights, not the network: it needs --arch",
            hint="--arch NAME (a zoo backbone) or --arch timm:NAME; or export the network as "
            "TorchScript / torch.export (.pt2) or ONNX",
        )
    if arch and kind not in ("state_dict", "safetensors"):
        raise ConfigError(f"--arch goes with a state dict; {src.name} is {kind}, its own network")
    want = SUFFIXES[kind]
    if out.suffix.lower() not in want:
        raise ConfigError(f"--out {out.name}: a {kind.replace('_', ' ')}'s reference is a "
                          f"{' or '.join(want)} file",
                          hint=f"--out {out.with_suffix(want[0]).name}")  # fmt: skip
    if out.resolve() == src.resolve():
        raise ConfigError("--out must not be the source file")
    spec = spec_for(src, Path(spec_path) if spec_path else None, kind)
    if kind == "onnx":
        from edgevcf.intake.reference import import_onnx

        assert spec is not None  # spec_for required it
        meta = import_onnx(src, spec, out)
        x = _inputs(meta.preprocess, sample)
        worst = _compare(_onnx_logits(out, x), _onnx_original(src, meta, x), out)
        return Imported(kind, meta, None, out, worst)
    if kind in tp.PROGRAM_KINDS:
        assert spec is not None
        model, meta = _import_program(src, kind, spec, out)
        original = model.get_submodule("net")  # the program as loaded, inside its adapter
        return Imported(kind, meta, model, None, parity(model, original, meta, out, sample))
    model, meta = _import_state(src, arch or "", spec)
    from edgevcf.models import save_checkpoint

    save_checkpoint(out, model, meta)
    return Imported(kind, meta, model, None, parity(model, model, meta, out, sample))


def _import_program(
    src: str | os.PathLike[str], kind: str, spec: ModelSpecFile, out: str | os.PathLike[str]
) -> tuple[nn.Module, CheckpointMeta]:
    """``src`` (TorchScript or ``.pt2``) checked against ``spec`` and saved as the reference
    ``out`` with its metadata; returns the adapted network and the metadata.

    Raises:
        ConfigError: the declaration contradicts what the program accepts or returns.
    """
    from edgevcf.intake.reference import UNTUNED, declared_preprocess, provenance
    from edgevcf.models import CheckpointMeta, package_versions

    i, o = spec.input, spec.output
    program = tp.read_program(src, kind)  # read once: probed, adapted and written back
    inner = tp.module_of(program, kind)
    structure: dict[str, Any] = {"layout": i.layout, "output": o.kind,
                                 "positive_index": o.positive_index}  # fmt: skip
    structure["batch"] = _probe(inner, spec, str(src))
    net = tp.adapt(inner, structure)
    meta = CheckpointMeta(
        arch=f"{kind}:{Path(src).stem}",
        preprocess=declared_preprocess(spec),
        threshold=0.5,
        threshold_method=UNTUNED,
        train_config={"imported_from": provenance(src, kind, spec)},
        versions=package_versions(),
        source=f"edgevcf import-model {Path(src).name}",
        structure=structure,
    )
    tp.save_program(program, kind, out, meta)
    return net, meta


def _probe(inner: nn.Module, spec: ModelSpecFile, source: str) -> int:
    """Run the program on the declared input (batch 2, else 1): 0 for any batch, 1 for one at a
    time. Refuses a declaration the program or its outputs contradict, with what to declare."""
    import torch

    i, o = spec.input, spec.output
    shape = [2, i.channels, i.size, i.size]
    if i.layout == "NHWC":
        shape = [2, i.size, i.size, i.channels]
    x = torch.rand(*shape) * 0.5
    y, batch, errors = None, 0, []
    for n in (2, 1):
        try:
            with torch.no_grad():
                y = inner(x[:n])
            batch = 0 if n == 2 else 1
            break
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    if y is None:
        raise ConfigError(
            f"{source}: the network does not take a {i.layout} input of {i.channels} x {i.size} x "
            f"{i.size} ({errors[-1]})",
            hint="declare the size, channels and layout it was traced with in [input]",
        )
    if not isinstance(y, torch.Tensor):
        raise ConfigError(f"{source}: the network returns {type(y).__name__}, not one tensor")
    width = int(y.reshape(y.shape[0], -1).shape[1])
    want = 1 if o.kind in ("logit", "probability") else 2
    if width != want:
        raise ConfigError(
            f"{source}: the network returns {width} value(s) per image; [output] kind = "
            f"{o.kind!r} means {want}",
            hint='declare kind = "two_logits" or "softmax" for 2, "logit" or "probability" for 1',
        )
    if o.kind == "softmax" and not torch.allclose(y.sum(1), torch.ones(1), atol=1e-3):
        raise ConfigError(f"{source}: the outputs do not sum to 1: not a softmax",
                          hint='declare kind = "two_logits"')  # fmt: skip
    if o.kind == "probability" and not bool(((y >= 0) & (y <= 1)).all()):
        raise ConfigError(f"{source}: outputs outside [0, 1]: not a probability",
                          hint='declare kind = "logit"')  # fmt: skip
    return batch


def _import_state(
    src: Path, arch: str, spec: ModelSpecFile | None
) -> tuple[nn.Module, CheckpointMeta]:
    """A state dict into ``arch`` with what ``spec`` declares (preprocessing, head, stem)."""
    from edgevcf.architecture import Structure
    from edgevcf.intake.reference import declared_preprocess, provenance
    from edgevcf.models import import_state_dict

    if spec is None:
        model, meta = import_state_dict(src, arch)
    else:
        i, o = spec.input, spec.output
        if i.layout != "NCHW":
            raise ConfigError(f"{spec.source}: a torch network takes NCHW; layout = "
                              f"{i.layout!r} is for ONNX or TorchScript sources")  # fmt: skip
        if o.kind == "probability":
            raise ConfigError(
                f"{spec.source}: a state dict ends in its last linear layer (logits); kind = "
                '"probability" needs the network (TorchScript, .pt2 or ONNX)',
                hint='declare kind = "logit" (one output) or "softmax" (two)',
            )
        head = spec.head.layers
        if head:  # the two-class last layer is folded into one logit on import
            head = (*head[:-1], "linear:1")
        structure = Structure(head=head, at=spec.head.at, in_channels=i.channels)
        model, meta = import_state_dict(
            src,
            arch,
            preprocess=declared_preprocess(spec),
            structure=structure,
            positive_index=o.positive_index,
        )
    meta.threshold_method = "default 0.5 (not tuned)"
    meta.source = f"edgevcf import-model {src.name}"
    meta.train_config = {"imported_from": provenance(src, "state_dict", spec, arch=arch)}
    return model, meta


def parity(
    reference: nn.Module,
    original: nn.Module,
    meta: CheckpointMeta,
    ref_path: Path,
    sample: Sampler | None = None,
) -> float:
    """Largest logit difference between the written reference (loaded back as every command
    loads it) and the original network (its own outputs turned into the logit of fresh), in
    torch, on real films from ``sample`` or seeded noise (:func:`_compare` for the limit).

    Raises:
        ExportError: above :data:`PARITY_ATOL`.
    """
    import torch

    from edgevcf.intake.reference import load_reference

    loaded, _, _ = load_reference(ref_path)
    assert loaded is not None
    x = torch.from_numpy(_inputs(meta.preprocess, sample))
    with torch.no_grad():
        got = loaded(x).numpy().reshape(-1)
        want = _original_logits(original, reference, meta, x)
    return _compare(got, want, ref_path)


def _inputs(p: Preprocess, sample: Sampler | None) -> np.ndarray:
    """(16, C, S, S) network inputs: real films when ``sample`` gives them, else seeded noise."""
    from edgevcf.data.preprocess import InputSpec

    units = sample(p)[:16] if sample is not None else None
    if units is None or len(units) == 0:
        units = np.random.default_rng(0).random((16, p.input_size, p.input_size))
    x = InputSpec(shape=(0, p.channels, p.input_size, p.input_size)).prepare(units, p)
    return np.ascontiguousarray(x, dtype=np.float32)


def _compare(got: np.ndarray, want: np.ndarray, ref_path: Path) -> float:
    """The largest difference (relative above |logit| 1: float32 rounding of log-probabilities
    grows with them; a saturated probability is +-inf in both and counts as equal)."""
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    with np.errstate(invalid="ignore"):
        err = np.where(got == want, 0.0, np.abs(got - want) / np.maximum(1.0, np.abs(want)))
    worst = float(np.max(err))
    if not np.isfinite(worst) or worst > PARITY_ATOL:
        raise ExportError(f"the written reference {ref_path.name} differs from its source by "
                          f"{worst:.3g} in logit (limit {PARITY_ATOL})")  # fmt: skip
    return worst


def _onnx_logits(path: Path, x: np.ndarray) -> np.ndarray:
    from edgevcf.onnx_export import onnx_logits

    return onnx_logits(path, x).reshape(-1)


def _onnx_original(src: Path, meta: CheckpointMeta, x: np.ndarray) -> np.ndarray:
    """The original ONNX file's own output on ``x`` (in its declared layout) as the logit of
    fresh, with the probability clamps the normalised graph applies."""
    from edgevcf.backends.onnxruntime import OnnxRuntimeBackend
    from edgevcf.intake.onnx_graph import P_RANGE

    declared = meta.train_config["imported_from"]["declared"]
    xin = x.transpose(0, 2, 3, 1) if declared["input"]["layout"] == "NHWC" else x
    raw = OnnxRuntimeBackend(src).run_all(xin).astype(np.float64)  # fixed batches in chunks
    out = declared["output"]
    kind, pos = out["kind"], int(out["positive_index"])
    if kind == "probability":
        raw = np.clip(raw, *P_RANGE)
    return _to_logit(raw, kind, pos)


def _to_logit(raw: np.ndarray, kind: str, pos: int) -> np.ndarray:
    """(N, 1|2) outputs of ``kind`` as the logit of fresh, in float64."""
    if kind == "logit":
        return raw[:, 0]
    if kind == "probability":
        return np.log(raw[:, 0]) - np.log1p(-raw[:, 0])
    if kind == "two_logits":
        return raw[:, pos] - raw[:, 1 - pos]
    with np.errstate(divide="ignore"):
        return np.log(raw[:, pos]) - np.log(raw[:, 1 - pos])


def _original_logits(original: Any, reference: Any, meta: CheckpointMeta, x: Any) -> np.ndarray:
    """The original network's logits of fresh on ``x`` (NCHW), in its own declared terms."""
    from edgevcf.intake.reference import reference_kind

    s = meta.structure
    if reference_kind(meta) == "eager":  # a state dict: the reference is the network itself
        return np.asarray(reference(x).numpy().reshape(-1), dtype=np.float64)
    xin = x.permute(0, 2, 3, 1) if s.get("layout") == "NHWC" else x
    raw = original(xin) if int(s.get("batch", 0)) != 1 else _one_by_one(original, xin)
    raw = raw.double().reshape(raw.shape[0], -1).numpy()
    with np.errstate(divide="ignore"):
        return _to_logit(raw, s.get("output", "logit"), int(s.get("positive_index", 1)))


def _one_by_one(net: Any, x: Any) -> Any:
    import torch

    return torch.cat([net(x[i : i + 1]) for i in range(x.shape[0])])


__all__ = ["PARITY_ATOL", "SUFFIXES", "Imported", "import_model", "parity", "spec_for"]
