"""Project a synthetic patient onto the detector: Beer-Lambert line integrals, then the detector.

Everything is built in the log domain as a sum of line integrals ``L = sum(mu_i * path_i)``:
soft tissue across the body, minus what lung and bowel gas replace, plus the excess of bone over
the soft tissue it replaces. Bones are analytic: the path length of a beam through an elliptical
vertebral body, its cortical shell and endplates is computed in each vertebra's own frame, which
is what makes tangential cortex and endplates appear as bright rims on a lateral film. Then the
detector: heel effect, grid, scatter, blur, quantum and electronic noise, log, display curve.

Coordinates: millimetres in the detector plane (anatomy times magnification); x grows
posteriorly (the canonical patient faces left), y grows caudally. A final flip makes half of the
patients face right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgevcf.data.synth.anatomy import Patient, Vertebra, View
from edgevcf.data.synth.config import (
    MU_CORTICAL_PER_CM,
    MU_LUNG_PER_CM,
    MU_PER_MG_CM3,
    MU_SOFT_PER_CM,
    RENDER_LEVELS,
    Site,
    SynthConfig,
)

_D_CORT = (MU_CORTICAL_PER_CM - MU_SOFT_PER_CM) / 10.0  # excess per mm of cortical bone
_D_TRAB = MU_PER_MG_CM3 / 10.0  # excess per mm per mg/cm3
_MU_SOFT = MU_SOFT_PER_CM / 10.0
_D_LUNG = (MU_LUNG_PER_CM - MU_SOFT_PER_CM) / 10.0
_D_POST = 0.18 / 10.0  # posterior elements: mixed cortical/cancellous, excess per mm
_SUPER = 2.2  # superellipse exponent of the vertebral body's axial section


@dataclass
class Rendered:
    """One synthetic radiograph before it is written to disk."""

    display: np.ndarray  # float32 in [0, 1], 1 = bright (bone), canonical display orientation
    pixel_mm: float
    field_box: tuple[int, int, int, int]  # row0, col0, row1, col1 of the exposed field
    levels: dict[str, dict[str, Any]] = field(default_factory=dict)  # per level: corners (px)


@dataclass
class _Frame:
    """A vertebra's place: posterior-superior corner (mm) and axis angle (rad)."""

    corner: tuple[float, float]
    theta: float

    def to_local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Detector mm -> (u from the posterior wall, positive posterior; v caudal)."""
        c, s = math.cos(self.theta), math.sin(self.theta)
        dx, dy = x - self.corner[0], y - self.corner[1]
        return dx * c - dy * s, dx * s + dy * c

    def to_world(self, u: float, v: float) -> tuple[float, float]:
        """Local (u, v) -> detector mm."""
        c, s = math.cos(self.theta), math.sin(self.theta)
        return self.corner[0] + u * c + v * s, self.corner[1] - u * s + v * c


def gaussian(img: np.ndarray, sigma: float | tuple[float, float]) -> np.ndarray:
    """Gaussian blur of ``sigma`` pixels (per axis when a pair), edges replicated."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(img, sigma, mode="nearest", truncate=3.0)


def _dome(r: np.ndarray) -> np.ndarray:
    """Path-length profile of a rounded solid at normalised radius r (1 at the edge)."""
    return np.sqrt(np.clip(1.0 - r * r, 0.0, None))


class Canvas:
    """The log-attenuation image, with helpers to add into a bounding box."""

    def __init__(self, height: int, width: int, pixel_mm: float) -> None:
        self.L = np.zeros((height, width), dtype=np.float32)
        self.px = pixel_mm
        self.h, self.w = height, width

    def box(
        self, x0: float, x1: float, y0: float, y1: float
    ) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
        """Pixel slices for a mm box, and the mm coordinates of their pixel centres."""
        c0, c1 = max(0, int(x0 / self.px)), min(self.w, math.ceil(x1 / self.px))
        r0, r1 = max(0, int(y0 / self.px)), min(self.h, math.ceil(y1 / self.px))
        if c0 >= c1 or r0 >= r1:
            return None
        xs = ((np.arange(c0, c1, dtype=np.float32) + 0.5) * self.px)[None, :]
        ys = ((np.arange(r0, r1, dtype=np.float32) + 0.5) * self.px)[:, None]
        return slice(r0, r1), slice(c0, c1), xs, ys


