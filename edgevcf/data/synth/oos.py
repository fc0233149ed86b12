"""Out-of-scope inputs: what a cart may be handed instead of a lateral thoracolumbar radiograph.

The runtime's quality gate (:mod:`edgevcf.quality`) learns "in scope" from a bundle's own
training images against these. Anatomical families are projected with the same detector model
as the in-scope generator (:func:`edgevcf.data.synth.render.detector`: shutters, heel effect,
grid, scatter, blur, quantum noise, log, console compression, auto-windowing), so a detector
cannot tell them apart by how our synthetic films are made — only by what they show. Other
families reuse the in-scope renderer (inverted, rotated, cropped, over-exposed lateral films) or
are not radiographs at all (blank, noise, photo-like scenes, text screenshots).

Every image is a pure function of ``(family, seed, index)``; sizes are small (``long_side``
pixels, 256-512 by default) because the gate only sees the bundle's preprocessed input.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

from edgevcf.data.synth.anatomy import View
from edgevcf.data.synth.config import MU_CORTICAL_PER_CM, MU_LUNG_PER_CM, MU_SOFT_PER_CM
from edgevcf.data.synth.render import Rendered
from edgevcf.errors import ConfigError

_MU_SOFT = MU_SOFT_PER_CM / 10.0  # per mm
_D_CORT = (MU_CORTICAL_PER_CM - MU_SOFT_PER_CM) / 10.0  # excess of cortical bone over soft tissue
_D_TRAB = 0.0065  # excess of cancellous bone (~150 mg/cm3) per mm
_D_LUNG = (MU_LUNG_PER_CM - MU_SOFT_PER_CM) / 10.0
_D_GAS = -_MU_SOFT

Generator = Callable[[np.random.Generator, int], np.ndarray]

#: Families, in a fixed order (their index is part of each image's seed).
FAMILIES: tuple[str, ...] = (
    "ap_spine",
    "chest_pa",
    "hand",
    "long_bone",
    "skull",
    "pelvis",
    "blank",
    "saturated",
    "inverted",
    "noise",
    "rotated",
    "crop",
    "natural",
    "text",
)


# ------------------------------------------------------------------ drawing helpers
def _grid(h: int, w: int, px: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in mm: xg (1, w), yg (h, 1)."""
    xs = ((np.arange(w, dtype=np.float32) + 0.5) * px)[None, :]
    ys = ((np.arange(h, dtype=np.float32) + 0.5) * px)[:, None]
    return xs, ys


def _chord(r: np.ndarray) -> np.ndarray:
    """Relative chord through a solid of revolution at normalised radius r (1 at the edge)."""
    return np.sqrt(np.clip(1.0 - r * r, 0.0, None)).astype(np.float32)


def _ellipse_r(
    xg: np.ndarray, yg: np.ndarray, cx: float, cy: float, a: float, b: float, ang: float = 0.0
) -> np.ndarray:
    """Normalised elliptical radius of (xg, yg) for an ellipse centred (cx, cy), rotated ``ang``."""
    c, s = math.cos(ang), math.sin(ang)
    dx, dy = xg - cx, yg - cy
    return np.sqrt(((dx * c + dy * s) / a) ** 2 + ((-dx * s + dy * c) / b) ** 2)


def _shell(
    xg: np.ndarray, yg: np.ndarray, cx: float, cy: float, a: float, b: float, depth: float, t: float
) -> tuple[np.ndarray, np.ndarray]:
    """(cortical, inner) path lengths (mm) through an ellipsoidal bone with a shell ``t`` thick."""
    outer = 2 * depth * _chord(_ellipse_r(xg, yg, cx, cy, a, b))
    ia, ib, idp = max(a - t, 0.5), max(b - t, 0.5), max(depth - t, 0.5)
    inner = 2 * idp * _chord(_ellipse_r(xg, yg, cx, cy, ia, ib))
    return outer - inner, inner


def _segment_dist(
    xg: np.ndarray, yg: np.ndarray, p0: tuple[float, float], p1: tuple[float, float]
) -> np.ndarray:
    """Distance (mm) from each pixel to the segment p0-p1."""
    (x0, y0), (x1, y1) = p0, p1
    vx, vy = x1 - x0, y1 - y0
    ll = max(vx * vx + vy * vy, 1e-9)
    t = np.clip(((xg - x0) * vx + (yg - y0) * vy) / ll, 0.0, 1.0)
    return np.sqrt((xg - x0 - t * vx) ** 2 + (yg - y0 - t * vy) ** 2)


def _tube(d: np.ndarray, r_out: float, cortex: float) -> tuple[np.ndarray, np.ndarray]:
    """(cortical, marrow) path lengths through a hollow cylinder at distance ``d`` off its axis."""
    outer = 2 * np.sqrt(np.clip(r_out**2 - d * d, 0, None))
    r_in = max(r_out - cortex, 0.3)
    inner = 2 * np.sqrt(np.clip(r_in**2 - d * d, 0, None))
    return (outer - inner).astype(np.float32), inner.astype(np.float32)


