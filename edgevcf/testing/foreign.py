"""Foreign forms of a trained network, as other teams' tools write them (tests and benchmarks).

Each function takes a trained torch network (one logit of fresh, NCHW, edgevcf's preprocessing)
and writes it the way another toolchain would — with its own layout, output kind and file
format — plus the ``model.toml`` declaring it, so the import is tested on a network that has
learned something (never on untrained weights) and its result can be compared with the original:

* :func:`keras_onnx`: NHWC input, two-class softmax, written by torch's ONNX exporter as tf2onnx
  writes a Keras classifier;
* :func:`torchscript`: ``torch.jit.trace`` of an NHWC, two-logit wrapper;
* :func:`exported_program`: ``torch.export`` of a sigmoid-probability (or logit) wrapper, batch
  fixed at 1 (torch.export's default: shapes specialised);
* :func:`changed_head_state_dict`: the zoo backbone with its classifier replaced by a wider MLP
  (``linear:1024, hardswish, dropout, linear:16, relu, linear:2``) computing the same function,
  and the first convolution taking one channel (the grey film) — a ``torch.save`` state dict.

The rewrites are exact up to float rounding except the one-channel stem, whose zero padding at
the image border sees the grey value's mean differently (a small, real change of the network).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from edgevcf.data.preprocess import Preprocess


def _toml(path: Path, spec: Preprocess, layout: str, kind: str, extra: str = "",
          channels: int | None = None, mean: Any = None, std: Any = None) -> Path:  # fmt: skip
    c = channels or spec.channels
    mean = list(spec.mean if mean is None else mean)
    std = list(spec.std if std is None else std)
    path.write_text(
        f'[input]\nsize = {spec.input_size}\nchannels = {c}\nlayout = "{layout}"\n'
        f"mean = {mean}\nstd = {std}\ncrop_to_field = {str(spec.crop_to_field).lower()}\n"
        f'[output]\nkind = "{kind}"\n{extra}'
    )
    return path


def keras_onnx(model: nn.Module, spec: Preprocess, out: Path) -> tuple[Path, Path]:
    """``out`` (.onnx) and its ``.toml``: NHWC in, softmax over (other, fresh) out."""
    import torch

    class Keras(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.net(x.permute(0, 3, 1, 2))
            return torch.softmax(torch.cat([torch.zeros_like(z), z], dim=1), dim=1)

    x = torch.zeros(1, spec.input_size, spec.input_size, spec.channels)
    torch.onnx.export(Keras().eval(), (x,), str(out), opset_version=17, dynamo=False,
                      input_names=["input_1"], output_names=["dense"],
                      dynamic_axes={"input_1": {0: "n"}, "dense": {0: "n"}})  # fmt: skip
    return out, _toml(out.with_suffix(".toml"), spec, "NHWC", "softmax")


def torchscript(model: nn.Module, spec: Preprocess, out: Path) -> tuple[Path, Path]:
    """``out`` (TorchScript) and its ``.toml``: NHWC in, two logits (fresh first) out."""
    import torch

    class TwoLogits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.net(x.permute(0, 3, 1, 2))
            return torch.cat([z / 2, -z / 2], dim=1)  # fresh - other = z

    x = torch.zeros(2, spec.input_size, spec.input_size, spec.channels)
    with torch.no_grad():
        traced = torch.jit.trace(TwoLogits().eval(), x)
    torch.jit.save(traced, str(out))
    return out, _toml(out.with_suffix(".toml"), spec, "NHWC", "two_logits",
                      "positive_index = 0\n")  # fmt: skip


def exported_program(
    model: nn.Module, spec: Preprocess, out: Path, output: str = "probability"
) -> tuple[Path, Path]:
    """``out`` (.pt2) and its ``.toml``: NCHW in, a sigmoid probability (or the ``logit``) out,
    batch fixed at 1."""
    import torch

    class Probability(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.net(x)
            return torch.sigmoid(z) if output == "probability" else z

    x = torch.zeros(1, spec.channels, spec.input_size, spec.input_size)
    torch.export.save(torch.export.export(Probability().eval(), (x,)), str(out))
    return out, _toml(out.with_suffix(".toml"), spec, "NCHW", output)


def changed_head_state_dict(
    model: nn.Module, spec: Preprocess, head: str, out: Path
) -> tuple[Path, Path]:
    """``out`` (a ``torch.save`` state dict) and its ``.toml``: the zoo backbone ``model`` (a
    torchvision MobileNetV3, classifier ``Linear, Hardswish, Dropout, Linear(1)``) with a wider
    MLP head and a one-channel stem, computing the same logit (see the module docstring)."""
    import torch

    net = copy.deepcopy(model).eval()
    old: Any = net.get_submodule(head)  # the classifier container
    first, last = old[0], old[3]
    hidden = 16
    mlp: Any = torch.nn.Sequential(
        torch.nn.Linear(first.in_features, first.out_features), torch.nn.Hardswish(),
        torch.nn.Dropout(0.2), torch.nn.Linear(first.out_features, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, 2),
    )  # fmt: skip
    with torch.no_grad():
        mlp[0].load_state_dict(first.state_dict())
        w, b = last.weight[0], last.bias[0]
        mlp[3].weight.zero_()
        mlp[3].bias.zero_()
        mlp[3].weight[0], mlp[3].bias[0] = w, b  # relu(l) - relu(-l) = l
        mlp[3].weight[1], mlp[3].bias[1] = -w, -b
        mlp[5].weight.zero_()
        mlp[5].bias.zero_()
        mlp[5].weight[1, 0], mlp[5].weight[1, 1] = 1.0, -1.0  # z1 - z0 = l
    parent, _, leaf = head.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, leaf, mlp)
    _grey_stem(net, spec)
    torch.save(net.state_dict(), str(out))
    layers = '["linear:1024", "hardswish", "dropout:0.2", "linear:16", "relu", "linear:2"]'
    layers = layers.replace("1024", str(first.out_features))
    return out, _toml(out.with_suffix(".toml"), spec, "NCHW", "softmax",
                      f"[head]\nlayers = {layers}\nat = \"{head}\"\n",
                      channels=1, mean=[0.0], std=[1.0])  # fmt: skip


def _grey_stem(net: nn.Module, spec: Preprocess) -> None:
    """The first convolution folded to one channel taking the unit grey image (mean 0, std 1):
    ``sum_c W_c (g - m_c) / s_c = (sum_c W_c / s_c) g - const``, the constant moved into the
    following batch norm's running mean (exact away from the zero-padded border)."""
    import torch

    conv_name, conv = next((n, m) for n, m in net.named_modules()
                           if isinstance(m, torch.nn.Conv2d))  # fmt: skip
    names = [n for n, _ in net.named_modules()]
    after = names.index(conv_name)
    bn = next(m for n, m in net.named_modules()
              if isinstance(m, torch.nn.BatchNorm2d) and names.index(n) > after)  # fmt: skip
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    with torch.no_grad():
        w = conv.weight / std  # (out, 3, k, k)
        const = (w * mean).sum(dim=(1, 2, 3))
        new = torch.nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride,  # type: ignore[arg-type]
                              conv.padding, bias=conv.bias is not None)  # type: ignore[arg-type]  # fmt: skip
        new.weight.copy_(w.sum(dim=1, keepdim=True))
        assert bn.running_mean is not None
        bn.running_mean += const
    parent, _, leaf = conv_name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, leaf, new)


__all__ = ["changed_head_state_dict", "exported_program", "keras_onnx", "torchscript"]