def _vertebra_geometry(v: Vertebra, m: float) -> dict[str, float]:
    """Heights and endplate shape terms of one body in detector mm."""
    hp, depth = v.posterior_height * m, v.depth * m
    da_top = da_bot = (1.0 - v.ratio) / 2.0 * hp
    c_top = c_bot = v.concavity * m
    hp_eff = hp
    da_top += v.short * hp
    f = v.fracture
    if f is not None:
        if f.morphology == "wedge":
            da_top += f.height_loss * hp
        elif f.morphology == "biconcave":
            c_top += 0.6 * f.height_loss * hp
            c_bot += 0.4 * f.height_loss * hp
        else:  # crush: the whole body loses height, the front a little more
            hp_eff = hp * (1.0 - 0.6 * f.height_loss)
            da_top += 0.4 * f.height_loss * hp
    return {
        "hp": hp,
        "hp_eff": hp_eff,
        "depth": depth,
        "width": v.width * m,
        "da_top": da_top,
        "da_bot": da_bot,
        "c_top": c_top,
        "c_bot": c_bot,
    }


def _chain(patient: Patient, view: View, m: float) -> list[_Frame]:
    """Place the vertebrae: posterior walls stacked with discs, kyphosis then lordosis."""
    frames = []
    theta = math.radians(view.tilt_deg)
    x, y = 0.0, 0.0
    n = len(RENDER_LEVELS)
    for i, vert in enumerate(patient.vertebrae):
        frames.append(_Frame((x, y), theta))
        g = _vertebra_geometry(vert, m)
        step = g["hp_eff"]
        x, y = x + step * math.sin(theta), y + step * math.cos(theta)
        # Angle to the next level: thoracic kyphosis (T8..L1), lumbar lordosis (L1..L5).
        level = RENDER_LEVELS[i]
        if i + 1 < n:
            if level.startswith("T"):
                dtheta = -math.radians(patient.kyphosis_deg) / 5.0
            else:
                dtheta = (
                    math.radians(patient.lordosis_deg)
                    / 2.0
                    * (1.0 if level in ("L1", "L2") else 0.8)
                )
            if vert.fracture is not None:  # a collapsed front tips the spine forward
                dtheta -= 0.7 * math.atan((g["da_top"] - g["da_bot"]) / g["depth"])
            mid = theta + dtheta / 2.0
            disc = vert.disc_below * m
            x, y = x + disc * math.sin(mid), y + disc * math.cos(mid)
            theta += dtheta
    return frames


def _texture(shape: tuple[int, int], px: float, rng: np.random.Generator) -> np.ndarray:
    """Trabecular texture: band-passed noise, elongated vertically (load-bearing trabeculae)."""
    noise = rng.standard_normal(shape).astype(np.float32)
    fine = gaussian(noise, (max(0.4, 1.2 / px), max(0.3, 0.35 / px)))
    coarse = gaussian(noise, (max(0.8, 3.0 / px), max(0.8, 1.5 / px)))
    tex = fine - 0.6 * coarse
    return tex / max(float(tex.std()), 1e-6)


