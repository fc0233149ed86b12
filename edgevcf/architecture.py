"""What a checkpoint's architecture builds beyond the zoo: timm backbones by name, and the changes
a user made to a backbone (a new head, a one-channel stem), declared rather than coded.

A network trained elsewhere often differs from the zoo's exact layout: a classifier replaced by
a small MLP, a first convolution taking the grey film as one channel, or a backbone from timm
(where many medical teams take theirs from). None of that may be unpickled or run as user code,
so the change is *described* (``[head] layers = ["linear:256", "relu", "dropout:0.3",
"linear:2"]`` in ``model.toml``; ``[input] channels = 1``) and rebuilt here from the description,
which the checkpoint's metadata keeps (:class:`Structure`), so every later stage builds the same
network again. A two-output last layer (softmax over other/fresh) becomes one exact logit.

torch, torchvision and timm are imported inside the functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgevcf.deps import require
from edgevcf.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

TIMM = "timm:"
#: The layers a declared head may have: ``linear:N``, ``dropout:P`` and these.
ACTIVATIONS = ("relu", "relu6", "hardswish", "silu", "gelu", "tanh", "elu", "leakyrelu")
_OTHER = ("batchnorm", "flatten", "identity")
_TOKEN = re.compile(r"^(linear|dropout):(.+)$")


@dataclass(frozen=True)
class Structure:
    """How a network differs from its architecture's stock layout.

    Attributes:
        head: The replacing head's layers in order (an ``nn.Sequential``, so the state dict's
            keys are ``<at>.<index>.*``); () for the stock head. The last is ``linear:1`` once
            built (a two-class last layer is folded into one logit on import).
        at: Dotted path of the module the head replaces ("" : the architecture's classifier).
        in_channels: The first convolution's input channels (1: the grey film as it is).
    """

    head: tuple[str, ...] = ()
    at: str = ""
    in_channels: int = 3

    def to_dict(self) -> dict[str, Any]:
        """JSON form kept in the checkpoint's metadata ({} for the stock layout)."""
        out: dict[str, Any] = {}
        if self.head:
            out["head"] = list(self.head)
            out["at"] = self.at
        if self.in_channels != 3:
            out["in_channels"] = self.in_channels
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Structure:
        """Inverse of :meth:`to_dict`."""
        d = d or {}
        return cls(tuple(d.get("head", ())), str(d.get("at", "")), int(d.get("in_channels", 3)))


def check_head(layers: tuple[str, ...], source: str) -> None:
    """Refuse a head description that cannot be built (before any weights are read)."""
    problems = []
    for tok in layers:
        m = _TOKEN.match(tok)
        if m and m.group(1) == "linear":
            if not m.group(2).isdigit() or int(m.group(2)) < 1:
                problems.append(f"{tok!r}: linear needs a positive output size")
        elif m:
            try:
                ok = 0.0 <= float(m.group(2)) < 1.0
            except ValueError:
                ok = False
            if not ok:
                problems.append(f"{tok!r}: dropout needs a probability in [0, 1)")
        elif tok not in ACTIVATIONS + _OTHER:
            problems.append(f"{tok!r}: unknown layer")
    linears = [t for t in layers if t.startswith("linear:")]
    if not linears:
        problems.append("the head needs a last linear layer")
    elif linears[-1] not in ("linear:1", "linear:2") or not layers[-1].startswith("linear:"):
        problems.append("the head must end in linear:1 (logit of fresh) or linear:2 (two classes)")
    if problems:
        raise ConfigError(
            f"{source}: [head] " + "; ".join(problems),
            hint="layers: linear:N, dropout:P, batchnorm, flatten, " + ", ".join(ACTIVATIONS),
        )


def timm_facts(name: str) -> tuple[int, str]:
    """``(input size, classifier path)`` of the timm model ``name`` (no network built).

    Raises:
        ConfigError: timm does not know the name.
    """
    timm = require("timm", "a timm backbone")
    if not timm.is_model(name):
        near = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        raise ConfigError(
            f"timm has no model {name!r}",
            hint=("similar: " + ", ".join(near)) if near else "see timm.list_models()",
        )
    cfg = timm.models.get_pretrained_cfg(name)
    size = int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else 224
    head = (cfg.classifier if cfg is not None else None) or "classifier"
    return size, str(head)


def build_timm(name: str, in_channels: int = 3) -> nn.Module:
    """timm's ``name`` with one output logit, randomly initialised (never downloads weights)."""
    timm = require("timm", "a timm backbone")
    return timm.create_model(name, pretrained=False, num_classes=1, in_chans=in_channels)


def apply_structure(model: nn.Module, structure: Structure, stock_head: str) -> nn.Module:
    """Rebuild ``model`` (a stock zoo network) with the declared stem and head."""
    from torch import nn

    if structure.in_channels != 3:
        _set_stem(model, structure.in_channels)
    if structure.head:
        at = head_at(structure, stock_head)
        try:
            old = model.get_submodule(at)
        except AttributeError:
            raise ConfigError(f"[head] at = {at!r}: the network has no such module") from None
        first = (
            old
            if isinstance(old, nn.Linear)
            else next((m for m in old.modules() if isinstance(m, nn.Linear)), None)
        )
        if first is None:
            raise ConfigError(f"[head] at = {at!r} holds no linear layer to take the size from")
        _set_submodule(model, at, _head(structure.head, first.in_features))
    return model


def _head(layers: tuple[str, ...], features: int) -> nn.Sequential:
    from torch import nn

    acts = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish, "silu": nn.SiLU,
            "gelu": nn.GELU, "tanh": nn.Tanh, "elu": nn.ELU, "leakyrelu": nn.LeakyReLU,
            "flatten": nn.Flatten, "identity": nn.Identity}  # fmt: skip
    mods: list[nn.Module] = []
    width = features
    for tok in layers:
        m = _TOKEN.match(tok)
        if m and m.group(1) == "linear":
            mods.append(nn.Linear(width, int(m.group(2))))
            width = int(m.group(2))
        elif m:
            mods.append(nn.Dropout(float(m.group(2))))
        elif tok == "batchnorm":
            mods.append(nn.BatchNorm1d(width))
        else:
            mods.append(acts[tok]())
    return nn.Sequential(*mods)


