"""Model zoo (name -> torchvision builder with a one-logit head) and safe checkpoints.

A checkpoint is one ``.safetensors`` file: the weights, plus JSON metadata in its header that
says everything a later stage needs without guessing — architecture, the preprocessing spec the
model was trained with, the decision threshold and how it was chosen, validation metrics, the
training config, the data fingerprint, the seed and package versions. Loading never unpickles.

torch and torchvision are imported inside the functions, so ``import edgevcf.models`` is light.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import re
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf.architecture import (
    TIMM,
    Structure,
    apply_structure,
    build_timm,
    fold_two_classes,
    last_linear,
    timm_facts,
)
from edgevcf.data.preprocess import Preprocess
from edgevcf.deps import require
from edgevcf.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

CHECKPOINT_FORMAT = 1
_META_KEY = "edgevcf"


@dataclass(frozen=True)
class ModelSpec:
    """A zoo entry: the torchvision builder and what the network expects."""

    name: str
    input_size: int
    head: str  # dotted path of the final nn.Linear
    study: bool = False  # one of the three backbones of the originating study
    small_head_init: bool = False  # torchvision's head init assumes 1,000 classes (see build)

    def default_preprocess(self, **overrides: Any) -> Preprocess:
        """ImageNet-style 3 channels at the entry's input size, cropped to the exposed field."""
        return Preprocess(
            **{"input_size": self.input_size, "channels": 3, "crop_to_field": True, **overrides}
        )


ZOO: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("efficientnet_b0", 224, "classifier.1", study=True, small_head_init=True),
        ModelSpec("mobilenet_v3_large", 224, "classifier.3", study=True),
        ModelSpec("mnasnet1_0", 224, "classifier.1", study=True, small_head_init=True),
        ModelSpec("mobilenet_v3_small", 224, "classifier.3"),
        ModelSpec("mobilenet_v2", 224, "classifier.1"),
        ModelSpec("mnasnet0_5", 224, "classifier.1", small_head_init=True),
        ModelSpec("efficientnet_b1", 240, "classifier.1", small_head_init=True),
        ModelSpec("efficientnet_b2", 260, "classifier.1", small_head_init=True),
        ModelSpec("efficientnet_b3", 300, "classifier.1", small_head_init=True),
    )
}
STUDY_BACKBONES = tuple(n for n, s in ZOO.items() if s.study)


def get_spec(name: str) -> ModelSpec:
    """The zoo entry for ``name`` (or timm's ``timm:NAME``), or a ConfigError listing the valid
    names."""
    if name.startswith(TIMM):
        size, head = timm_facts(name[len(TIMM) :])
        # timm scales its head's init by fan-out too (EfficientNet, MobileNetV3, MnasNet)
        return ModelSpec(name, size, head, small_head_init=True)
    try:
        return ZOO[name]
    except KeyError:
        raise ConfigError(
            f"unknown architecture {name!r}",
            hint=f"choose one of: {', '.join(ZOO)}, or timm:NAME (a timm model)",
        ) from None


def build_model(name: str, structure: Structure | None = None) -> nn.Module:
    """A randomly initialised network with one output logit (P(fresh) = sigmoid(logit)), with
    the declared changes (:mod:`edgevcf.architecture`) where ``structure`` has any."""
    spec = get_spec(name)
    structure = structure or Structure()
    require("torch", "building a model")
    if name.startswith(TIMM):
        model = build_timm(name[len(TIMM) :], structure.in_channels)
        structure = dataclasses.replace(structure, in_channels=3)  # timm built the stem
    else:
        tvm = require("torchvision", "building a model").models
        model = getattr(tvm, spec.name)(weights=None, num_classes=1)
    apply_structure(model, structure, spec.head)
    if spec.small_head_init or structure.head:
        _small_head_init(model, last_linear(structure, spec.head))
    return model