def _render_vertebra(
    canvas: Canvas,
    vert: Vertebra,
    frame: _Frame,
    patient: Patient,
    cfg: SynthConfig,
    m: float,
    rng: np.random.Generator,
    width_scale: float = 1.0,
) -> None:
    g = _vertebra_geometry(vert, m)
    D, W, hp = g["depth"], g["width"] * width_scale, g["hp_eff"]
    px = canvas.px
    # Bounding box in local coords: body (u in [-D, 0]) plus posterior elements behind it.
    post_len = 2.1 * D
    corners = [frame.to_world(u, v) for u in (-D - 10 * m, post_len) for v in (-0.5 * hp, 1.5 * hp)]
    xs_, ys_ = zip(*corners, strict=True)
    b = canvas.box(min(xs_), max(xs_), min(ys_), max(ys_))
    if b is None:
        return
    rs, cs, X, Y = b
    up, v = frame.to_local(X, Y)  # up: 0 at posterior wall, negative anteriorly
    u = up + D  # 0 at the anterior wall, D at the posterior wall
    path = np.zeros(np.broadcast_shapes(u.shape), dtype=np.float32)

    c_eff = max(cfg.cortex_mm * m, 1.0 * px)
    c_scale = cfg.cortex_mm * m / c_eff
    ep_eff = max(cfg.endplate_mm * m, 1.0 * px)
    ep_scale = cfg.endplate_mm * m / ep_eff * 0.3  # endplates are porous and curved
    ud = np.clip(u / D, 0.0, 1.0)
    sin_u = np.sin(np.pi * ud)
    f = vert.fracture
    top = g["da_top"] * (1.0 - ud) + g["c_top"] * sin_u
    bot = hp - g["da_bot"] * (1.0 - ud) - g["c_bot"] * sin_u
    if f is not None and f.step_mm > 0:  # fresh: the anterosuperior corner steps down
        u_step = D * rng.uniform(0.18, 0.35)
        top = top + np.where(
            u < u_step, f.step_mm * m * np.clip((u_step - u) / (0.15 * D) + 0.6, 0, 1), 0.0
        )
    if vert.schmorl > 0:  # Schmorl node: rounded herniation into the superior endplate
        us, r = D * rng.uniform(0.4, 0.7), vert.schmorl * m
        top = top + 0.8 * np.sqrt(np.clip(r * r - (u - us) ** 2, 0, None))

    # The anterior wall is concave (a "waist" at mid-height), the posterior wall nearly straight.
    waist = cfg.waist_mm * m * np.sin(np.pi * np.clip(v / hp, 0.0, 1.0))
    u = u - waist * (1.0 - ud)
    t = 2.0 * u / D - 1.0
    in_ap = np.abs(t) < 1.0
    w_out = W * np.clip(1.0 - np.abs(t) ** _SUPER, 0, None) ** (1.0 / _SUPER)
    t_in = (2.0 * u - D) / max(D - 2.0 * c_eff, 1e-3)
    w_in = (W - 2 * c_eff) * np.clip(1.0 - np.abs(t_in) ** _SUPER, 0, None) ** (1.0 / _SUPER)
    w_in = np.where(np.abs(t_in) < 1.0, w_in, 0.0)
    d_top, d_bot = v - top, bot - v
    inside = in_ap & (d_top >= 0) & (d_bot >= 0)
    ep_top = inside & (d_top < ep_eff)
    ep_bot = inside & (d_bot < ep_eff)
    wall = (w_out - w_in) * c_scale
    if f is not None and f.break_mm > 0:  # fresh: cortical break of the anterior wall, near the top
        wall = np.where((u < 3 * c_eff) & (d_top < f.break_mm * m), 0.15 * wall, wall)
    if f is not None and f.endplate_gap_mm > 0:  # fresh: superior endplate discontinuity
        ep_top &= np.abs(u - f.endplate_gap_pos * D) > f.endplate_gap_mm * m / 2

    # Trabecular density with texture and local changes.
    osteo = float(np.clip((120.0 - patient.density) / 60.0, 0.0, 1.0))
    dens = np.float32(patient.density) * (1.0 + (0.10 + 0.08 * osteo) * _texture(u.shape, px, rng))
    gain = np.zeros_like(dens)
    if f is not None and f.band_gain > 0:  # fresh: subendplate condensation band
        wav = 0.6 * m * np.sin(2 * np.pi * u / (D * rng.uniform(0.4, 0.8)) + rng.uniform(0, 6.3))
        dd = d_top - f.band_depth_mm * m - wav
        soft = 0.4 * m
        band = _sigmoid(dd / soft) * _sigmoid((f.band_width_mm * m - dd) / soft)
        band *= _sigmoid((u - 0.05 * D) / soft) * _sigmoid((0.92 * D - u) / soft)
        gain += f.band_gain * band * rng.uniform(0.8, 1.2, size=band.shape).astype(np.float32)
    if vert.sclerosis > 0:  # degenerative sclerosis hugs the endplates (both)
        near = np.clip(1.0 - np.minimum(d_top, d_bot) / (3.0 * m), 0, 1)
        gain += vert.sclerosis * near
    if f is not None and f.age == "old":  # remodelled: mild diffuse sclerosis near the collapse
        gain += 0.08 * np.clip(1.0 - d_top / (4.0 * m), 0, 1)
    if vert.schmorl > 0:  # sclerotic rim around the node
        gain += (
            0.5 * np.clip(1.0 - np.abs(d_top) / (1.2 * m), 0, 1) * (np.abs(u - D / 2) < 0.35 * D)
        )
    trab = np.where(inside & ~ep_top & ~ep_bot, w_in, 0.0)
    # Gains raise the linear attenuation of the cancellous bone as a whole (mineral + marrow):
    # "+10-30 % attenuation" of a condensation band is of the tissue, not of its mineral alone.
    mu_trab = _MU_SOFT + _D_TRAB * dens
    path += (_D_TRAB * dens + gain * mu_trab) * trab
    path += _D_CORT * np.where(inside, wall, 0.0)
    path += _D_CORT * ep_scale * np.where(ep_top | ep_bot, w_out, 0.0)
    if f is not None and f.vacuum_cleft:  # old: gas in a non-united cleft
        cleft = ((u - 0.4 * D) / (0.3 * D)) ** 2 + ((d_top - 0.3 * hp) / (1.2 * m)) ** 2
        path -= np.where(inside & (cleft < 1), mu_trab * 0.5 * w_in, 0.0)
    if f is not None and f.osteophyte_mm > 0:  # old: anterior spurs at both corners
        o = f.osteophyte_mm * m
        for vc in (float(g["da_top"]) + 0.5 * m, hp - float(g["da_bot"]) - 0.5 * m):
            spur = np.sqrt(
                ((u + o / 2 - 0.08 * D) / (o / 2 + 0.08 * D)) ** 2 + ((v - vc) / (o / 3)) ** 2
            )
            path += _D_CORT * 0.1 * W * _dome(spur)

    # Posterior elements (pedicles, articular mass, spinous process), relative to the wall.
    hp0 = g["hp"]
    thoracic = vert.level.startswith("T")
    path += _D_POST * 9 * m * _dome(_rbox(up, v, 0.17 * D, 0.3 * hp0, 0.2 * D, 0.17 * hp0))
    path += _D_POST * 8 * m * _dome(_rbox(up, v, 0.55 * D, 0.45 * hp0, 0.2 * D, 0.52 * hp0))
    ang = math.radians(40.0 if thoracic else 12.0)
    length = (0.75 if thoracic else 0.95) * D
    cu, cv = 0.7 * D + length / 2 * math.cos(ang), 0.5 * hp0 + length / 2 * math.sin(ang)
    ru = (up - cu) * math.cos(ang) + (v - cv) * math.sin(ang)
    rv = -(up - cu) * math.sin(ang) + (v - cv) * math.cos(ang)
    path += (
        _D_POST * 5 * m * _dome(_rbox(ru, rv, 0, 0, length / 2, (0.16 if thoracic else 0.25) * hp0))
    )
    canvas.L[rs, cs] += path.astype(np.float32)


