"""TorchScript and ``torch.export`` (``.pt2``) networks as FP32 references.

A team that changed its network beyond any declaration (a custom head, an attention block, a
preprocessing layer inside) can still bring it: as TorchScript (``torch.jit.trace``/``script``)
or as a ``torch.export`` program. Both are opened only with torch's own loaders
(``torch.jit.load``, ``torch.export.load``): no pickled Python runs, no user module is imported.

The reference is the program as it came, re-saved with edgevcf's metadata as an extra file
(:data:`EXTRA`, the same JSON as a checkpoint's header), so that reading the metadata needs no
torch. The declared input layout and output kind (``model.toml``) are applied around it at load
time by :func:`adapt` — NHWC permuted, two logits / softmax / probability turned into the one
logit of "fresh" exactly as for ONNX (:mod:`edgevcf.intake.onnx_graph`) — and kept in the
metadata's ``structure`` so that every later stage adapts it the same way.

What needs the eager PyTorch module is said, not faked: quantisation-aware training fine-tunes
eager modules only (refused for both); litert-torch re-exports a ``.pt2`` program but cannot
export TorchScript (no ``.tflite`` then, with the reason).
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevcf.deps import require
from edgevcf.errors import CheckpointError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgevcf.models import CheckpointMeta

EXTRA = "edgevcf_reference.json"
TORCHSCRIPT, EXPORTED = "torchscript", "pt2"
PROGRAM_KINDS = (TORCHSCRIPT, EXPORTED)


def sniff(path: str | os.PathLike[str]) -> str:
    """What ``path`` holds: ``onnx``, ``safetensors``, ``torchscript``, ``pt2`` or ``state_dict``
    (a ``torch.save`` file), from its content where the suffix does not say.

    Raises:
        CheckpointError: the file is missing or none of these.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"file not found: {p}")
    if p.suffix.lower() == ".onnx":
        return "onnx"
    if p.suffix.lower() == ".safetensors":
        return "safetensors"
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
        if any("/code/" in n for n in names) and any(n.endswith("/constants.pkl") for n in names):
            return TORCHSCRIPT
        if any(n.endswith("/archive_format") for n in names):
            return EXPORTED
        if any(n.endswith("/data.pkl") for n in names):
            return "state_dict"
    elif p.read_bytes()[:2] == b"\x80\x02":  # torch.save's legacy (pre-zip) pickle format
        return "state_dict"
    raise CheckpointError(
        f"{p}: not a model file edgevcf reads",
        hint="ONNX (.onnx), TorchScript (torch.jit.save), a torch.export program (.pt2), or a "
        "state dict (torch.save(model.state_dict()) or .safetensors) with --arch",
    )


def read_meta(path: str | os.PathLike[str]) -> CheckpointMeta | None:
    """The metadata of a TorchScript / ``.pt2`` reference (None: a program without it)."""
    from edgevcf.models import CheckpointMeta

    with zipfile.ZipFile(path) as z:
        name = next((n for n in z.namelist() if n.endswith(f"/extra/{EXTRA}")), None)
        if name is None:
            return None
        return CheckpointMeta.from_json(z.read(name).decode("utf-8"))


def read_program(path: str | os.PathLike[str], kind: str) -> Any:
    """The program in ``path`` as torch's own loader returns it (a ScriptModule, or an
    ExportedProgram): what :func:`module_of` runs and :func:`save_program` writes back."""
    torch = require("torch", "loading a TorchScript or torch.export program")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit's deprecation notice
            if kind == TORCHSCRIPT:
                return torch.jit.load(str(path), map_location="cpu")
            return torch.export.load(str(path))
    except Exception as exc:  # torch raises RuntimeError and its own types on bad archives
        raise CheckpointError(
            f"{path}: cannot load as {kind} ({type(exc).__name__}: {str(exc)[:300]})",
            hint="write it with torch.jit.save / torch.export.save from the same or an older torch",
        ) from None


def module_of(program: Any, kind: str) -> nn.Module:
    """The runnable network of a :func:`read_program` result (eval mode, CPU)."""
    if kind == TORCHSCRIPT:
        return program.eval()
    return program.module()


def load_program(path: str | os.PathLike[str], kind: str) -> nn.Module:
    """The network in ``path`` with torch's own loader (eval mode, CPU)."""
    return module_of(read_program(path, kind), kind)


def adapt(inner: nn.Module, structure: dict[str, Any]) -> nn.Module:
    """``inner`` taking edgevcf's NCHW input and returning one logit of "fresh" (N, 1).

    ``structure``: ``layout`` (NCHW/NHWC), ``output`` (logit, probability, two_logits,
    softmax), ``positive_index``, ``batch`` (1: the program takes one image at a time).
    """
    import torch

    layout = structure.get("layout", "NCHW")
    kind = structure.get("output", "logit")
    pos = int(structure.get("positive_index", 1))
    one_at_a_time = int(structure.get("batch", 0)) == 1

    class Adapted(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if layout == "NHWC":
                x = x.permute(0, 2, 3, 1)
            if one_at_a_time and x.shape[0] > 1:
                y = torch.cat([self._raw(x[i : i + 1]) for i in range(x.shape[0])])
            else:
                y = self._raw(x)
            return to_logit(y, kind, pos)

        def train(self, mode: bool = True) -> Adapted:
            # the program's own mode is fixed (an exported graph refuses train()/eval())
            self.training = mode
            return self

        def _raw(self, x: torch.Tensor) -> torch.Tensor:
            y = self.net(x)
            if not isinstance(y, torch.Tensor):
                raise CheckpointError("the network returns more than one tensor")
            return y.reshape(y.shape[0], -1)

    return Adapted().eval()


def to_logit(y: torch.Tensor, kind: str, pos: int) -> torch.Tensor:
    """(N, 1 or 2) outputs of ``kind`` as the logit of "fresh" (as the ONNX normalisation)."""
    import torch

    if kind == "logit":
        return y[:, :1]
    if kind == "probability":
        p = y[:, :1]
        return torch.log(p) - torch.log1p(-p)
    a, b = y[:, pos : pos + 1], y[:, 1 - pos : 2 - pos]
    if kind == "two_logits":
        return a - b
    return torch.log(a) - torch.log(b)  # softmax


def save_program(
    program: Any, kind: str, out: str | os.PathLike[str], meta: CheckpointMeta
) -> None:
    """Save a :func:`read_program` result to ``out`` with ``meta`` as its extra file
    (atomically)."""
    torch = require("torch", "writing a TorchScript or torch.export reference")
    out = Path(out)
    tmp = out.with_name(out.name + ".part")
    extra = {EXTRA: meta.to_json()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if kind == TORCHSCRIPT:
            torch.jit.save(program, str(tmp), extra)
        else:
            torch.export.save(program, str(tmp), extra_files=extra)
    os.replace(tmp, out)


def write_program(
    src: str | os.PathLike[str], kind: str, out: str | os.PathLike[str], meta: CheckpointMeta
) -> None:
    """Save the program in ``src`` to ``out`` with ``meta`` as its extra file (atomically)."""
    save_program(read_program(src, kind), kind, out, meta)


__all__ = [
    "EXPORTED",
    "EXTRA",
    "PROGRAM_KINDS",
    "TORCHSCRIPT",
    "adapt",
    "load_program",
    "module_of",
    "read_meta",
    "read_program",
    "save_program",
    "sniff",
    "to_logit",
    "write_program",
]