def _small_head_init(model: nn.Module, head: str) -> None:
    """Re-initialise the one-logit head as N(0, 0.01), bias 0 (what MobileNet does already).

    torchvision scales the head's init by its fan-out, which assumes 1,000 classes: with one
    output, EfficientNet draws weights from U(-1, 1) and MnasNet from U(-1.7, 1.7), so the first
    logits are in the tens and training diverges (measured: MnasNet1.0 train loss 5.9 after
    one epoch, validation AUC 0.52, where MobileNetV3-L had 0.75 and 0.59).
    """
    import torch

    layer = model.get_submodule(head)
    assert isinstance(layer, torch.nn.Linear)
    with torch.no_grad():
        layer.weight.normal_(0.0, 0.01)
        if layer.bias is not None:
            layer.bias.zero_()


@dataclass
class CheckpointMeta:
    """Everything recorded next to the weights."""

    arch: str
    preprocess: Preprocess
    threshold: float = 0.5
    threshold_method: str = "default 0.5 (not tuned)"
    metrics: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str | None = None
    seed: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    source: str = "edgevcf train"
    format: int = CHECKPOINT_FORMAT
    #: Changes to the architecture's stock layout (:class:`edgevcf.architecture.Structure`), or
    #: for a TorchScript / torch.export reference its declared input layout and output kind.
    structure: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Canonical JSON form stored in the safetensors header."""
        d = asdict(self)
        d["preprocess"] = self.preprocess.to_dict()
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CheckpointMeta:
        """Parse :meth:`to_json` output (refusing newer formats)."""
        d = json.loads(text)
        if int(d.get("format", 0)) > CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"checkpoint format {d['format']} is newer than this edgevcf supports "
                f"({CHECKPOINT_FORMAT})",
                hint="upgrade edgevcf",
            )
        d["preprocess"] = Preprocess.from_dict(d["preprocess"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def package_versions() -> dict[str, str]:
    """Versions of what produced a checkpoint (for reproducibility)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("edgevcf", "torch", "torchvision", "numpy", "safetensors"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, meta: CheckpointMeta) -> Path:
    """Write weights + metadata atomically (a ``.part`` file renamed into place)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not meta.versions:
        meta.versions = package_versions()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".part")
    save_file(state, str(tmp), metadata={_META_KEY: meta.to_json()})
    os.replace(tmp, path)
    return path


def read_checkpoint_meta(path: str | os.PathLike[str]) -> CheckpointMeta:
    """Only the metadata (fast: reads the header, not the weights)."""
    from safetensors import safe_open

    path = _checkpoint_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types on damaged files
        raise CheckpointError(
            f"{path}: not a readable safetensors checkpoint ({exc})",
            hint="the file may be truncated; re-copy it or re-run training",
        ) from exc
    if _META_KEY not in header:
        raise CheckpointError(
            f"{path}: safetensors file without edgevcf metadata",
            hint="import plain weights with `edgevcf import-model FILE --arch NAME --out "
            "REF.safetensors`",
        )
    try:
        return CheckpointMeta.from_json(header[_META_KEY])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint metadata ({exc})") from exc


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[nn.Module, CheckpointMeta]:
    """Build the recorded architecture and load the weights (eval mode, CPU)."""
    from safetensors.torch import load_file

    path = _checkpoint_file(path)
    meta = read_checkpoint_meta(path)
    model = build_model(meta.arch, Structure.from_dict(meta.structure))
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(
            f"{path}: cannot read the weights ({exc})", hint="re-copy the file"
        ) from exc
    _load_state(model, state, path, meta.arch)
    model.eval()
    return model, meta


def _checkpoint_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / "model.safetensors"
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path, arch: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:4])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:4])})")
        if shapes:
            parts.append(f"{len(shapes)} with other shapes (e.g. {'; '.join(shapes[:3])})")
        raise CheckpointError(
            f"{path}: weights do not fit {arch}: " + "; ".join(parts),
            hint="check --arch (the zoo: " + ", ".join(ZOO) + "; or timm:NAME); a changed head "
            "or stem is declared in model.toml ([head] layers, [input] channels), or import the "
            "network as TorchScript",
        )
    # Module versions (e.g. MNASNet's) live in state-dict metadata, which safetensors and key
    # renaming drop; the freshly built architecture knows its own.
    fitted = OrderedDict(state)
    fitted._metadata = getattr(own, "_metadata", None)  # type: ignore[attr-defined]
    model.load_state_dict(fitted, strict=True)


def import_state_dict(
    src: str | os.PathLike[str],
    arch: str,
    *,
    preprocess: Preprocess | None = None,
    structure: Structure | None = None,
    positive_index: int = 1,
) -> tuple[nn.Module, CheckpointMeta]:
    """Load a user's state dict (``.pt``/``.pth``/``.safetensors``) safely into ``arch`` (a zoo
    name or ``timm:NAME``) with the declared ``structure``.

    Accepts a bare state dict or one nested under ``state_dict``/``model``; strips the
    ``module.`` prefixes DataParallel/DDP add; folds a two-class last layer into one exact logit
    (``logit = z_fresh - z_other``, :func:`~edgevcf.architecture.fold_two_classes`).
    """
    torch = require("torch", "importing a checkpoint")
    spec = get_spec(arch)
    structure = structure or Structure()
    path = Path(src)
    if not path.is_file():
        raise CheckpointError(f"file not found: {path}")
    obj = _read_state(path, torch)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
        raise CheckpointError(f"{path}: does not contain a state dict of tensors")
    state = {re.sub(r"^(module\.)+", "", k): v for k, v in obj.items()}
    state = fold_two_classes(state, last_linear(structure, spec.head), positive_index, str(path))
    model = build_model(arch, structure)
    _load_state(model, state, path, arch)
    model.eval()
    meta = CheckpointMeta(
        arch=arch,
        preprocess=preprocess
        or spec.default_preprocess(channels=structure.in_channels, **_grey(structure.in_channels)),
        source=f"imported from {path.name}",
        threshold_method="default 0.5 (imported; not tuned)",
        structure=structure.to_dict(),
    )
    return model, meta


def _grey(channels: int) -> dict[str, Any]:
    """ImageNet's mean/std averaged over the channels for a one-channel stem."""
    return {"mean": (0.449,), "std": (0.226,)} if channels == 1 else {}