def _bone_tube(
    xg: np.ndarray,
    yg: np.ndarray,
    p0: tuple[float, float],
    p1: tuple[float, float],
    r: float,
    cortex: float,
) -> np.ndarray:
    """Excess attenuation of a long bone (segment with rounded ends)."""
    cort, marrow = _tube(_segment_dist(xg, yg, p0, p1), r, cortex)
    return _D_CORT * cort + _D_TRAB * marrow


def _blobs(
    plane: _Plane,
    rng: np.random.Generator,
    box: tuple[float, float, float, float],
    n: int,
    size: tuple[float, float],
) -> None:
    """Bowel-gas-like pockets (negative excess) inside ``box`` (x0, x1, y0, y1)."""
    for _ in range(n):
        cx, cy = rng.uniform(box[0], box[1]), rng.uniform(box[2], box[3])
        a = rng.uniform(*size)
        plane.ellipse(
            cx,
            cy,
            a,
            a * rng.uniform(0.4, 0.9),
            _solid(rng.uniform(10, 40), _D_GAS),
            rng.uniform(0, math.pi),
        )


def _acquisition(rng: np.random.Generator) -> View:
    """Exposure, blur, scatter, grid and display curve drawn like the in-scope generator's."""
    return View(
        magnification=1.0,
        tilt_deg=0.0,
        shift_mm=(0.0, 0.0),
        field_mm=(0.0, 0.0),
        face_right=False,
        axial_rotation_mm=0.0,
        quanta=float(rng.uniform(1500, 8000)),
        blur_px=float(rng.uniform(0.5, 1.0)),
        scatter=float(rng.uniform(0.1, 0.6)),
        grid=bool(rng.random() < 0.3),
        heel=float(rng.uniform(-0.08, 0.08)),
        diaphragm_shift_mm=0.0,
        gamma=float(rng.uniform(0.8, 1.25)),
        compression=float(rng.uniform(0.4, 0.75)),
        gas_seed=0,
    )


