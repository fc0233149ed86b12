"""``model.toml``: how a network trained elsewhere sees its input and what its output means.

Graph shapes tell a size and a channel count; they cannot tell a scaling, a mean/std or which
output class is "fresh". So the user declares them, once, beside the model (``FILE.toml``), read
as strictly as every settings file (unknown keys and wrong types refused)::

    [input]
    size = 224                    # the square side the network was trained at
    channels = 3                  # 1, or 3 (the grey film replicated)
    layout = "NCHW"               # or "NHWC" (Keras, TensorFlow, tf2onnx)
    scale = "unit"                # pixels in [0, 1] ("unit") or [0, 255] ("byte") before mean/std
    mean = [0.485, 0.456, 0.406]  # in the units of `scale`; [0.0] and [1.0]: none; left out:
    std = [0.229, 0.224, 0.225]   # ImageNet's (its channel average for 1 channel)
    crop_to_field = true          # cropped to the exposed field before resizing (as edgevcf
                                  # trains); false: the whole detector, padded to a square
    clahe = false                 # contrast-limited histogram equalisation before resizing

    [output]
    kind = "softmax"              # logit | probability | two_logits | softmax
    positive_index = 1            # which of two classes is "fresh"

    [head]                        # torch state dicts only: a zoo/timm backbone whose classifier
    layers = ["linear:256", "relu", "dropout:0.3", "linear:2"]   # was replaced (nn.Sequential)
    at = "classifier"             # the module it replaced (default: the stock classifier)

A one-channel first convolution is ``[input] channels = 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevcf.errors import ConfigError
from edgevcf.tomlconf import check_table, read_toml

LAYOUTS = ("NCHW", "NHWC")
#: ImageNet's mean and std for [0, 1] pixels: RGB for 3 channels, their averages for 1.
_RGB = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
IMAGENET = {3: _RGB, 1: ((0.449,), (0.226,))}
SCALES = ("unit", "byte")
#: One logit of "fresh"; one sigmoid probability; two logits (fresh - other); a two-class
#: softmax (log p_fresh - log p_other).
OUTPUT_KINDS = ("logit", "probability", "two_logits", "softmax")


@dataclass(frozen=True)
class InputDecl:
    """The declared input."""

    size: int = 224
    channels: int = 3
    layout: str = "NCHW"
    scale: str = "unit"
    mean: tuple[float, ...] = ()  # () : ImageNet's (in the units of ``scale``)
    std: tuple[float, ...] = ()
    crop_to_field: bool = True
    clahe: bool = False

    def unit_mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Mean and std for pixels in [0, 1] (edgevcf's preprocessing works in those units):
        ``(255 x - m) / s == (x - m / 255) / (s / 255)``; ImageNet's where none was given."""
        k = 255.0 if self.scale == "byte" else 1.0
        default = IMAGENET.get(self.channels, _RGB)
        mean = self.mean or tuple(v * k for v in default[0])
        std = self.std or tuple(v * k for v in default[1])
        return tuple(m / k for m in mean), tuple(s / k for s in std)


@dataclass(frozen=True)
class OutputDecl:
    """The declared output."""

    kind: str = "logit"
    positive_index: int = 1


@dataclass(frozen=True)
class HeadDecl:
    """A replaced classifier (see :mod:`edgevcf.architecture`)."""

    layers: tuple[str, ...] = ()
    at: str = ""


@dataclass(frozen=True)
class ModelSpecFile:
    """A whole ``model.toml``."""

    input: InputDecl = field(default_factory=InputDecl)
    output: OutputDecl = field(default_factory=OutputDecl)
    head: HeadDecl = field(default_factory=HeadDecl)
    source: str = "defaults"


def parse_model_spec(data: dict[str, Any], source: str) -> ModelSpecFile:
    """Check a parsed ``model.toml`` (see the module docstring).

    Raises:
        ConfigError: an unknown table or key, a wrong type, or an impossible value.
    """
    unknown = sorted(set(data) - {"input", "output", "head"})
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {', '.join(unknown)}",
                          hint="valid tables: input, output, head")  # fmt: skip
    tables: dict[str, Any] = {}
    for name, cls in (("input", InputDecl), ("output", OutputDecl), ("head", HeadDecl)):
        raw = data.get(name, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        tables[name] = check_table(cls, raw, source, name)
    spec = ModelSpecFile(input=tables["input"], output=tables["output"], head=tables["head"],
                         source=source)  # fmt: skip
    _check(spec)
    if spec.head.layers:
        from edgevcf.architecture import check_head

        check_head(spec.head.layers, source)
    return spec


def load_model_spec(path: str | Path) -> ModelSpecFile:
    """Read and check a ``model.toml``."""
    p = Path(path)
    return parse_model_spec(read_toml(p, "model spec"), str(p))


def _check(s: ModelSpecFile) -> None:
    i, o = s.input, s.output
    problems = []
    if not 16 <= i.size <= 4096:
        problems.append("[input] size must be 16..4096")
    if i.channels not in (1, 3):
        problems.append("[input] channels must be 1 or 3")
    if i.layout not in LAYOUTS:
        problems.append(f"[input] layout must be one of {', '.join(LAYOUTS)}")
    if i.scale not in SCALES:
        problems.append(f"[input] scale must be one of {', '.join(SCALES)}")
    for name, values in (("mean", i.mean), ("std", i.std)):
        if values and len(values) not in (1, i.channels):
            problems.append(f"[input] {name} needs 1 or {i.channels} values, got {len(values)}")
    if any(v <= 0 for v in i.std):
        problems.append("[input] std must be > 0")
    if o.kind not in OUTPUT_KINDS:
        problems.append(f"[output] kind must be one of {', '.join(OUTPUT_KINDS)}")
    if o.positive_index not in (0, 1):
        problems.append("[output] positive_index must be 0 or 1")
    if problems:
        raise ConfigError(f"{s.source}: " + "; ".join(problems))


__all__ = [
    "LAYOUTS",
    "OUTPUT_KINDS",
    "SCALES",
    "HeadDecl",
    "InputDecl",
    "ModelSpecFile",
    "OutputDecl",
    "load_model_spec",
    "parse_model_spec",
]