def _read_state(path: Path, torch: Any) -> Any:
    """A state dict from ``torch.save`` (weights only: no pickled code runs) or safetensors."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncation, disallowed globals
        raise CheckpointError(
            f"{path}: cannot load as a PyTorch state dict ({type(exc).__name__}: {exc})",
            hint="save with torch.save(model.state_dict(), path); whole pickled models are "
            "refused (export TorchScript or torch.export .pt2 instead)",
        ) from exc


# ------------------------------------------------------------------ inference (the FP32 reference)
def normalise(units: torch.Tensor, spec: Preprocess) -> torch.Tensor:
    """Torch twin of :meth:`Preprocess.normalise` (same formula) for (N, S, S) batches."""
    import torch

    mean = torch.tensor(spec.mean, dtype=torch.float32, device=units.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32, device=units.device).view(1, -1, 1, 1)
    return (units.unsqueeze(1) - mean) / std


def predict(
    model: nn.Module,
    units: np.ndarray,
    spec: Preprocess,
    *,
    batch_size: int = 64,
    device: str = "cpu",
) -> np.ndarray:
    """P(fresh) for preprocessed (N, S, S) unit images, PyTorch eager (the FP32 reference)."""
    import torch

    model.eval()
    out = []
    dev = torch.device(device)
    with torch.inference_mode():
        for i in range(0, len(units), batch_size):
            x = torch.from_numpy(np.asarray(units[i : i + batch_size], dtype=np.float32)).to(dev)
            out.append(torch.sigmoid(model(normalise(x, spec))).float().cpu().numpy().reshape(-1))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
