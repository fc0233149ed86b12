"""Input quality gate: is this image a lateral thoracolumbar radiograph the model may score?

A classifier scores whatever it is given: a chest film, an AP view, a blank or inverted image
all get a P(fresh) and a decision. The gate decides first, in three stages, cheapest first:

1. **Header rules** (DICOM facts, when present): a modality that is not projection radiography,
   an implausible pixel spacing or physical field size, a 1-bit image. ViewPosition and
   BodyPartExamined are recorded as notes but never decide alone — they are often wrong.
2. **Image rules** on the decoded image: too small, a strip, nearly constant (blank), most
   pixels clipped at one end (burnt-out / washed-out).
3. **A learned check** on cheap features of the *preprocessed* image (coarse layout with its
   mirror-symmetric and asymmetric parts, intensity histogram, gradient orientations at two
   scales, row/column profiles and their periodicity, roughness, padding): a logistic
   regression fitted per bundle on the bundle's own training images (in scope) against
   generated out-of-scope images (:mod:`edgevcf.data.synth.oos`), plus a Mahalanobis distance
   to the training images that also catches kinds no generator made. Each has a threshold set
   on the tuning split so that about 1 % of in-scope images are refused there.

Why per bundle: a detector fitted on *our* synthetic films would refuse every real clinical
radiograph. The in-scope class must be the user's own training distribution.

This module is what a cart runs: the rules, the features and a fitted gate loaded from a bundle
and applied. Fitting one happens at export time and needs the out-of-scope generator (scipy), so
it lives in :mod:`edgevcf.quality_fit`, which a cart never imports.

Numpy only (a cart has no torch, no sklearn). The learned check is cheap next to a 224-px CNN:
it reuses the preprocessed image the model gets anyway and works on a 64 x 64 copy of it
(benchmarks/quality_gate.py measures both, with the rates of wrongly refused and wrongly
scored images).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf.errors import BundleError, ConfigError

if TYPE_CHECKING:
    from edgevcf.data.io import ImageMeta

#: Bumped whenever :func:`features` changes; a gate of another version is refused at load.
FEATURE_VERSION = 1
GATE_FILE = "quality_gate.npz"

# Header rules ------------------------------------------------------------------------------
#: Projection radiography (RG: film/screen radiography digitised).
RADIOGRAPHIC_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})
#: Say nothing about the content (a digitised film may be a secondary capture).
UNINFORMATIVE_MODALITIES = frozenset({"SC", "OT"})
SPACING_MM = (0.05, 1.0)
#: Physical side of the image: a thoracolumbar film is ~150-430 mm per side.
FIELD_MM = (80.0, 500.0)
# Image rules -------------------------------------------------------------------------------
MIN_SIDE_PX = 128
MAX_ASPECT = 3.0
MIN_SPREAD = 0.02  # p99.5 - p0.5 as a fraction of the value scale
MAX_CLIPPED_LOW = 0.6  # fraction of pixels at the dark end
MAX_CLIPPED_HIGH = 0.9  # at the bright end (shutters are bright: allow much)
_PROBE = 256  # raw-image rules look at a strided view about this size

_WORK = 64  # the learned check's working resolution
_ARRAYS = ("mean", "scale", "coef", "center", "precision")


@dataclass(frozen=True)
class Assessment:
    """The gate's verdict on one image.

    Attributes:
        assessable: Whether the image may be scored.
        reason: Why it was refused ("" when assessable).
        stage: Which stage refused it (``header``, ``image``, ``learned``) or ``""``.
        score: The learned out-of-scope score (logit; refused above ``threshold``), or None
            when the learned check did not run.
        threshold: The bundle's threshold on ``score``.
        distance: Mahalanobis distance to the training images (per feature), or None.
        distance_threshold: Its threshold.
        learned: Whether the learned check ran (False: header/image rules only).
        notes: Facts recorded but not trusted alone (e.g. the header's ViewPosition).
    """

    assessable: bool
    reason: str = ""
    stage: str = ""
    score: float | None = None
    threshold: float | None = None
    distance: float | None = None
    distance_threshold: float | None = None
    learned: bool = False
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


# ------------------------------------------------------------------ rules
def header_rules(meta: ImageMeta | None) -> tuple[str | None, list[str]]:
    """(refusal reason or None, notes) from the image's header facts."""
    if meta is None:
        return None, []
    notes = []
    if meta.view_position:
        notes.append(f"header ViewPosition {meta.view_position} (not trusted alone)")
    if meta.body_part:
        notes.append(f"header BodyPartExamined {meta.body_part} (not trusted alone)")
    mod = (meta.modality or "").upper()
    if mod and mod not in RADIOGRAPHIC_MODALITIES | UNINFORMATIVE_MODALITIES:
        return f"modality {mod} is not projection radiography (CR/DX)", notes
    if mod in UNINFORMATIVE_MODALITIES:
        notes.append(f"modality {mod} says nothing about the content")
    if meta.photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return f"photometric interpretation {meta.photometric} is not greyscale", notes
    if meta.bits_stored is not None and meta.bits_stored < 8:
        return f"{meta.bits_stored}-bit image: not a radiograph's grey scale", notes
    if meta.pixel_spacing_mm is not None:
        sr, sc = meta.pixel_spacing_mm
        lo, hi = SPACING_MM
        if not (lo <= sr <= hi and lo <= sc <= hi):
            return (
                f"pixel spacing {sr:g} x {sc:g} mm is implausible for a radiograph "
                f"({lo:g}-{hi:g} mm)",
                notes,
            )
        fh, fw = meta.rows * sr, meta.cols * sc
        lo, hi = FIELD_MM
        if not (lo <= min(fh, fw) and max(fh, fw) <= hi):
            return (
                f"field of view {fw:.0f} x {fh:.0f} mm does not fit a thoracolumbar film "
                f"({lo:.0f}-{hi:.0f} mm per side)",
                notes,
            )
    return None, notes


def image_rules(image: np.ndarray) -> str | None:
    """Refusal reason from the decoded image itself, or None. Cheap on a 7-megapixel film."""
    img = np.asarray(image)
    if img.ndim != 2:
        return f"not a 2-D greyscale image (shape {img.shape})"
    h, w = img.shape
    if min(h, w) < MIN_SIDE_PX:
        return f"image too small ({h} x {w} px, need >= {MIN_SIDE_PX} per side)"
    if max(h, w) / min(h, w) > MAX_ASPECT:
        return f"aspect ratio {max(h, w) / min(h, w):.1f}:1 is a strip, not a film"
    k = max(1, math.ceil(max(h, w) / _PROBE))
    sub = np.asarray(img[::k, ::k], dtype=np.float32)
    if not np.isfinite(sub).all():
        return "image contains NaN or infinite values"
    lo, hi = (float(v) for v in np.percentile(sub, [0.5, 99.5]))
    mn, mx = float(sub.min()), float(sub.max())
    scale = 1.0 if (mn >= 0.0 and mx <= 1.0) else max(abs(mn), abs(mx), 1e-12)
    if hi - lo < MIN_SPREAD * scale:
        return "nearly constant image (blank, unexposed or fully saturated)"
    tol = 0.005 * (mx - mn)
    low = float(np.mean(sub <= mn + tol))
    high = float(np.mean(sub >= mx - tol))
    if low > MAX_CLIPPED_LOW:
        return f"{low:.0%} of pixels clipped at the dark end (over-exposed or burnt out)"
    if high > MAX_CLIPPED_HIGH:
        return f"{high:.0%} of pixels clipped at the bright end (under-exposed or washed out)"
    return None


# ------------------------------------------------------------------ features
def _resize(img: np.ndarray, n: int) -> np.ndarray:
    """Area-average a square image to n x n, exactly mirror-symmetric.

    Pillow's box filter rounds its support, so on its own a mirrored film would come out
    shifted by a fraction of a pixel and score differently; averaging it with the mirror of the
    mirrored image's resize removes that (two ~50 µs resizes; no BLAS, which can stall on a busy
    machine's thread pool).
    """
    s = img.shape[0]
    if s == n:
        return img
    if s % n == 0:
        k = s // n
        return img.reshape(n, k, n, k).mean(axis=(1, 3))
    from PIL import Image

    def box(x: np.ndarray) -> np.ndarray:
        pil = Image.fromarray(np.ascontiguousarray(x, dtype=np.float32), mode="F")
        return np.asarray(pil.resize((n, n), Image.Resampling.BOX), dtype=np.float32)

    return (box(img) + box(img[:, ::-1])[:, ::-1]) * np.float32(0.5)


def _orientations(img: np.ndarray) -> tuple[np.ndarray, float]:
    """Magnitude-weighted histogram of unsigned gradient orientation, folded so that a mirror
    image gives the same 5 values (0, ±22.5, ±45, ±67.5, 90 degrees); and the mean magnitude."""
    gy = img[2:, 1:-1] - img[:-2, 1:-1]
    gx = img[1:-1, 2:] - img[1:-1, :-2]
    mag = np.hypot(gx, gy)
    theta = np.mod(np.arctan2(gy, gx), np.pi)
    bins = np.floor(theta / (np.pi / 8) + 0.5).astype(np.int64) % 8
    counts = np.bincount(bins.ravel(), weights=mag.ravel(), minlength=8)
    hist = counts / max(float(counts.sum()), 1e-9)
    folded = np.array([hist[0], hist[1] + hist[7], hist[2] + hist[6], hist[3] + hist[5], hist[4]])
    return folded, float(mag.mean())


def _bands(profile: np.ndarray) -> np.ndarray:
    """Share of a profile's variation at 1-2, 3-5, 6-10 and 11-20 cycles per image (mirror-
    and shift-invariant: FFT magnitudes)."""
    p = profile - profile.mean()
    spec = np.abs(np.fft.rfft(p))[1:21] ** 2
    total = max(float(spec.sum()), 1e-12)
    return np.array([spec[0:2].sum(), spec[2:5].sum(), spec[5:10].sum(), spec[10:20].sum()]) / total


def _periodicity(img: np.ndarray) -> float:
    """How periodic the most periodic columns are along the rows at vertebral frequencies
    (8-16 cycles per image side): stacked bodies and discs along the spine."""
    x = img - img.mean(axis=0, keepdims=True)
    spec = np.abs(np.fft.rfft(x, axis=0))[1:] ** 2  # (freq, columns)
    share = spec[7:16].sum(axis=0) / np.maximum(spec.sum(axis=0), 1e-12)
    return float(np.sort(share)[-8:].mean())


def features(unit: np.ndarray) -> np.ndarray:
    """The learned check's features of one preprocessed image (``Preprocess.to_unit`` form:
    (S, S) in [0, 1]), float64, version :data:`FEATURE_VERSION`.

    Mirror-invariant where the anatomy is (patients face left or right), not where it is not
    (a rotated film must look different). About half a millisecond at S = 224.
    """
    u = np.asarray(unit, dtype=np.float32)
    if u.ndim != 2 or u.shape[0] != u.shape[1] or u.shape[0] < 16:
        raise ConfigError(f"features need a square preprocessed image, got shape {u.shape}")
    w = _resize(u, _WORK).astype(np.float32)
    out: list[np.ndarray | list[float]] = []
    t = _resize(w, 8)
    sym = (t + t[:, ::-1]) / 2
    asym = np.abs(t - t[:, ::-1]) / 2
    out += [sym[:, :4].ravel(), asym[:, :4].ravel()]
    bins = np.minimum((w * 16).astype(np.int64), 15).ravel()
    out.append(np.bincount(bins, minlength=16) / w.size)
    std = float(w.std()) + 1e-6
    o64, g64 = _orientations(w)
    w32 = _resize(w, 32)
    o32, g32 = _orientations(w32)
    out += [o64, o32, [g64 / std, g32 / std]]
    fine = float(np.abs(u[:, 1:] - u[:, :-1]).mean() + np.abs(u[1:] - u[:-1]).mean())
    rough64 = float(np.abs(w[:, 1:] - w[:, :-1]).mean() + np.abs(w[1:] - w[:-1]).mean())
    out.append([fine / std, rough64 / std, fine / (rough64 + 1e-6)])
    rows, cols = w.mean(axis=1), w.mean(axis=0)
    cc = cols - cols.mean()
    norm = float(cc @ cc)
    sym_cols = float(cc @ cc[::-1]) / norm if norm > 1e-12 else 1.0
    out += [[float(rows.std()), float(cols.std()), sym_cols], _bands(rows), _bands(cols)]
    out.append([_periodicity(w), _periodicity(w.T)])
    step = max(1, u.shape[0] // 32)  # padding rows/columns are all zero: a sample decides
    empty_rows = float(np.mean(~u[:, ::step].any(axis=1)))
    empty_cols = float(np.mean(~u[::step].any(axis=0)))
    z = (w - w.mean()) / std
    z2 = z * z  # not z**3: pow() of negative numbers takes libm's slow path (~50x)
    out.append(
        [
            empty_rows,
            empty_cols,
            float(w.mean()),
            std,
            float((z2 * z).mean()),
            float((z2 * z2).mean()),
            float(np.mean(w < 0.02)),
            float(np.mean(w > 0.98)),
        ]
    )
    return np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in out])