def _rbox(u: np.ndarray, v: np.ndarray, cu: float, cv: float, hu: float, hv: float) -> np.ndarray:
    """Superellipse radius of (u, v) in a box centred at (cu, cv) with half sizes (hu, hv)."""
    return (np.abs((u - cu) / hu) ** 4 + np.abs((v - cv) / hv) ** 4) ** 0.25


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)


def render(cfg: SynthConfig, patient: Patient, view: View, seed: int, image: int) -> Rendered:
    """Render one radiograph of ``patient`` acquired as ``view`` (deterministic)."""
    rng = np.random.default_rng([seed, patient.index, image + 1, 7])
    px = cfg.pixel_mm * patient.site.pixel_scale
    width, height = round(cfg.detector_mm[0] / px), round(cfg.detector_mm[1] / px)
    m = view.magnification
    canvas = Canvas(height, width, px)

    frames = _chain(patient, view, m)
    # Anchor: the T12/L1 disc near the field centre; body centre a little anterior to it.
    fx = cfg.detector_mm[0] / 2 + view.shift_mm[0]
    fy = cfg.detector_mm[1] / 2 + view.shift_mm[1]
    i_t12 = RENDER_LEVELS.index("T12")
    t12 = frames[i_t12]
    hp_t12 = _vertebra_geometry(patient.vertebrae[i_t12], m)["hp_eff"]
    ax, ay = t12.to_world(
        -0.5 * patient.vertebrae[i_t12].depth * m,
        hp_t12 + 0.5 * patient.vertebrae[i_t12].disc_below * m,
    )
    off = (fx - 0.12 * view.field_mm[0] - ax + rng.normal(0, 4), fy - ay + rng.normal(0, 6))
    frames = [_Frame((fr.corner[0] + off[0], fr.corner[1] + off[1]), fr.theta) for fr in frames]

    spine_x = frames[i_t12].corner[0]
    _soft_tissue(canvas, patient, spine_x, patient.vertebrae[i_t12].depth * m, m, rng)
    _lung(canvas, frames[i_t12], patient, view, m, rng)
    _bowel_gas(canvas, frames, patient, m, view.gas_seed)
    for vert, fr in zip(patient.vertebrae, frames, strict=True):
        if view.axial_rotation_mm > 0:  # left and right halves project at different heights
            dv = view.axial_rotation_mm * m / 2
            for sgn in (-1.0, 1.0):
                shifted = _Frame(fr.to_world(sgn * dv * 0.3, sgn * dv), fr.theta)
                _render_vertebra(canvas, vert, shifted, patient, cfg, m, rng, width_scale=0.5)
        else:
            _render_vertebra(canvas, vert, fr, patient, cfg, m, rng)
    _ribs(canvas, frames, patient, m, rng)

    field = _field_box(canvas, fx, fy, view)
    display = detector(canvas, field, view, cfg, px, rng)
    if patient.site.processed:
        display = console(display, field, patient.site, px)

    levels = {}
    for vert, fr in zip(patient.vertebrae, frames, strict=True):
        g = _vertebra_geometry(vert, m)
        pts = {
            "anterior_superior": fr.to_world(-g["depth"], g["da_top"]),
            "posterior_superior": fr.to_world(0.0, 0.0),
            "posterior_inferior": fr.to_world(0.0, g["hp_eff"]),
            "anterior_inferior": fr.to_world(-g["depth"], g["hp_eff"] - g["da_bot"]),
        }
        levels[vert.level] = {k: (x / px - 0.5, y / px - 0.5) for k, (x, y) in pts.items()}
    if view.face_right:
        display = display[:, ::-1]
        r0, c0, r1, c1 = field
        field = (r0, width - c1, r1, width - c0)
        levels = {
            lv: {k: (width - 1 - x, y) for k, (x, y) in p.items()} for lv, p in levels.items()
        }
    return Rendered(
        display=np.ascontiguousarray(display), pixel_mm=px, field_box=field, levels=levels
    )


