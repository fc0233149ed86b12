"""The one preprocessing of edgevcf: a frozen spec and its numpy implementation.

Training and every runtime call :meth:`Preprocess.apply`, and the spec is stored in every
checkpoint and bundle, so a deployed model sees its inputs exactly as it was trained on them.
It needs numpy and Pillow only (a cart has no torch, no OpenCV).

Order, and why (version 2; version 1 had no step -1):
-1. a film at least 6 times the input size is box-reduced by an integer factor in its stored
   values, by the reader, before the Modality LUT and VOI — the first step of the antialiased
   resize anyway, so the grey-scale pipeline runs on a ninth or less of the pixels;
0. optional crop to the exposed (collimated) field — shutters carry no information and, on a
   35x43 cm detector, take a third of the pixels a 224-px network gets;
1. aspect-preserving resize (Pillow, antialiased) — first, so the rest works on ~50 k pixels
   instead of ~7 M (a 2,300x2,900 radiograph preprocesses in a few ms);
2. robust intensity normalisation: clip at two percentiles of the image content and scale to
   [0, 1] — detectors, exposures and VOI windows differ between sites;
3. optional CLAHE — local contrast, as radiologists window bone;
4. pad to the square input size with 0 (the low end of the normalised range);
5. replicate to 3 channels when the backbone expects 3, then mean/std.

:class:`InputSpec` says what a deployed graph takes (its shape, and whether step 5 happens in
numpy or inside the graph): cart and exporter share it, so it lives here, not in the exporter.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from edgevcf.errors import ConfigError, DataError

if TYPE_CHECKING:
    from edgevcf.data.io import ImageMeta

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
#: Grey equivalents of the ImageNet statistics (their channel means).
IMAGENET_MEAN_GREY = (0.449,)
IMAGENET_STD_GREY = (0.226,)

Resample = Literal["bilinear", "bicubic", "lanczos", "box"]
#: 1: every stored pixel goes through the grey-scale pipeline, then the resize. 2: films at least
#: 6 times the input size are first box-reduced in their stored values by the reader (the first
#: step of the antialiased resize, moved before the Modality LUT and VOI), so the pipeline runs
#: on a ninth or less of the pixels (a 5-megapixel film: read + preprocess ~10 -> ~5 ms).
SPEC_VERSION = 2


@dataclass(frozen=True)
class Preprocess:
    """How a radiograph becomes a network input. JSON round-trips exactly.

    Attributes:
        input_size: Side of the square network input in pixels.
        channels: 1 or 3; with 3 the grey image is replicated (ImageNet-pretrained stems).
        clip_low_pct: Lower percentile mapped to 0 (robust to collimator edges and dead pixels).
        clip_high_pct: Upper percentile mapped to 1 (robust to markers and saturated pixels).
        clahe: Apply contrast-limited adaptive histogram equalisation after normalisation.
        clahe_clip_limit: CLAHE clip limit, in multiples of the uniform bin height.
        clahe_tiles: CLAHE tiles per side.
        resample: Pillow resampling filter for the (antialiased) resize.
        crop_to_field: Crop flat collimator-shutter borders before resizing
            (:func:`exposed_field`; conservative: never crops to under a quarter of the image).
        mean: Per-channel mean subtracted after scaling to [0, 1].
        std: Per-channel standard deviation divided by.
        version: Spec version (:data:`SPEC_VERSION`): what :meth:`read` does. Old bundles keep
            the version they were trained with, and its behaviour exactly.
    """

    input_size: int = 224
    channels: int = 3
    clip_low_pct: float = 0.5
    clip_high_pct: float = 99.5
    clahe: bool = False
    clahe_clip_limit: float = 2.0
    clahe_tiles: int = 8
    resample: Resample = "bilinear"
    crop_to_field: bool = False
    mean: tuple[float, ...] = IMAGENET_MEAN_RGB
    std: tuple[float, ...] = IMAGENET_STD_RGB
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        # Specs arrive from JSON written by people: check types before values, so a wrong type
        # is a ConfigError naming the field, never a TypeError deep inside apply().
        problems = _type_problems(self)
        if problems:
            raise ConfigError("invalid preprocessing spec: " + "; ".join(problems))
        # Tuples survive JSON as lists; normalise so equality and hashing work.
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if not all(
            math.isfinite(x)
            for x in (
                *self.mean,
                *self.std,
                self.clip_low_pct,
                self.clip_high_pct,
                self.clahe_clip_limit,
            )
        ):
            problems.append("mean, std, percentiles and clahe_clip_limit must be finite numbers")
        if not 16 <= self.input_size <= 4096:
            problems.append(f"input_size must be in 16..4096, got {self.input_size}")
        if self.channels not in (1, 3):
            problems.append(f"channels must be 1 or 3, got {self.channels}")
        if not 0.0 <= self.clip_low_pct < self.clip_high_pct <= 100.0:
            problems.append(
                f"need 0 <= clip_low_pct < clip_high_pct <= 100, got "
                f"{self.clip_low_pct}, {self.clip_high_pct}"
            )
        if self.clahe_clip_limit < 1.0 or not 1 <= self.clahe_tiles <= 64:
            problems.append("clahe_clip_limit must be >= 1 and clahe_tiles in 1..64")
        if self.resample not in _PIL_FILTERS:
            problems.append(
                f"resample must be one of {sorted(_PIL_FILTERS)}, got {self.resample!r}"
            )
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            problems.append(f"mean and std need {self.channels} values each")
        if any(s <= 0 for s in self.std):
            problems.append("std values must be positive")
        if self.version > SPEC_VERSION:
            problems.append(
                f"spec version {self.version} is newer than this edgevcf ({SPEC_VERSION})"
            )
        elif self.version < 1:
            problems.append(f"spec version must be >= 1, got {self.version}")
        if problems:
            raise ConfigError("invalid preprocessing spec: " + "; ".join(problems))

    @classmethod
    def for_channels(cls, channels: int, **kwargs: Any) -> Preprocess:
        """A spec with ImageNet statistics matching ``channels`` (1 or 3)."""
        mean, std = (
            (IMAGENET_MEAN_GREY, IMAGENET_STD_GREY)
            if channels == 1
            else (
                IMAGENET_MEAN_RGB,
                IMAGENET_STD_RGB,
            )
        )
        return cls(
            channels=channels, mean=kwargs.pop("mean", mean), std=kwargs.pop("std", std), **kwargs
        )

    # ---- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (tuples become lists)."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        """Inverse of :meth:`to_dict`; unknown keys are refused rather than ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown preprocessing key(s): {', '.join(unknown)}",
                hint=f"valid keys: {', '.join(sorted(known))}",
            )
        return cls(**{"version": 1, **data})  # a spec without a version predates version 2

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), stable across runs for fingerprints."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Preprocess:
        """Parse :meth:`to_json` output."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"preprocessing spec is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("preprocessing spec must be a JSON object")
        return cls.from_dict(data)

    # ---- the implementation --------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of one preprocessed input (C, H, W)."""
        return (self.channels, self.input_size, self.input_size)

    def read(self, path: str | os.PathLike[str]) -> tuple[np.ndarray, ImageMeta]:
        """Read an image file as this spec's version does (:data:`SPEC_VERSION`): version 2 lets
        the reader box-reduce a large film in its stored values first
        (:func:`edgevcf.data.io.read_image`'s ``shrink_for``); version 1 reads every pixel.

        Training, export, the runtime and bench all read through here, so a model sees its
        inputs as it was trained on them.
        """
        from edgevcf.data.io import read_image

        return read_image(path, shrink_for=self.input_size if self.version >= 2 else None)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Preprocess one 2-D image (any float or int dtype) to a float32 (C, S, S) array.

        Raises:
            DataError: The image is not 2-D, is empty or holds NaN/inf.
        """
        return self.normalise(self.to_unit(image))

    def to_unit(self, image: np.ndarray) -> np.ndarray:
        """Steps 1-4: resize, percentile-normalise, CLAHE, pad -> (S, S) float32 in [0, 1].

        Training caches this form and augments it before :meth:`normalise`; runtimes call
        :meth:`apply`, which is exactly ``normalise(to_unit(image))``.
        """
        img = np.asarray(image)
        if img.ndim != 2 or img.size == 0:
            raise DataError(f"expected a non-empty 2-D greyscale image, got shape {img.shape}")
        img = img.astype(np.float32, copy=False)
        if not np.isfinite(img).all():
            raise DataError("image contains NaN or infinite values")
        if self.crop_to_field:
            r0, r1, c0, c1 = exposed_field(img)
            img = img[r0:r1, c0:c1]
        small = resize_keep_aspect(img, self.input_size, self.resample)
        norm = percentile_normalise(small, self.clip_low_pct, self.clip_high_pct)
        if self.clahe:
            norm = clahe(norm, clip_limit=self.clahe_clip_limit, tiles=self.clahe_tiles)
        return pad_to_square(norm, self.input_size)

    def normalise(self, unit: np.ndarray) -> np.ndarray:
        """Step 5: replicate to ``channels`` and apply mean/std; (S, S) or (N, S, S) input."""
        unit = np.asarray(unit, dtype=np.float32)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(-1, 1, 1)
        return ((unit[..., None, :, :] - mean) / std).astype(np.float32, copy=False)

    def apply_batch(self, images: list[np.ndarray]) -> np.ndarray:
        """Preprocess several images into one (N, C, S, S) float32 batch."""
        return (
            np.stack([self.apply(im) for im in images])
            if images
            else np.empty((0, *self.shape), dtype=np.float32)
        )


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _type_problems(spec: Preprocess) -> list[str]:
    """Type errors of a spec (JSON gives strings, nulls and floats where ints belong)."""
    problems = []
    for name in ("input_size", "channels", "clahe_tiles", "version"):
        if not _is_int(getattr(spec, name)):
            problems.append(f"{name} must be an integer, got {getattr(spec, name)!r}")
    for name in ("clip_low_pct", "clip_high_pct", "clahe_clip_limit"):
        if not _is_number(getattr(spec, name)):
            problems.append(f"{name} must be a number, got {getattr(spec, name)!r}")
    for name in ("clahe", "crop_to_field"):
        if not isinstance(getattr(spec, name), bool):
            problems.append(f"{name} must be true or false, got {getattr(spec, name)!r}")
    if not isinstance(spec.resample, str):
        problems.append(f"resample must be a string, got {spec.resample!r}")
    for name in ("mean", "std"):
        value = getattr(spec, name)
        if not isinstance(value, list | tuple) or not all(_is_number(x) for x in value):
            problems.append(f"{name} must be a list of numbers, got {value!r}")
    return problems


def _pil_filters() -> dict[str, int]:
    from PIL import Image

    return {
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS,
        "box": Image.Resampling.BOX,
    }


_PIL_FILTERS = _pil_filters()


def resize_keep_aspect(image: np.ndarray, size: int, resample: str = "bilinear") -> np.ndarray:
    """Resize so the longer side is ``size``, keeping the aspect ratio (antialiased).

    Pillow's resampling widens its kernel when shrinking, so a 13x reduction does not alias
    trabecular texture or noise into the small image.
    """
    from PIL import Image

    h, w = image.shape
    scale = size / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) == (h, w):
        return image.astype(np.float32, copy=True)
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    out = pil.resize((new_w, new_h), resample=_PIL_FILTERS[resample], reducing_gap=3.0)
    return np.asarray(out, dtype=np.float32)


#: Side of the thumbnail the field detector looks at (fast: ~2 ms on a 7-megapixel film).
_FIELD_PROBE = 256
#: A border row/column is shutter when its spread is below this fraction of a busy row's.
_FIELD_FLAT = 0.12


def exposed_field(image: np.ndarray) -> tuple[int, int, int, int]:
    """Bounds ``(r0, r1, c0, c1)`` of the exposed field inside flat collimator borders.

    Shutters are flat (only noise and a little scatter) bands at the edges. On a thumbnail, rows
    and columns are trimmed from each side while their standard deviation stays under a small
    fraction of the 90th percentile over all rows/columns (shutters may be most of them).
    Returns the whole image when nothing is flat, or when what remains would be under a
    quarter of the area (then the guess is not trusted).
    """
    h, w = image.shape
    small = resize_keep_aspect(image, min(_FIELD_PROBE, max(h, w)), "box")
    sh, sw = small.shape

    def bounds(spread: np.ndarray) -> tuple[int, int]:
        ref = float(np.percentile(spread, 90))
        if ref <= 0:
            return 0, len(spread)
        busy = np.nonzero(spread > _FIELD_FLAT * ref)[0]
        if busy.size == 0:
            return 0, len(spread)
        return int(busy[0]), int(busy[-1]) + 1

    r0, r1 = bounds(small.std(axis=1))
    c0, c1 = bounds(small.std(axis=0))
    if (r1 - r0) * (c1 - c0) < 0.25 * sh * sw:
        return 0, h, 0, w
    scale_r, scale_c = h / sh, w / sw
    # Map back to full resolution, keeping one thumbnail pixel of margin inside the shutters.
    return (
        max(0, int((r0 + 1) * scale_r)) if r0 else 0,
        min(h, int((r1 - 1) * scale_r)) if r1 < sh else h,
        max(0, int((c0 + 1) * scale_c)) if c0 else 0,
        min(w, int((c1 - 1) * scale_c)) if c1 < sw else w,
    )


def percentile_normalise(image: np.ndarray, low_pct: float, high_pct: float) -> np.ndarray:
    """Map the [low, high] percentiles of ``image`` to [0, 1] and clip; constant -> zeros."""
    lo, hi = np.percentile(image, [low_pct, high_pct])
    if not hi > lo:
        return np.zeros_like(image, dtype=np.float32)
    out = (image - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def pad_to_square(image: np.ndarray, size: int, value: float = 0.0) -> np.ndarray:
    """Centre ``image`` (h, w <= size) on a ``size`` x ``size`` canvas filled with ``value``."""
    h, w = image.shape
    canvas = np.full((size, size), value, dtype=np.float32)
    top, left = (size - h) // 2, (size - w) // 2
    canvas[top : top + h, left : left + w] = image
    return canvas


def clahe(
    image: np.ndarray, clip_limit: float = 2.0, tiles: int = 8, bins: int = 256
) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of a [0, 1] image, in numpy.

    Per tile: histogram, clip at ``clip_limit`` times the mean bin height, redistribute the
    excess evenly, cumulative sum as the mapping; pixels blend the mappings of the four nearest
    tile centres bilinearly (Zuiderveld 1994), so there are no tile seams.
    """
    h, w = image.shape
    tiles_y, tiles_x = min(tiles, h), min(tiles, w)
    th, tw = -(-h // tiles_y), -(-w // tiles_x)  # ceil
    pad_h, pad_w = th * tiles_y - h, tw * tiles_x - w
    q = np.clip((image * (bins - 1) + 0.5).astype(np.int64), 0, bins - 1)
    qp = np.pad(q, ((0, pad_h), (0, pad_w)), mode="reflect") if (pad_h or pad_w) else q
    # Histogram of every tile in one bincount: index = tile_id * bins + level.
    tile_id = (np.arange(qp.shape[0]) // th)[:, None] * tiles_x + (np.arange(qp.shape[1]) // tw)[
        None, :
    ]
    hist = np.bincount((tile_id * bins + qp).ravel(), minlength=tiles_y * tiles_x * bins)
    hist = hist.reshape(tiles_y * tiles_x, bins).astype(np.float64)
    limit = max(1.0, clip_limit * th * tw / bins)
    excess = np.maximum(hist - limit, 0.0).sum(axis=1, keepdims=True)
    hist = np.minimum(hist, limit) + excess / bins
    cdf = np.cumsum(hist, axis=1)
    lut = (cdf - cdf[:, :1]) / np.maximum(cdf[:, -1:] - cdf[:, :1], 1e-12)
    lut = lut.reshape(tiles_y, tiles_x, bins)

    # Bilinear blend between tile centres.
    fy = (np.arange(h) + 0.5) / th - 0.5
    fx = (np.arange(w) + 0.5) / tw - 0.5
    y0 = np.clip(np.floor(fy).astype(np.int64), 0, tiles_y - 1)
    x0 = np.clip(np.floor(fx).astype(np.int64), 0, tiles_x - 1)
    y1, x1 = np.minimum(y0 + 1, tiles_y - 1), np.minimum(x0 + 1, tiles_x - 1)
    wy = np.clip(fy - y0, 0.0, 1.0)[:, None]
    wx = np.clip(fx - x0, 0.0, 1.0)[None, :]
    Y0, Y1, X0, X1 = y0[:, None], y1[:, None], x0[None, :], x1[None, :]
    top = lut[Y0, X0, q] * (1 - wx) + lut[Y0, X1, q] * wx
    bottom = lut[Y1, X0, q] * (1 - wx) + lut[Y1, X1, q] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


# ------------------------------------------------------------------ the deployed graph's input
INPUT_NAME = "input"
OUTPUT_NAME = "logit"


@dataclass(frozen=True)
class InputSpec:
    """What the deployed graph takes, and how unit images (N, S, S) in [0, 1] become that.

    ``kind`` is ``"normalised"`` (C channels after mean/std, the training input) or ``"unit"``
    (one channel in [0, 1]; replication and mean/std happen inside the graph, exactly).
    ``batch`` 0 means a dynamic batch dimension (height and width are always static).
    """

    shape: tuple[int, ...]
    kind: str = "normalised"
    name: str = INPUT_NAME
    dtype: str = "float32"
    layout: str = "NCHW"

    @property
    def batch(self) -> int:
        """Static batch size, or 0 when dynamic."""
        return self.shape[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (bundle manifest)."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "kind": self.kind,
            "dtype": self.dtype,
            "layout": self.layout,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            shape=tuple(int(x) for x in d["shape"]),
            kind=str(d["kind"]),
            name=str(d.get("name", INPUT_NAME)),
            dtype=str(d.get("dtype", "float32")),
            layout=str(d.get("layout", "NCHW")),
        )

    def prepare(self, units: np.ndarray, spec: Preprocess) -> np.ndarray:
        """Unit images (N, S, S) -> the graph's float32 input (N, C, S, S)."""
        units = np.asarray(units, dtype=np.float32)
        if units.ndim == 2:
            units = units[None]
        if self.kind == "unit":
            return np.ascontiguousarray(units[:, None])
        return np.ascontiguousarray(spec.normalise(units))