def feature_matrix(units: np.ndarray) -> np.ndarray:
    """:func:`features` of a stack of preprocessed images (N, S, S)."""
    return np.stack([features(u) for u in units]) if len(units) else np.empty((0, 0))


# ------------------------------------------------------------------ the gate
@dataclass
class QualityGate:
    """A fitted learned check plus the rules; ``assess`` decides per image.

    Made by :func:`edgevcf.quality_fit.fit_gate` at export, read back by :meth:`load`.
    """

    spec: dict[str, Any]  # the preprocessing it was fitted for (Preprocess.to_dict())
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float
    center: np.ndarray
    precision: np.ndarray
    distance_threshold: float
    info: dict[str, Any] = field(default_factory=dict)
    feature_version: int = FEATURE_VERSION

    # -------------------------------------------------------------- scoring
    def scores(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logistic out-of-scope logit, Mahalanobis distance per feature) for feature rows."""
        f = np.atleast_2d(feats)
        z = (f - self.mean) / self.scale
        logit = z @ self.coef + self.intercept
        dz = z - self.center
        dist = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", dz, self.precision, dz), 0) / z.shape[1])
        return logit, dist

    def refuse(self, score: np.ndarray, distance: np.ndarray) -> np.ndarray:
        """Which (score, distance) pairs the learned check refuses."""
        return (np.asarray(score) > self.threshold) | (
            np.asarray(distance) > self.distance_threshold
        )

    def assess(
        self,
        image: np.ndarray,
        meta: ImageMeta | None = None,
        *,
        unit: np.ndarray | None = None,
    ) -> Assessment:
        """Header rules, image rules, then the learned check on ``unit`` (the preprocessed
        image; computed from ``image`` with the gate's spec when not given)."""
        first = assess_rules(image, meta)
        if not first.assessable:
            return first
        if unit is None:
            from edgevcf.data.preprocess import Preprocess

            unit = Preprocess.from_dict(self.spec).to_unit(image)
        s, d = self.scores(features(unit))
        score, dist = float(s[0]), float(d[0])
        common = {
            "score": score,
            "threshold": self.threshold,
            "distance": dist,
            "distance_threshold": self.distance_threshold,
            "learned": True,
            "notes": first.notes,
        }
        if score > self.threshold:
            return Assessment(
                False,
                f"does not look like a lateral thoracolumbar radiograph of the kind this model "
                f"was trained on (out-of-scope score {score:.2f} > {self.threshold:.2f})",
                "learned",
                **common,  # type: ignore[arg-type]
            )
        if dist > self.distance_threshold:
            return Assessment(
                False,
                f"unlike the images this model was trained on (distance {dist:.2f} > "
                f"{self.distance_threshold:.2f})",
                "learned",
                **common,  # type: ignore[arg-type]
            )
        return Assessment(True, **common)  # type: ignore[arg-type]

    # -------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a plain (pickle-free) npz: arrays plus JSON parameters."""
        params = {
            "feature_version": self.feature_version,
            "spec": self.spec,
            "intercept": self.intercept,
            "threshold": self.threshold,
            "distance_threshold": self.distance_threshold,
            "info": self.info,
        }
        with open(path, "wb") as f:
            np.savez_compressed(
                f,
                params=np.array(json.dumps(params, sort_keys=True)),
                mean=self.mean,
                scale=self.scale,
                coef=self.coef,
                center=self.center,
                precision=self.precision,
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> QualityGate:
        """Read :meth:`save` output (never unpickles).

        Raises:
            BundleError: unreadable, or made with another feature version.
        """
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                params = json.loads(str(z["params"]))
                arrays = [np.asarray(z[k], dtype=np.float64) for k in _ARRAYS]
        except (OSError, KeyError, ValueError) as exc:
            raise BundleError(f"quality gate {Path(path).name} unreadable: {exc}") from None
        if params.get("feature_version") != FEATURE_VERSION:
            raise BundleError(
                f"quality gate feature version {params.get('feature_version')} is not "
                f"{FEATURE_VERSION} (this edgevcf)",
                hint="re-export the bundle with this edgevcf",
            )
        return cls(
            spec=params["spec"],
            intercept=float(params["intercept"]),
            threshold=float(params["threshold"]),
            distance_threshold=float(params["distance_threshold"]),
            info=params.get("info", {}),
            mean=arrays[0],
            scale=arrays[1],
            coef=arrays[2],
            center=arrays[3],
            precision=arrays[4],
        )


def assess_rules(image: np.ndarray, meta: ImageMeta | None = None) -> Assessment:
    """Header and image rules only (bundles exported without a learned gate)."""
    reason, notes = header_rules(meta)
    if reason:
        return Assessment(False, reason, "header", notes=tuple(notes))
    reason = image_rules(image)
    if reason:
        return Assessment(False, reason, "image", notes=tuple(notes))
    return Assessment(True, notes=tuple(notes))


__all__ = [
    "FEATURE_VERSION",
    "GATE_FILE",
    "Assessment",
    "QualityGate",
    "assess_rules",
    "feature_matrix",
    "features",
    "header_rules",
    "image_rules",
]