def _soft_tissue(
    canvas: Canvas,
    patient: Patient,
    spine_x: float,
    depth: float,
    m: float,
    rng: np.random.Generator,
) -> None:
    """Lateral path through the trunk: an ellipse in the axial plane around the spine.

    The back skin lies 6-9 cm behind the posterior wall of the bodies (spinous processes, erector
    muscles), the abdominal wall 6-12 cm in front of them; both grow with girth.
    """
    wb = patient.soft_tissue_cm * 10.0
    extra = wb - 250.0
    back = spine_x + (rng.uniform(60, 90) + 0.3 * extra) * m
    front = spine_x - depth - (rng.uniform(60, 120) + 0.6 * extra) * m
    xc, half = (back + front) / 2, (back - front) / 2
    xs = (np.arange(canvas.w, dtype=np.float32) + 0.5) * canvas.px
    rel = (xs - xc) / half
    profile = wb * np.sqrt(np.clip(1 - rel**2, 0, None))
    canvas.L += (_MU_SOFT * profile)[None, :].astype(np.float32)


def _lung(
    canvas: Canvas, t12: _Frame, patient: Patient, view: View, m: float, rng: np.random.Generator
) -> None:
    """Lung bases above a domed diaphragm whose posterior recess reaches T12/L1."""
    xs = (np.arange(canvas.w, dtype=np.float32) + 0.5) * canvas.px
    ys = (np.arange(canvas.h, dtype=np.float32) + 0.5) * canvas.px
    x0, y0 = t12.corner
    y_recess = y0 + (0.6 * 26 + view.diaphragm_shift_mm) * m
    ant = np.clip(x0 - xs, 0, None)
    yd = y_recess - 0.35 * ant + 0.0012 * ant**2 * m - 0.002 * np.clip(xs - x0, 0, None) ** 2
    depth = rng.uniform(30.0, 60.0) * (patient.soft_tissue_cm / 32.0)
    ramp = rng.uniform(25.0, 45.0) * m
    above = np.clip((yd[None, :] - ys[:, None]) / ramp, 0, None)
    # No lung behind the posterior elements: paraspinal muscle fills the back.
    xmask = _sigmoid((x0 + 30 * m - xs) / (20 * m))[None, :]
    canvas.L += (_D_LUNG * depth * (1.0 - np.exp(-above)) * xmask).astype(np.float32)