def _expose(
    L: np.ndarray,
    px: float,
    rng: np.random.Generator,
    field: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """Log-attenuation (per-pixel line integral) -> displayed radiograph in [0, 1].

    ``field`` (x0, x1, y0, y1 in mm) is the collimated field; None draws one (sometimes the
    whole detector, as for a film cropped to its field).
    """
    from edgevcf.data.synth.config import SynthConfig
    from edgevcf.data.synth.render import Canvas, detector

    h, w = L.shape
    canvas = Canvas(h, w, px)
    canvas.L = L.astype(np.float32)
    if field is None:
        if rng.random() < 0.3:
            box = (0, 0, h, w)
        else:
            fh, fw = rng.uniform(0.55, 0.95) * h, rng.uniform(0.55, 0.95) * w
            r0 = int(rng.uniform(0, h - fh))
            c0 = int(rng.uniform(0, w - fw))
            box = (r0, c0, r0 + int(fh), c0 + int(fw))
    else:
        x0, x1, y0, y1 = field
        box = (
            max(0, int(y0 / px)),
            max(0, int(x0 / px)),
            min(h, int(y1 / px)),
            min(w, int(x1 / px)),
        )
    cfg = SynthConfig(pixel_mm=min(2.0, max(0.05, px)))
    return detector(canvas, box, _acquisition(rng), cfg, px, rng)


def _detector_mm(long_side: int, mm: tuple[float, float]) -> tuple[int, int, float]:
    """(rows, cols, mm per pixel) for a cassette of ``mm`` (width, height) at ``long_side`` px."""
    px = max(mm) / long_side
    return round(mm[1] / px), round(mm[0] / px), px


def _sig(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow warnings."""
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)


class _Plane:
    """A log-attenuation image with helpers that draw only inside a structure's bounding box."""

    def __init__(self, h: int, w: int, px: float) -> None:
        self.L = np.zeros((h, w), dtype=np.float32)
        self.px, self.h, self.w = px, h, w
        self.xg, self.yg = _grid(h, w, px)

    def add(
        self,
        box: tuple[float, float, float, float],
        fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    ) -> None:
        """``L += fn(xg, yg)`` over the pixels of ``box`` (x0, x1, y0, y1 in mm)."""
        x0, x1, y0, y1 = box
        c0, c1 = max(0, int(x0 / self.px)), min(self.w, math.ceil(x1 / self.px))
        r0, r1 = max(0, int(y0 / self.px)), min(self.h, math.ceil(y1 / self.px))
        if c0 >= c1 or r0 >= r1:
            return
        self.L[r0:r1, c0:c1] += fn(self.xg[:, c0:c1], self.yg[r0:r1, :])

    def tube(
        self,
        pts: np.ndarray | list[tuple[float, float]],
        r: float,
        cortex: float,
        weight: float = 1.0,
    ) -> None:
        """A bone along a polyline (one segment for a shaft; ribs, clavicles, mandible)."""
        p = np.asarray(pts, dtype=np.float64)
        box = (p[:, 0].min() - r, p[:, 0].max() + r, p[:, 1].min() - r, p[:, 1].max() + r)

        def draw(xg: np.ndarray, yg: np.ndarray) -> np.ndarray:
            out = np.zeros(np.broadcast_shapes(xg.shape, yg.shape), dtype=np.float32)
            for a, b in itertools.pairwise(p):
                seg = _bone_tube(xg, yg, (a[0], a[1]), (b[0], b[1]), r, cortex)
                out = np.maximum(out, seg)
            return weight * out

        self.add(box, draw)

    def ellipse(
        self,
        cx: float,
        cy: float,
        a: float,
        b: float,
        fn: Callable[[np.ndarray], np.ndarray],
        ang: float = 0.0,
    ) -> None:
        """``L += fn(r)`` with r the normalised radius of an ellipse, inside its box."""
        m = max(a, b) * 1.3
        self.add(
            (cx - m, cx + m, cy - m, cy + m),
            lambda xg, yg: fn(_ellipse_r(xg, yg, cx, cy, a, b, ang)),
        )


def _flip(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.ascontiguousarray(img[:, ::-1]) if rng.random() < 0.5 else img


# ------------------------------------------------------------------ anatomical families
def _ring(lo: float, path: float) -> Callable[[np.ndarray], np.ndarray]:
    """A cortical ring seen end-on (pedicle, obturator rim): ``path`` mm of cortex."""
    return lambda r: _D_CORT * path * ((r < 1.0) & (r > lo)).astype(np.float32)


def _solid(path: float, excess: float = _D_TRAB) -> Callable[[np.ndarray], np.ndarray]:
    """A rounded solid with ``path`` mm at its centre."""
    return lambda r: excess * path * _chord(r)


def _trunk(plane: _Plane, cx: float, half_w: float, ap_mm: float) -> None:
    rel = np.clip(1 - ((plane.xg - cx) / half_w) ** 2, 0, None)
    plane.L += _MU_SOFT * ap_mm * np.sqrt(rel)


def ap_spine(rng: np.random.Generator, long_side: int) -> np.ndarray:
    """AP (frontal) thoracolumbar spine: bodies face-on with pedicle rings, spinous processes
    in the midline, transverse processes, ribs 10-12, psoas, bowel gas; near-symmetric."""
    h, w, px = _detector_mm(long_side, (350.0, 430.0))
    pl = _Plane(h, w, px)
    xg, yg = pl.xg, pl.yg
    H = h * px
    cx = w * px / 2 + rng.normal(0, 12)
    _trunk(pl, cx, rng.uniform(140, 190), rng.uniform(200, 300))
    y_d = rng.uniform(0.22, 0.4) * H  # lung bases lateral to the spine, above the domes
    for sgn in (-1, 1):
        dome = y_d + 0.002 * (xg - cx - sgn * 90) ** 2
        side = _sig((sgn * (xg - cx) - 40) / 8)
        pl.L += _D_LUNG * rng.uniform(60, 120) * side * np.clip((dome - yg) / 30, 0, 1)
    scol = rng.uniform(-12, 12)  # scoliosis amplitude (mm)
    rot = rng.uniform(-0.1, 0.1)  # axial rotation moves the pedicles and spinous process
    y = rng.uniform(-20, 10)
    s = rng.uniform(1.0, 1.25)  # magnification x stature
    heights = (22, 24, 26, 27, 28, 29, 29, 28, 27)
    discs = (5, 5.5, 6, 7.5, 8.5, 9.5, 10, 10, 10)
    for i, (hb0, dsc0) in enumerate(zip(heights, discs, strict=True)):
        hb, dsc = hb0 * s, dsc0 * s
        yc = y + hb / 2
        xc = cx + scol * math.sin(math.pi * yc / H)
        wb = (38 + 2.2 * i) * s * rng.uniform(0.95, 1.05)
        depth = (28 + 0.8 * i) * s

        def body(
            xg: np.ndarray, yg: np.ndarray, y=y, hb=hb, xc=xc, wb=wb, depth=depth
        ) -> np.ndarray:
            # elliptic cross-section seen from the front: bright lateral cortices and endplates
            u = np.abs(xg - xc) / (wb / 2)
            ui = np.abs(xg - xc) / (wb / 2 - 1.2)
            vert = _sig((yg - y) / 0.8) * _sig((y + hb - yg) / 0.8)
            outer, inner = depth * _chord(u), (depth - 2.4) * _chord(ui)
            ep = np.exp(-(((yg - y) / 1.2) ** 2)) + np.exp(-(((yg - y - hb) / 1.2) ** 2))
            return vert * (_D_CORT * (outer - inner) + _D_TRAB * inner) + 0.3 * _D_CORT * ep * outer

        pl.add((xc - wb, xc + wb, y - 3, y + hb + 3), body)
        for sgn in (-1, 1):
            pxc = xc + sgn * wb * 0.33 + rot * wb
            pl.ellipse(pxc, y + 0.33 * hb, 4.5 * s, 7.5 * s, _ring(0.65, 11 * s))
            tip = pxc + sgn * rng.uniform(18, 32) * s
            pl.tube([(pxc, y + 0.4 * hb), (tip, y + 0.45 * hb)], 3.5 * s, 1.2, 0.7)
            if i < 3:  # ribs 10-12 from the transverse processes, down and out
                t = np.linspace(0, 1, 8)
                pts = np.stack(
                    [
                        xc + sgn * (wb * 0.6 + t * rng.uniform(90, 150)),
                        y + 0.4 * hb + t * rng.uniform(20, 70) + 25 * t**2,
                    ],
                    axis=1,
                )
                pl.tube(pts, 5.0, 1.5, 0.6)
        # spinous process: a teardrop in the midline, lower half, over the disc below
        pl.ellipse(xc + 1.5 * rot * wb, y + 0.75 * hb, 4 * s, 9 * s, _ring(0.6, 9 * s))
        y += hb + dsc
    y1 = 0.35 * H
    for sgn in (-1, 1):  # psoas margins: fat lines diverging from L1 downwards
        edge = cx + sgn * (25 + 0.35 * np.clip(yg - y1, 0, None))
        pl.L += 0.1 * np.exp(-(((xg - edge) / 6) ** 2)) * (yg > y1)
    _blobs(pl, rng, (cx - 140, cx + 140, 0.45 * H, H), int(rng.integers(2, 9)), (8, 25))
    fw, fh = rng.uniform(150, 260), rng.uniform(270, 400)
    field = (cx - fw / 2, cx + fw / 2, (H - fh) / 2, (H + fh) / 2)
    return _flip(_expose(pl.L, px, rng, field), rng)


def chest_pa(rng: np.random.Generator, long_side: int) -> np.ndarray:
    """PA chest: dark lung fields, mediastinum and heart, rib arcs, clavicles, diaphragm domes."""
    mm = (430.0, 350.0) if rng.random() < 0.3 else (350.0, 430.0)
    h, w, px = _detector_mm(long_side, mm)
    pl = _Plane(h, w, px)
    xg, yg = pl.xg, pl.yg
    cx = w * px / 2 + rng.normal(0, 10)
    half_w = rng.uniform(140, 175)
    top = rng.uniform(20, 60)
    _trunk(pl, cx, half_w, rng.uniform(200, 260))
    dome = top + rng.uniform(200, 260)
    for sgn in (-1, 1):
        lx = cx + sgn * rng.uniform(65, 85)
        diaphragm = dome + 8 * sgn + 0.004 * (xg - lx) ** 2 - 25
        r = _ellipse_r(xg, yg, lx, (top + dome) / 2 + 10, rng.uniform(55, 70), 130)
        lung = _chord(np.clip(r, 0, 1)) * (yg < diaphragm) * (yg > top + 5)
        pl.L += _D_LUNG * rng.uniform(110, 170) * lung
    heart = _ellipse_r(xg, yg, cx + 25, dome - 55, rng.uniform(55, 75), 50, -0.3)
    pl.L -= _D_LUNG * 70 * _chord(heart)  # the heart replaces lung
    pl.L += _MU_SOFT * 20 * np.exp(-(((xg - cx) / 25) ** 2)) * (yg < dome)  # mediastinum
    t = np.linspace(0, 1, 8)
    for k in range(11):  # posterior ribs arch out from the spine; anterior ribs fainter
        yk = top + 12 + k * rng.uniform(19, 22)
        for sgn in (-1, 1):
            span = half_w * rng.uniform(0.75, 0.95)
            post = np.stack(
                [cx + sgn * (12 + t * span), yk - 20 * np.sin(math.pi * t * 0.8) + 35 * t**2],
                axis=1,
            )
            pl.tube(post, 5.0, 1.3, 0.55)
            ant = np.stack([cx + sgn * (span + 12 - t * span * 0.7), yk + 35 + 30 * t], axis=1)
            pl.tube(ant, 5.0, 1.0, 0.25)
    for sgn in (-1, 1):  # clavicles
        pts = np.stack(
            [cx + sgn * (15 + t * 140), top + 25 + 12 * np.sin(2 * math.pi * t) - 15 * t], axis=1
        )
        pl.tube(pts, 6.0, 2.0, 0.9)
    for k in range(12):  # thoracic spine behind the mediastinum
        pl.ellipse(cx, top + k * 24 + 10, 18, 10, _solid(25))
    return _flip(_expose(pl.L, px, rng), rng)


def hand(rng: np.random.Generator, long_side: int) -> np.ndarray:
    """PA hand: phalanges, metacarpals, carpals, distal radius and ulna, in air."""
    h, w, px = _detector_mm(long_side, (240.0, 300.0))
    pl = _Plane(h, w, px)
    xg, yg = pl.xg, pl.yg
    W, H = w * px, h * px
    cx, wrist = W / 2 + rng.normal(0, 10), H * rng.uniform(0.72, 0.85)
    s = rng.uniform(0.9, 1.1)
    pl.ellipse(cx, wrist - 45 * s, 45 * s, 50 * s, _solid(30, _MU_SOFT))  # palm
    pl.L += (
        _MU_SOFT * 2 * np.sqrt(np.clip((30 * s) ** 2 - (xg - cx) ** 2, 0, None)) * (yg > wrist - 10)
    )

    def finger(p0: tuple[float, float], ang: float, lens: list[float], radii: list[float]) -> None:
        dx, dy = math.sin(ang), -math.cos(ang)
        total = sum(lens)
        tip = (p0[0] + dx * total, p0[1] + dy * total)
        flesh = float(radii[0]) * 2.0
        start = (p0[0] + dx * lens[0] * 0.6, p0[1] + dy * lens[0] * 0.6)
        pl.add(
            (
                min(start[0], tip[0]) - flesh,
                max(start[0], tip[0]) + flesh,
                min(start[1], tip[1]) - flesh,
                max(start[1], tip[1]) + flesh,
            ),
            lambda xg, yg: (
                _MU_SOFT
                * 2
                * np.sqrt(np.clip(flesh**2 - _segment_dist(xg, yg, start, tip) ** 2, 0, None))
            ),
        )
        p = p0
        for ln, rr in zip(lens, radii, strict=True):
            q = (p[0] + dx * ln, p[1] + dy * ln)
            gap = 1.8 * s
            pl.tube(
                [(p[0] + dx * gap, p[1] + dy * gap), (q[0] - dx * gap, q[1] - dy * gap)],
                rr,
                1.4 * s,
            )
            p = q

    for k, (off, ang) in enumerate(zip((-27, -9, 9, 27), (-0.22, -0.07, 0.07, 0.2), strict=True)):
        short = 0.85 if k in (0, 3) else 1.0
        lens = [float(x * s * short) for x in (60, 42, 26, 19)]
        finger(
            (cx + off * s, wrist - 30 * s),
            ang + rng.normal(0, 0.06),
            lens,
            [4.8 * s, 4.2 * s, 3.6 * s, 3.0 * s],
        )
    finger(
        (cx - 40 * s, wrist - 15 * s),
        -0.9 + rng.normal(0, 0.1),
        [45 * s, 32 * s, 24 * s],
        [5.0 * s, 4.4 * s, 3.8 * s],
    )
    for _ in range(8):  # carpals
        a, b = rng.uniform(5, 9) * s, rng.uniform(4, 7) * s
        pl.ellipse(
            cx + rng.uniform(-25, 20) * s,
            wrist + rng.uniform(-22, -5) * s,
            a,
            b,
            lambda r: _D_TRAB * 30 * _chord(r) + _D_CORT * 3 * ((r < 1) & (r > 0.8)),
            rng.uniform(0, math.pi),
        )
    for off, rr in ((-12, 10.0), (16, 6.5)):  # radius, ulna
        pl.tube([(cx + off * s, wrist + 5), (cx + off * s * 1.1, H + 20)], rr * s, 2.5)
    img = _flip(_expose(pl.L, px, rng), rng)
    return np.ascontiguousarray(img[::-1]) if rng.random() < 0.2 else img


def long_bone(rng: np.random.Generator, long_side: int) -> np.ndarray:
    """Knee / femur / lower leg: limb soft tissue, cortical shafts, condyles, joint space."""
    h, w, px = _detector_mm(long_side, (rng.uniform(200, 350), 430.0))
    pl = _Plane(h, w, px)
    xg, yg = pl.xg, pl.yg
    W, H = w * px, h * px
    dx = math.sin(rng.normal(0, 0.08))
    cx = W / 2 + rng.normal(0, 10)
    knee = H * rng.uniform(0.3, 0.7)

    def at(t: float, off: float = 0.0) -> tuple[float, float]:
        return (cx + (t - knee) * dx + off, t)

    R = rng.uniform(45, 75)
    d_axis = np.abs((xg - cx) - (yg - knee) * dx)
    pl.L += _MU_SOFT * 2 * np.sqrt(np.clip(R**2 - d_axis**2, 0, None))
    pl.tube([at(-50), at(knee - 35)], rng.uniform(12, 16), rng.uniform(3.5, 6))  # femur

    def shell(c: tuple[float, float], a: float, b: float, d: float, t: float) -> None:
        def draw(xg: np.ndarray, yg: np.ndarray) -> np.ndarray:
            cort, inner = _shell(xg, yg, c[0], c[1], a, b, d, t)
            return _D_CORT * cort + _D_TRAB * inner

        pl.add((c[0] - a, c[0] + a, c[1] - b, c[1] + b), draw)

    shell(at(knee - 22), 38, 24, 35, 2.0)  # condyles
    gap = rng.uniform(4, 8)
    shell(at(knee + gap + 14), 36, 16, 32, 1.8)  # tibial plateau
    pl.tube([at(knee + gap + 20), at(H + 50)], rng.uniform(12, 15), rng.uniform(3.5, 5.5))
    pl.tube([at(knee + gap + 25, 28), at(H + 50, 24)], 6.0, 2.0)  # fibula
    shell(at(knee - 25, -40 if rng.random() < 0.5 else 0), 12, 22, 10, 1.5)  # patella
    return _flip(_expose(pl.L, px, rng), rng)


def skull(rng: np.random.Generator, long_side: int) -> np.ndarray:
    """Skull (lateral or PA): cortical vault, facial bones, mandible, orbits or sella, sinuses."""
    mm = (300.0, 240.0) if rng.random() < 0.5 else (240.0, 300.0)
    h, w, px = _detector_mm(long_side, mm)
    pl = _Plane(h, w, px)
    xg, yg = pl.xg, pl.yg
    cx, cy = w * px / 2 + rng.normal(0, 8), h * px * 0.45 + rng.normal(0, 8)
    lateral = rng.random() < 0.5
    a, b = (rng.uniform(90, 100), rng.uniform(75, 85)) if lateral else (rng.uniform(70, 78), 85.0)
    depth = 70.0 if lateral else 95.0
    pl.L += _MU_SOFT * 2 * depth * _chord(_ellipse_r(xg, yg, cx, cy, a + 6, b + 6))
    cort, _ = _shell(xg, yg, cx, cy, a, b, depth, rng.uniform(5, 8))
    pl.L += _D_CORT * cort
    t = np.linspace(0, 1, 10)
    if lateral:
        fx = cx - a * 0.75
        pl.ellipse(fx, cy + b * 0.75, 35, 40, _solid(60))  # face
        pl.tube(np.stack([fx - 10 + 60 * t, cy + b + 45 - 40 * t**2], axis=1), 7.0, 2.5, 1.5)
        pl.ellipse(cx + 10, cy + 0.3 * b, 25, 8, _solid(25, _D_CORT), 0.4)  # petrous ridge
        pl.ellipse(cx - 5, cy + 0.15 * b, 7, 5, _ring(0.7, 4))  # sella
        pl.ellipse(fx + 5, cy - 0.1 * b, 12, 10, _solid(30, _D_GAS))  # frontal sinus
    else:
        for sgn in (-1, 1):
            pl.ellipse(cx + sgn * 32, cy + 0.35 * b, 17, 15, _ring(0.8, 8))  # orbit rim
            pl.ellipse(cx + sgn * 32, cy + 0.35 * b, 13.6, 12, _solid(-20))
        pl.ellipse(cx, cy + 0.7 * b, 22, 12, _solid(25, _D_GAS))
        tt = 2 * t - 1
        pl.tube(np.stack([cx + 55 * tt, cy + b + 40 - 25 * (1 - tt**2)], axis=1), 7.0, 2.5, 1.5)
        for k in range(-7, 8):  # teeth
            pl.ellipse(cx + 6.5 * k, cy + b + 8, 3, 7, _solid(8, _D_CORT))
    return _flip(_expose(pl.L, px, rng), rng)


def pelvis(rng: np.random.Generator, long_side: int) -> np.ndarray:
    """AP pelvis: iliac wings, sacrum, L5, obturator rings, femoral heads and necks."""
    h, w, px = _detector_mm(long_side, (430.0, 350.0))
    pl = _Plane(h, w, px)
    xg, yg = pl.xg, pl.yg
    H = h * px
    cx, cy = w * px / 2 + rng.normal(0, 10), H * 0.45 + rng.normal(0, 10)
    _trunk(pl, cx, rng.uniform(170, 215), rng.uniform(200, 280))
    for sgn in (-1, 1):
        wing, wing_in = _shell(xg, yg, cx + sgn * 85, cy - 30, 80, 60, 12, 2.5)
        pl.L += (_D_CORT * wing + _D_TRAB * wing_in) * (yg < cy + 10)
        pl.ellipse(
            cx + sgn * 45,
            cy + 85,
            28,
            20,
            lambda r: _D_CORT * 14 * ((r < 1.25) & (r > 1.0)),
            sgn * 0.3,
        )
        hx, hy = cx + sgn * 95, cy + 55

        def head(xg: np.ndarray, yg: np.ndarray, hx=hx, hy=hy) -> np.ndarray:
            cort, inner = _shell(xg, yg, hx, hy, 25, 25, 25, 2.5)
            r = _ellipse_r(xg, yg, hx, hy, 29, 29)
            rim = _D_CORT * 6 * ((r < 1.0) & (r > 0.9)) * (yg < hy)
            return _D_CORT * cort + _D_TRAB * inner + rim

        pl.add((hx - 30, hx + 30, hy - 30, hy + 30), head)
        pl.tube([(cx + sgn * 100, cy + 60), (cx + sgn * 135, cy + 100)], 15, 4)
        pl.tube([(cx + sgn * 135, cy + 100), (cx + sgn * 140, H + 40)], 16, 5)
    pl.L += (
        _D_TRAB * 40 * _chord(_ellipse_r(xg, yg, cx, cy - 10, 45, 60)) * (yg < cy + 40)
    )  # sacrum
    for k in range(4):  # sacral foramina
        for sgn in (-1, 1):
            pl.ellipse(cx + sgn * 22, cy - 45 + 20 * k, 5, 5, _solid(-30))
    pl.ellipse(cx, cy - 95, 28, 14, _solid(35))  # L5
    pl.ellipse(cx, cy - 95, 28, 14, _ring(0.85, 6))
    _blobs(pl, rng, (cx - 150, cx + 150, 0, cy), int(rng.integers(2, 9)), (8, 25))
    return _flip(_expose(pl.L, px, rng), rng)


# ------------------------------------------------------------------ from in-scope films
def _lateral(rng: np.random.Generator, long_side: int) -> Rendered:
    """A lateral thoracolumbar film from the in-scope renderer (its own seed space)."""
    from edgevcf.data.synth.anatomy import sample_patient, sample_view
    from edgevcf.data.synth.config import SynthConfig
    from edgevcf.data.synth.render import render

    cfg = SynthConfig(pixel_mm=min(2.0, 430.0 / long_side), difficulty=float(rng.uniform(0, 1)))
    seed = 1_000_003 + int(rng.integers(1 << 30))
    patient = sample_patient(cfg, seed, 0)
    view = sample_view(cfg, patient, seed, 0)
    return render(cfg, patient, view, seed, 0)


def saturated(rng: np.random.Generator, long_side: int) -> np.ndarray:
    """Over- or under-exposed lateral film: most of the patient clipped to one end."""
    film = _lateral(rng, long_side)
    r0, c0, r1, c1 = film.field_box
    img, patient = film.display, film.display[r0:r1, c0:c1]
    q = rng.uniform(0.55, 0.9)
    if rng.random() < 0.5:  # burnt out: soft tissue black, only dense bone left
        t = float(np.quantile(patient, q))
        out = (img - t) / max(0.02, (1 - t) * rng.uniform(0.5, 1.0))
    else:  # washed out: everything but the darkest parts white
        t = float(np.quantile(patient, 1 - q))
        out = img / max(t, 0.02)
    return np.clip(out, 0, 1).astype(np.float32)


def inverted(rng: np.random.Generator, long_side: int) -> np.ndarray:
    """A lateral film with its grey scale inverted (a MONOCHROME1/2 mix-up)."""
    return (1.0 - _lateral(rng, long_side).display).astype(np.float32)


def rotated(rng: np.random.Generator, long_side: int) -> np.ndarray:
    """A lateral film rotated by 90 degrees (spine horizontal)."""
    img = _lateral(rng, long_side).display
    return np.ascontiguousarray(np.rot90(img, 1 if rng.random() < 0.5 else 3))


def crop(rng: np.random.Generator, long_side: int) -> np.ndarray:
    """A heavy crop (15-35 % of each side of the detector) from the exposed field of a lateral
    film — one or two vertebrae, or soft tissue only — resampled to ``long_side`` pixels."""
    from PIL import Image

    film = _lateral(rng, int(long_side * 1.5))
    h, w = film.display.shape
    fr0, fc0, fr1, fc1 = film.field_box
    fh, fw = int(h * rng.uniform(0.15, 0.35)), int(w * rng.uniform(0.15, 0.35))
    r0 = int(rng.uniform(fr0, max(fr0 + 1, fr1 - fh)))
    c0 = int(rng.uniform(fc0, max(fc0 + 1, fc1 - fw)))
    part = film.display[r0 : r0 + fh, c0 : c0 + fw]
    scale = long_side / max(part.shape)
    size = (max(1, round(part.shape[1] * scale)), max(1, round(part.shape[0] * scale)))
    out = Image.fromarray(np.ascontiguousarray(part, dtype=np.float32), mode="F").resize(
        size, Image.Resampling.BILINEAR
    )
    return np.asarray(out, dtype=np.float32)


# ------------------------------------------------------------------ not radiographs
def _shape(rng: np.random.Generator, long_side: int) -> tuple[int, int]:
    aspect = rng.uniform(0.6, 1.0)
    short = max(8, round(long_side * aspect))
    return (long_side, short) if rng.random() < 0.5 else (short, long_side)


def blank(rng: np.random.Generator, long_side: int) -> np.ndarray:
    """Unexposed or empty: one level, perhaps a faint gradient and a little noise."""
    h, w = _shape(rng, long_side)
    level = rng.choice([0.0, 1.0, rng.uniform(0, 1)])
    img = np.full((h, w), level, dtype=np.float32)
    if rng.random() < 0.5:
        img += rng.uniform(-0.05, 0.05) * np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    sigma = rng.choice([0.0, 0.002, 0.01, 0.03])
    img += sigma * rng.standard_normal((h, w)).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32)


def noise(rng: np.random.Generator, long_side: int) -> np.ndarray:
    """Pure noise: white Gaussian, uniform, salt-and-pepper, Poisson or smooth (low-pass)."""
    from edgevcf.data.synth.render import gaussian

    h, w = _shape(rng, long_side)
    kind = int(rng.integers(5))
    if kind == 0:
        img = rng.normal(0.5, rng.uniform(0.05, 0.3), (h, w))
    elif kind == 1:
        img = rng.uniform(0, 1, (h, w))
    elif kind == 2:
        img = np.full((h, w), rng.uniform(0.2, 0.8))
        m = rng.random((h, w))
        p = rng.uniform(0.02, 0.3)
        img[m < p / 2], img[m > 1 - p / 2] = 0.0, 1.0
    elif kind == 3:
        img = rng.poisson(rng.uniform(1, 20), (h, w)) / 20.0
    else:
        img = gaussian(rng.standard_normal((h, w)).astype(np.float32), rng.uniform(1.5, 12))
        img = 0.5 + img / (6 * max(float(img.std()), 1e-6))
    return np.clip(img, 0, 1).astype(np.float32)


def natural(rng: np.random.Generator, long_side: int) -> np.ndarray:
    """Photo-like scene: occluding objects ("dead leaves"), 1/f texture, uneven lighting."""
    from edgevcf.data.synth.render import gaussian

    h, w = _shape(rng, long_side)
    xg, yg = _grid(h, w, 1.0)
    img = np.full((h, w), rng.uniform(0, 1), dtype=np.float32)
    for _ in range(int(rng.integers(15, 80))):
        size = long_side * rng.uniform(0.02, 0.35) ** 1.5 * 2
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        if rng.random() < 0.5:
            mask = (
                _ellipse_r(xg, yg, cx, cy, size, size * rng.uniform(0.3, 1), rng.uniform(0, 3.2))
                < 1
            )
        else:
            mask = (np.abs(xg - cx) < size) & (np.abs(yg - cy) < size * rng.uniform(0.3, 1.5))
        shade = rng.uniform(0, 1) + rng.uniform(-0.2, 0.2) * (xg - cx) / max(size, 1)
        img = np.where(mask, shade, img).astype(np.float32)
    tex = np.zeros((h, w), dtype=np.float32)
    for s in (1.0, 3.0, 9.0, 27.0):
        tex += s**0.5 * gaussian(rng.standard_normal((h, w)).astype(np.float32), s)
    img += rng.uniform(0.02, 0.15) * tex / max(float(tex.std()), 1e-6)
    light = 1 + rng.uniform(-0.4, 0.4) * (xg / w - 0.5) + rng.uniform(-0.4, 0.4) * (yg / h - 0.5)
    img = gaussian(img * light, rng.uniform(0.3, 1.5))
    return np.clip(img, 0, 1).astype(np.float32)


def text(rng: np.random.Generator, long_side: int) -> np.ndarray:
    """A screenshot or scanned page: lines of text, rules, boxes, perhaps a small picture."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = _shape(rng, long_side)
    dark = rng.random() < 0.3
    bg, fg = (30, 220) if dark else (int(rng.integers(200, 256)), int(rng.integers(0, 80)))
    im = Image.new("L", (w, h), bg)
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=float(rng.uniform(8, 20)))
    alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,:;-/()"
    y = int(rng.integers(2, 20))
    step = int(rng.integers(11, 28))
    while y < h - 10:
        if rng.random() < 0.1:
            draw.line([(0, y), (w, y)], fill=fg, width=int(rng.integers(1, 3)))
        elif rng.random() < 0.08:
            x0, x1 = int(rng.integers(0, w // 2)), int(rng.integers(w // 2, w))
            draw.rectangle([x0, y, x1, y + step * 3], outline=fg, fill=int(rng.integers(0, 256)))
            y += step * 3
        else:
            n = int(rng.integers(10, 80))
            line = "".join(alphabet[i] for i in rng.integers(0, len(alphabet), n))
            draw.text((int(rng.integers(2, 30)), y), line, fill=fg, font=font)
        y += step
    return (np.asarray(im, dtype=np.float32) / 255.0).astype(np.float32)


_GENERATORS: dict[str, Generator] = {
    "ap_spine": ap_spine,
    "chest_pa": chest_pa,
    "hand": hand,
    "long_bone": long_bone,
    "skull": skull,
    "pelvis": pelvis,
    "blank": blank,
    "saturated": saturated,
    "inverted": inverted,
    "noise": noise,
    "rotated": rotated,
    "crop": crop,
    "natural": natural,
    "text": text,
}


def generate_oos(
    family: str, seed: int, index: int, long_side: int | tuple[int, int] | None = None
) -> np.ndarray:
    """One out-of-scope image (2-D float32 in [0, 1]) of ``family``; deterministic.

    Args:
        family: One of :data:`FAMILIES`.
        seed: Seed of the set; a different seed gives a different set.
        index: Image number within the set.
        long_side: Pixels along the longer side, or a (low, high) range to draw it from
            (default 256-512).

    Raises:
        ConfigError: unknown family.
    """
    if family not in _GENERATORS:
        raise ConfigError(
            f"unknown out-of-scope family {family!r}", hint=f"one of: {', '.join(FAMILIES)}"
        )
    rng = np.random.default_rng([seed, FAMILIES.index(family), index, 4099])
    lo, hi = (long_side, long_side) if isinstance(long_side, int) else (long_side or (256, 512))
    size = int(rng.integers(lo, hi + 1))
    img = _GENERATORS[family](rng, size)
    return np.ascontiguousarray(np.clip(img, 0.0, 1.0), dtype=np.float32)


def oos_set(
    seed: int,
    per_family: int,
    families: tuple[str, ...] = FAMILIES,
    long_side: int | tuple[int, int] | None = None,
) -> list[tuple[str, np.ndarray]]:
    """``per_family`` images of each family, as (family, image) pairs."""
    return [(f, generate_oos(f, seed, i, long_side)) for f in families for i in range(per_family)]


__all__ = ["FAMILIES", "generate_oos", "oos_set"]
