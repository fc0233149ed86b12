"""Quantisation-aware training: the strongest INT8 fallback, when no post-training INT8 passes.

NNCF's QAT for PyTorch: ``nncf.quantize`` places the same fake quantisers OpenVINO's INT8 uses
(initialised on the calibration set, as PTQ is), then the network is fine-tuned a few epochs so
its weights learn to live with them. The loss is distillation from the FP32 network's own logits
(mean squared difference), not the labels: the gate judges the INT8 model against FP32 at the
FP32 threshold, and fine-tuning on the labels moves the logits' offset (measured, MobileNetV3-L,
3 epochs with the class-balanced loss: 18 of 295 tuning decisions flipped, all to positive).
Fine-tuning uses the *training* split only (the images calibration comes from), with the
training recipe's augmentation and batch-norm statistics frozen (small batches would otherwise
move them); the tuning split only judges the result, through the export's gate, and the test
split stays for ``edgevcf bench``.
The fine-tuned network is converted to an OpenVINO IR with its FakeQuantize ops, so it is
measured and shipped like any other INT8 IR.

Export-time only (torch, NNCF): the cart never imports it.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf import progress
from edgevcf.deps import require
from edgevcf.errors import QuantizationError

if TYPE_CHECKING:
    from torch import nn

    from edgevcf.data.preprocess import InputSpec, Preprocess

log = logging.getLogger(__name__)

BATCH = 32


def finetune(
    model: nn.Module,
    spec: Preprocess,
    inp: InputSpec,
    train_units: np.ndarray,
    calib_inputs: np.ndarray,
    *,
    epochs: int,
    lr: float,
    seed: int = 0,
    nncf_options: dict[str, Any] | None = None,
) -> nn.Module:
    """The checkpoint's network with NNCF fake quantisation, fine-tuned ``epochs`` on the
    training images to reproduce the FP32 network's logits (in eval mode, taking the deployed
    graph's input: ``inp``)."""
    import torch

    nncf = require("nncf", "quantisation-aware training")
    from edgevcf.models import normalise
    from edgevcf.onnx_export import grey_wrapper
    from edgevcf.train import augment

    if len(train_units) < 2:
        raise QuantizationError("quantisation-aware training needs training images")
    teacher = copy.deepcopy(model).float().eval()
    if inp.kind == "unit":
        teacher = grey_wrapper(teacher, spec)
    torch.manual_seed(seed)
    calib = [torch.from_numpy(calib_inputs[i : i + 8]) for i in range(0, len(calib_inputs), 8)]
    try:
        with (
            progress.step("qat: nncf.quantize (fake quantisers)"),
            progress.captured_stdout("nncf"),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            q = nncf.quantize(copy.deepcopy(teacher), nncf.Dataset(calib), **(nncf_options or {}))
    except Exception as exc:
        msg = f"nncf.quantize (torch) failed: {type(exc).__name__}: {exc}"
        raise QuantizationError(msg) from exc
    units = torch.from_numpy(np.asarray(train_units, dtype=np.float32))
    opt = torch.optim.AdamW([p for p in q.parameters() if p.requires_grad], lr=lr,
                            weight_decay=0.0)  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(units) / BATCH)
    step = 0

    def graph_input(x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1) if inp.kind == "unit" else normalise(x, spec)

    for epoch in range(epochs):
        q.train()
        for m in q.modules():  # frozen batch-norm statistics: small batches would move them
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm | torch.nn.Dropout):
                m.eval()
        order = torch.randperm(len(units), generator=gen)
        batches = range(0, len(order), BATCH)
        running = 0.0
        for i in progress.track(batches, desc=f"qat: epoch {epoch + 1}/{epochs}", unit="batch"):
            idx = order[i : i + BATCH]
            if len(idx) < 2:
                continue
            for g in opt.param_groups:  # cosine decay over the fine-tuning
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / max(1, steps)))
            x = graph_input(augment(units[idx], gen))
            with torch.no_grad():
                target = teacher(x)
            loss = torch.mean((q(x) - target) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += float(loss.detach()) * len(idx)
            step += 1
        log.info("qat epoch %d/%d: distillation MSE %.5f", epoch + 1, epochs, running / len(units))
    return q.eval()


def to_openvino(q: nn.Module, example: np.ndarray, batch: int) -> Any:
    """The fine-tuned network as an OpenVINO model (its FakeQuantize ops included), with the
    export's batch dimension (0: dynamic)."""
    import torch

    ov = require("openvino", "the QAT model's IR")
    x = torch.from_numpy(np.ascontiguousarray(example[:1], dtype=np.float32))
    # torch.jit's trace check warns about NNCF's quantisers; the IR is measured on its own
    with (
        torch.no_grad(),
        progress.captured_stdout("openvino convert_model"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        model = ov.convert_model(q, example_input=x)
    model.reshape({model.input(0): ov.PartialShape([batch or -1, *example.shape[1:]])})
    return model