def _bowel_gas(canvas: Canvas, frames: list[_Frame], patient: Patient, m: float, seed: int) -> None:
    """Mottled gas pockets anterior to and over L1-L3 (they change from film to film)."""
    rng = np.random.default_rng(seed)
    i1, i3 = RENDER_LEVELS.index("L1"), RENDER_LEVELS.index("L3")
    x_post = frames[i1].corner[0]
    depth = patient.vertebrae[i1].depth * m
    y_top, y_bot = frames[i1].corner[1], frames[i3].corner[1] + 35 * m
    for _ in range(int(rng.integers(2, 10))):
        cx = rng.uniform(x_post - depth - 70 * m, x_post - 0.2 * depth)
        cy = rng.uniform(y_top, y_bot)
        size = rng.uniform(8, 30) * m
        b_ = canvas.box(cx - 1.6 * size, cx + 1.6 * size, cy - 1.2 * size, cy + 1.2 * size)
        if b_ is None:
            continue
        rs, cs, X, Y = b_
        # A pocket is a few overlapping rotated lobes; its content is mottled at the 2-4 mm scale.
        gas = np.zeros(np.broadcast_shapes(X.shape, Y.shape), dtype=np.float32)
        for _lobe in range(int(rng.integers(1, 4))):
            lx, ly = cx + rng.normal(0, 0.4 * size), cy + rng.normal(0, 0.3 * size)
            a, b, ang = (
                size * rng.uniform(0.4, 1.0),
                size * rng.uniform(0.25, 0.6),
                rng.uniform(0, np.pi),
            )
            ca, sa = np.cos(ang), np.sin(ang)
            r = np.sqrt(
                (((X - lx) * ca + (Y - ly) * sa) / a) ** 2
                + ((-(X - lx) * sa + (Y - ly) * ca) / b) ** 2
            )
            gas = np.maximum(gas, _dome(r).astype(np.float32))
        mottle = gaussian(rng.standard_normal(gas.shape).astype(np.float32), 3.0 * m / canvas.px)
        mottle = 0.65 + 0.35 * np.tanh(mottle / max(float(mottle.std()), 1e-6))
        canvas.L[rs, cs] -= (_MU_SOFT * rng.uniform(10, 40) * gas * mottle).astype(np.float32)


def _ribs(
    canvas: Canvas, frames: list[_Frame], patient: Patient, m: float, rng: np.random.Generator
) -> None:
    """Ribs 11 and 12, both sides (slightly different magnification), oblique across T11-L1."""
    for level in ("T11", "T12"):
        fr = frames[RENDER_LEVELS.index(level)]
        for side in (0, 1):
            sx = fr.corner[0] + rng.uniform(5, 20) * m + side * rng.uniform(-6, 6)
            sy = fr.corner[1] + rng.uniform(0.0, 0.3) * 25 * m + side * rng.uniform(-5, 5)
            length = rng.uniform(90, 150) * m
            slope, curv = rng.uniform(0.35, 0.75), rng.uniform(-0.001, 0.002) / m
            r = rng.uniform(3.5, 5.5) * m
            b = canvas.box(
                sx - length, sx + 5, sy - 10, sy + slope * length + curv * length**2 + 20
            )
            if b is None:
                continue
            rs, cs, X, Y = b
            s = np.clip(sx - X, 0, None)
            yc = sy + slope * s + curv * s**2
            d = np.abs(Y - yc) / np.sqrt(1 + (slope + 2 * curv * s) ** 2)
            solid = 2 * np.sqrt(np.clip(r * r - d * d, 0, None))
            inner = 2 * np.sqrt(np.clip((r - 0.6 * m) ** 2 - d * d, 0, None))
            taper = np.clip(s / (10 * m), 0, 1) * np.clip((length - s) / (25 * m), 0, 1)
            obliq = rng.uniform(0.25, 0.5)  # ribs 11-12 are faint over the bodies
            canvas.L[rs, cs] += (
                obliq * taper * (_D_CORT * (solid - inner) + 0.004 * inner)
            ).astype(np.float32)


def _field_box(canvas: Canvas, fx: float, fy: float, view: View) -> tuple[int, int, int, int]:
    fw, fh = view.field_mm
    r0, r1 = int(max(0, (fy - fh / 2) / canvas.px)), int(min(canvas.h, (fy + fh / 2) / canvas.px))
    c0, c1 = int(max(0, (fx - fw / 2) / canvas.px)), int(min(canvas.w, (fx + fw / 2) / canvas.px))
    return r0, c0, r1, c1