def _set_stem(model: nn.Module, channels: int) -> None:
    """Replace the first convolution by one taking ``channels`` inputs (otherwise the same)."""
    from torch import nn

    name, conv = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)))
    new = nn.Conv2d(channels, conv.out_channels, conv.kernel_size,  # type: ignore[arg-type]
                    conv.stride, conv.padding, conv.dilation,  # type: ignore[arg-type]
                    conv.groups, conv.bias is not None, conv.padding_mode)  # fmt: skip
    _set_submodule(model, name, new)


def _set_submodule(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def head_at(structure: Structure, stock_head: str) -> str:
    """The module a declared head replaces: as declared, else the container of the stock final
    linear layer (torchvision's ``classifier``), or that layer itself (timm's)."""
    return structure.at or stock_head.rpartition(".")[0] or stock_head


def last_linear(structure: Structure, stock_head: str) -> str:
    """Dotted path of the network's final linear layer (the logit)."""
    if not structure.head:
        return stock_head
    return f"{head_at(structure, stock_head)}.{len(structure.head) - 1}"


def fold_two_classes(
    state: dict[str, torch.Tensor], head: str, positive_index: int, source: str
) -> dict[str, torch.Tensor]:
    """``state`` with a two-output final layer ``head`` folded into one logit of fresh.

    ``logit = z_fresh - z_other`` exactly: ``sigmoid(logit) == softmax(z)[fresh]``.

    Raises:
        CheckpointError: the final layer has neither one nor two outputs.
    """
    wkey, bkey = f"{head}.weight", f"{head}.bias"
    if wkey not in state:
        return state  # the fit check names what is missing
    n = state[wkey].shape[0]
    if n == 1:
        if positive_index != 1:
            raise CheckpointError(f"{source}: one output (a logit) cannot have positive_index 0")
        return state
    if n != 2:
        raise CheckpointError(
            f"{source}: the final layer {wkey} has {n} outputs; need 1 (logit of fresh) or 2 "
            "(two classes, [output] positive_index says which is fresh)",
            hint="if the classifier was replaced, declare the new one in model.toml: [head] "
            'layers = ["linear:N", "relu", ..., "linear:2"] (docs/byo.md)',
        )
    p, o = positive_index, 1 - positive_index
    out = dict(state)
    out[wkey] = (state[wkey][p] - state[wkey][o]).unsqueeze(0)
    if bkey in state:
        out[bkey] = (state[bkey][p] - state[bkey][o]).reshape(1)
    return out


__all__ = [
    "ACTIVATIONS",
    "TIMM",
    "Structure",
    "apply_structure",
    "build_timm",
    "check_head",
    "fold_two_classes",
    "head_at",
    "last_linear",
    "timm_facts",
]
