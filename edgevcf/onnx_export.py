"""PyTorch -> ONNX, shared by every target, with a parity check on real images.

Every target starts from the same FP32 ONNX graph, so a difference between targets is the
target's doing. The graph is exported with the TorchScript exporter (``dynamo=False``): on torch
2.14 the dynamo exporter silently writes opset 18 when 17 is asked and takes ten times longer
(DESIGN.md, facts). The written opset is checked, not assumed.

Parity is measured on *real preprocessed images*, never random tensors: random inputs exercise
none of the ranges the model sees and miss real divergences.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf.data.preprocess import INPUT_NAME, OUTPUT_NAME, InputSpec, Preprocess
from edgevcf.deps import require
from edgevcf.errors import ExportError, OutputError, ParityError
from edgevcf.metrics import sigmoid

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParityResult:
    """ONNX Runtime vs PyTorch on the same real inputs."""

    n: int
    max_abs_logit_diff: float
    max_abs_prob_diff: float
    atol: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return self.__dict__.copy()


def grey_wrapper(model: nn.Module, spec: Preprocess) -> nn.Module:
    """A module taking one-channel unit images: broadcast replication + mean/std, then ``model``.

    Exact (the same float operations as :meth:`Preprocess.normalise`), and the input is a third
    of the bytes. Folding mean/std into the first convolution's weights is *not* exact: that
    convolution zero-pads the normalised image, and no single-channel pad value reproduces three
    channels padded with zeros after different mean/std, so the affine step stays a graph op.
    """
    import torch

    class GreyInput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model
            self.register_buffer("mean", torch.tensor(spec.mean).reshape(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(spec.std).reshape(1, -1, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net((x - self.mean) / self.std)  # type: ignore[operator]

    return GreyInput().eval()


def export_onnx(
    model: nn.Module,
    spec: Preprocess,
    out: str | os.PathLike[str],
    *,
    opset: int = 17,
    batch: int = 1,
    grey_input: bool = False,
) -> InputSpec:
    """Export ``model`` (eval mode, one logit) to a static-shape ONNX file.

    Args:
        model: The FP32 network.
        spec: Its preprocessing (input size, channels, mean/std).
        out: Destination ``.onnx`` path.
        opset: ONNX opset (the file is checked to really have it).
        batch: Static batch size; 0 makes only the batch dimension dynamic.
        grey_input: Take one-channel unit images instead of normalised C-channel ones.

    Returns:
        The exported graph's input spec.

    Raises:
        ExportError: the exporter fails or writes another opset.
    """
    torch = require("torch", "ONNX export")
    onnx = require("onnx", "ONNX export")
    out = Path(out)
    model = model.eval()
    net = grey_wrapper(model, spec) if grey_input else model
    channels = 1 if grey_input else spec.channels
    example = torch.zeros(max(batch, 1), channels, spec.input_size, spec.input_size)
    dynamic = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if batch == 0 else None
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter is chosen on purpose (see the module docstring).
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            if any(isinstance(m, torch.jit.ScriptModule) for m in net.modules()):
                # an imported TorchScript program inside our wrappers: the exporter traces a
                # module only when no part of it is scripted, so trace the whole first
                net = torch.jit.trace(net, example, check_trace=False)
            torch.onnx.export(
                net,
                (example,),
                str(out),
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as exc:  # the exporter raises many unrelated types
        if isinstance(exc, OSError) and exc.errno in OutputError.ERRNOS:  # e.g. disk full
            raise OutputError.from_os_error("the ONNX model", exc) from exc
        raise ExportError(
            f"torch.onnx.export failed: {type(exc).__name__}: {exc}",
            hint="is the model a torchvision backbone from the zoo?",
        ) from exc
    written = {o.domain or "ai.onnx": o.version for o in onnx.load(str(out)).opset_import}
    if written.get("ai.onnx") != opset:
        raise ExportError(f"asked for opset {opset}, the exporter wrote {written.get('ai.onnx')}")
    return InputSpec(
        shape=(batch, channels, spec.input_size, spec.input_size),
        kind="unit" if grey_input else "normalised",
    )


def check_onnx_file(path: str | os.PathLike[str], spec: Preprocess) -> InputSpec:
    """Accept a user's FP32 ONNX: loadable, valid, one input matching ``spec``, static H and W.

    Raises:
        ExportError: unreadable / invalid file, or an input that does not match the spec.
    """
    onnx = require("onnx", "reading an ONNX model")
    try:
        m = onnx.load(str(path))
        onnx.checker.check_model(m)
    except Exception as exc:  # protobuf DecodeError, ValidationError, OSError
        raise ExportError(
            f"{path} is not a valid ONNX model: {type(exc).__name__}: {exc}"[:400],
            hint="re-export it, or let edgevcf export from the checkpoint",
        ) from None
    inits = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ExportError(f"{path}: expected one input, found {len(inputs)}")
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in _dims(inputs[0])]
    want = [spec.input_size, spec.input_size]
    if len(dims) != 4 or dims[2:] != want or dims[1] not in (1, spec.channels):
        raise ExportError(
            f"{path}: input shape {dims} does not match the checkpoint's preprocessing "
            f"(N, {spec.channels}, {spec.input_size}, {spec.input_size})",
            hint="export with a static height and width equal to the training input size",
        )
    kind = "unit" if dims[1] == 1 and spec.channels != 1 else "normalised"
    return InputSpec(shape=tuple(dims), kind=kind, name=inputs[0].name)


def _dims(value_info: Any) -> list[Any]:
    return list(value_info.type.tensor_type.shape.dim)


def onnx_logits(path: str | os.PathLike[str], x: np.ndarray, threads: int = 0) -> np.ndarray:
    """Logits of an ONNX file under ONNX Runtime's CPU provider, batch by batch if static."""
    from edgevcf.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(Path(path), threads=threads).run_all(x)


def check_parity(
    onnx_path: str | os.PathLike[str],
    model: nn.Module,
    x: np.ndarray,
    *,
    atol: float = 1e-3,
    grey_input: bool = False,
    spec: Preprocess | None = None,
) -> ParityResult:
    """Compare ONNX Runtime with PyTorch on real inputs ``x`` (already in the graph's form).

    Raises:
        ParityError: outputs of a different shape, or logits differing by more than ``atol``.
    """
    torch = require("torch", "the parity check")
    net = model.eval()
    if grey_input:
        assert spec is not None, "grey_input needs the preprocess spec"
        net = grey_wrapper(model, spec)
    with torch.inference_mode():
        ref = net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
    got = onnx_logits(onnx_path, x)
    if got.shape != ref.shape:
        raise ParityError(f"ONNX output shape {got.shape} != PyTorch {ref.shape}")
    diff = float(np.max(np.abs(got - ref))) if len(ref) else 0.0
    pdiff = float(np.max(np.abs(sigmoid(got) - sigmoid(ref)))) if len(ref) else 0.0
    if not np.isfinite(diff) or diff > atol:
        raise ParityError(
            f"ONNX logits differ from PyTorch by up to {diff:.3g} (tolerance {atol:g}) "
            f"on {len(ref)} real images",
            hint="an exporter or opset problem; try another opset in the profile",
        )
    return ParityResult(len(ref), diff, pdiff, atol)