def _broad_blur(img: np.ndarray, px: float, *, block_mm: float, sigma_mm: float) -> np.ndarray:
    """A Gaussian blur tens of millimetres wide, done cheaply: block-mean, blur, upsample."""
    from scipy.ndimage import zoom

    k = max(1, round(block_mm / px))
    hh, ww = (img.shape[0] // k) * k, (img.shape[1] // k) * k
    small = img[:hh, :ww].reshape(hh // k, k, ww // k, k).mean(axis=(1, 3))
    small = gaussian(small, sigma_mm / (k * px))
    return zoom(small, (img.shape[0] / small.shape[0], img.shape[1] / small.shape[1]), order=1)


def detector(
    canvas: Canvas,
    field: tuple[int, int, int, int],
    view: View,
    cfg: SynthConfig,
    px: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Dose, heel effect, grid, scatter, blur, noise, log and display curve -> [0, 1]."""
    L = canvas.L
    r0, c0, r1, c1 = field
    inside = np.zeros(L.shape, dtype=bool)
    inside[r0:r1, c0:c1] = True
    L = np.where(inside, L, L + 3.5)  # collimator shutters stop ~97 %
    area = (px / 0.15) ** 2
    l_ref = float(np.percentile(L[r0:r1, c0:c1], 75))
    i0 = view.quanta * area * math.exp(l_ref)
    heel = (1.0 + view.heel * np.linspace(-1, 1, L.shape[0], dtype=np.float32))[:, None]
    primary = (i0 * heel) * np.exp(-L)
    if view.grid:
        cols = np.arange(L.shape[1], dtype=np.float32)
        primary *= (1.0 + 0.03 * np.cos(2 * np.pi * cols / rng.uniform(2.2, 3.5)))[None, :]
    scatter = _broad_blur(primary, px, block_mm=8.0, sigma_mm=40.0)  # a very blurred primary
    signal = gaussian(primary + view.scatter * scatter, view.blur_px)
    noise = rng.standard_normal(signal.shape, dtype=np.float32)
    counts = signal + np.sqrt(np.clip(signal, 0, None)) * noise
    counts += cfg.electronic_noise * rng.standard_normal(signal.shape, dtype=np.float32)
    p = -np.log(np.clip(counts, 0.5, None) / i0)
    # Dynamic-range compression, as DR consoles do: subtract most of a broad local average so
    # bone detail is not lost between the thick abdomen and the thin back.
    p = p - view.compression * _broad_blur(
        np.where(inside, p, l_ref), px, block_mm=4.0, sigma_mm=30.0
    )
    # Window on the patient, not on the air in front of a thin abdomen.
    lf = canvas.L[r0:r1, c0:c1]
    tissue = lf > 0.5 * float(np.median(lf))
    pf = p[r0:r1, c0:c1]
    lo, med, hi = np.percentile(pf[tissue] if tissue.mean() > 0.2 else pf, [1.0, 50.0, 99.8])
    d = np.clip((p - lo) / max(hi - lo, 1e-6), 0, 1)
    # Auto-ranging tone curve: the median tissue lands mid-grey, then the site's own gamma.
    mid = float(np.clip((med - lo) / max(hi - lo, 1e-6), 0.05, 0.95))
    d = d ** (math.log(0.45) / math.log(mid) * view.gamma)
    d[~inside] = np.clip(d[~inside], 0.97, 1.0)
    return d.astype(np.float32)


def console(
    display: np.ndarray, field: tuple[int, int, int, int], site: Site, px: float
) -> np.ndarray:
    """The vendor console's processing after the detector's own curve: an unsharp mask (edge
    enhancement) and a display curve. Both change what a network sees at a fixed threshold
    while the anatomy stays the same — what moves an operating point between vendors."""
    d = display
    if site.edge_enhance:
        d = d + site.edge_enhance * (d - gaussian(d, site.edge_radius_mm / px))
    if site.display_gamma != 1.0:
        d = np.clip(d, 0.0, 1.0) ** site.display_gamma
    d = np.clip(d, 0.0, 1.0)
    r0, c0, r1, c1 = field
    inside = np.zeros(d.shape, dtype=bool)
    inside[r0:r1, c0:c1] = True
    d[~inside] = np.clip(display[~inside], 0.97, 1.0)  # shutters stay white
    return d.astype(np.float32)
