"""Sample a synthetic patient (spine, fractures, mimics) and each radiograph's acquisition.

A patient is drawn once from ``rng(seed, patient)``; each of its images gets its own
``rng(seed, patient, image)`` for positioning, exposure, breathing and bowel gas, so repeat
views of one spine differ the way real repeat films do, and the result does not depend on how
the work is spread over processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from edgevcf.data.synth.config import (
    DEPTH_MM,
    DISC_BELOW_MM,
    FRACTURE_LEVEL_WEIGHTS,
    FRACTURE_LEVELS,
    POSTERIOR_HEIGHT_MM,
    RENDER_LEVELS,
    Site,
    SynthConfig,
)

Age = Literal["fresh", "old"]
Morphology = Literal["wedge", "biconcave", "crush"]


@dataclass
class Fracture:
    """One fractured vertebra and the radiographic signs it carries."""

    level: str
    age: Age
    morphology: Morphology
    height_loss: float  # fraction of the expected height
    grade: int  # Genant 0 (<20 %), 1, 2, 3
    step_mm: float = 0.0  # anterosuperior cortical step (fresh)
    break_mm: float = 0.0  # length of anterior cortical break (fresh)
    band_gain: float = 0.0  # subendplate condensation, relative density increase (fresh)
    band_width_mm: float = 0.0
    band_depth_mm: float = 0.0
    endplate_gap_mm: float = 0.0  # superior endplate discontinuity (fresh)
    endplate_gap_pos: float = 0.5  # where along the depth (0 anterior .. 1 posterior)
    osteophyte_mm: float = 0.0  # old
    vacuum_cleft: bool = False  # old
    disc_narrowing: float = 0.0  # old: fraction of the disc above lost

    def describe(self) -> str:
        """Compact manifest form, e.g. ``L1:fresh:g1:wedge``."""
        return f"{self.level}:{self.age}:g{self.grade}:{self.morphology}"


@dataclass
class Vertebra:
    """Per-level anatomy in millimetres (before magnification)."""

    level: str
    posterior_height: float
    depth: float
    width: float  # left-right
    ratio: float  # normal anterior/posterior height
    concavity: float  # normal endplate concavity
    disc_below: float
    fracture: Fracture | None = None
    schmorl: float = 0.0  # node radius (mm), superior endplate
    sclerosis: float = 0.0  # degenerative endplate sclerosis gain (both endplates)
    short: float = 0.0  # benign short/wedged variant: anterior height loss 10-20 %


@dataclass
class Patient:
    """Everything that stays the same across a patient's images."""

    patient_id: str
    index: int
    age_years: int
    sex: str
    site: Site
    stature: float
    density: float  # trabecular mineral, mg/cm3
    soft_tissue_cm: float
    lordosis_deg: float
    kyphosis_deg: float
    vertebrae: list[Vertebra]
    label_true: int
    label: int  # as recorded (label noise applied per patient, like one MRI report)
    n_images: int
    mimics: list[str] = field(default_factory=list)

    @property
    def fractures(self) -> list[Fracture]:
        """Fractures, cranial to caudal."""
        return [v.fracture for v in self.vertebrae if v.fracture is not None]


@dataclass
class View:
    """One exposure of a patient: positioning, dose, breathing, overlays."""

    magnification: float
    tilt_deg: float  # in-plane rotation of the spine
    shift_mm: tuple[float, float]
    field_mm: tuple[float, float]
    face_right: bool  # patient faces right in the image (horizontal flip)
    axial_rotation_mm: float  # vertical offset between left/right contours (double contour)
    quanta: float
    blur_px: float
    scatter: float
    grid: bool
    heel: float
    diaphragm_shift_mm: float
    gamma: float
    compression: float  # fraction of the broad local average removed by the console
    gas_seed: int


def _genant_grade(loss: float) -> int:
    if loss < 0.20:
        return 0
    if loss < 0.25:
        return 1
    if loss <= 0.40:
        return 2
    return 3


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def sample_patient(cfg: SynthConfig, seed: int, index: int) -> Patient:
    """Draw patient ``index`` of the cohort made from ``seed``."""
    rng = np.random.default_rng([seed, index, 0])
    d = cfg.difficulty
    sex = "F" if rng.random() < cfg.female_share else "M"
    age = int(np.clip(rng.normal(cfg.age_mean, cfg.age_sd), 40, 95))
    if cfg.site_weights:
        w = np.asarray(cfg.site_weights, dtype=np.float64)
        site = cfg.sites[int(rng.choice(len(cfg.sites), p=w / w.sum()))]
    else:
        site = cfg.sites[int(rng.integers(len(cfg.sites)))]
    stature = float(rng.uniform(*cfg.stature)) * (0.95 if sex == "F" else 1.0)
    lo, hi = cfg.bone_density_mg_cm3
    density = float(
        np.clip(
            rng.normal(_lerp(hi, lo, (age - 40) / 55.0) - (15 if sex == "F" else 0), 20), lo, hi
        )
    )

    vertebrae = []
    for level in RENDER_LEVELS:
        thoracic = level.startswith("T") or level == "L1"
        mean, sd = cfg.ratio_thoracic if thoracic else cfg.ratio_lumbar
        vertebrae.append(
            Vertebra(
                level=level,
                posterior_height=POSTERIOR_HEIGHT_MM[level]
                * stature
                * (1 + rng.uniform(-1, 1) * cfg.height_jitter),
                depth=DEPTH_MM[level] * stature * (1 + rng.uniform(-1, 1) * cfg.height_jitter),
                width=DEPTH_MM[level] * stature * rng.uniform(1.35, 1.55),
                ratio=float(np.clip(rng.normal(mean, sd), 0.85, 1.05)),
                concavity=float(rng.uniform(0.3, 1.0)),
                disc_below=max(1.5, DISC_BELOW_MM[level] + rng.uniform(-1, 1) * cfg.disc_jitter_mm),
            )
        )
    by_level = {v.level: v for v in vertebrae}

    fresh = rng.random() < cfg.prevalence
    old = rng.random() < (0.15 if fresh else cfg.old_fracture_prob)
    levels = list(FRACTURE_LEVELS)
    weights = np.array([FRACTURE_LEVEL_WEIGHTS[lv] for lv in levels])
    ages: list[Age] = []
    if fresh:
        ages.append("fresh")
        if rng.random() < cfg.multi_fracture_prob:
            ages.extend(["fresh"] * int(rng.integers(1, 3)))
    if old:
        ages.append("old")
        if rng.random() < cfg.multi_fracture_prob:
            ages.append("old")
    chosen = rng.choice(
        len(levels), size=min(len(ages), len(levels)), replace=False, p=weights / weights.sum()
    )
    for age_kind, li in zip(ages, chosen, strict=False):
        by_level[levels[li]].fracture = _sample_fracture(cfg, rng, levels[li], age_kind)
        if age_kind == "old" and by_level[levels[li]].fracture.disc_narrowing > 0:  # type: ignore[union-attr]
            above = RENDER_LEVELS[RENDER_LEVELS.index(levels[li]) - 1]
            by_level[above].disc_below *= 1 - by_level[levels[li]].fracture.disc_narrowing  # type: ignore[union-attr]

    # Hard negatives: benign findings a reader may mistake for a fresh fracture.
    mimic_p = min(0.95, cfg.mimic_rate * _lerp(0.4, 1.6, d))
    mimics: list[str] = []
    free = [by_level[lv] for lv in FRACTURE_LEVELS if by_level[lv].fracture is None]
    for kind in ("short", "schmorl", "sclerosis"):
        if free and rng.random() < mimic_p:
            v = free[int(rng.integers(len(free)))]
            if kind == "short":
                v.short = float(rng.uniform(0.10, 0.20))
            elif kind == "schmorl":
                v.schmorl = float(rng.uniform(2.0, 5.0))
            else:
                v.sclerosis = float(rng.uniform(0.15, 0.40))
                above = RENDER_LEVELS[RENDER_LEVELS.index(v.level) - 1]
                by_level[above].sclerosis = max(
                    by_level[above].sclerosis, v.sclerosis * rng.uniform(0.6, 1.0)
                )
                by_level[above].disc_below *= rng.uniform(0.6, 0.85)  # degenerated disc narrows
            mimics.append(f"{kind}:{v.level}")

    label_true = int(fresh)
    label = label_true ^ int(rng.random() < cfg.label_noise)
    n_images = 1 + int(
        rng.choice(len(cfg.images_per_patient), p=np.asarray(cfg.images_per_patient))
    )
    return Patient(
        patient_id=f"P{index:05d}",
        index=index,
        age_years=age,
        sex=sex,
        site=site,
        stature=stature,
        density=density,
        soft_tissue_cm=float(rng.uniform(*cfg.soft_tissue_cm)),
        lordosis_deg=float(rng.uniform(*cfg.lordosis_deg)),
        kyphosis_deg=float(rng.uniform(-2.0, 6.0)),
        vertebrae=vertebrae,
        label_true=label_true,
        label=label,
        n_images=n_images,
        mimics=mimics,
    )


def _sample_fracture(cfg: SynthConfig, rng: np.random.Generator, level: str, age: Age) -> Fracture:
    morph: Morphology = ("wedge", "biconcave", "crush")[
        int(rng.choice(3, p=np.asarray(cfg.morphology_weights) / sum(cfg.morphology_weights)))
    ]
    mean, sd = cfg.fresh_height_loss if age == "fresh" else cfg.old_height_loss
    loss = float(np.clip(rng.normal(mean, sd), 0.05, 0.6))
    frac = Fracture(
        level=level, age=age, morphology=morph, height_loss=loss, grade=_genant_grade(loss)
    )
    if age == "fresh":
        # Conspicuity falls with difficulty; each sign may also be radiographically occult.
        k = _lerp(3.0, 0.55, cfg.difficulty) * rng.uniform(0.6, 1.2)
        widen = _lerp(2.0, 1.0, cfg.difficulty)  # below 0.5 difficulty: wider than the literature
        p_occult = _lerp(0.05, 0.4, cfg.difficulty)
        if rng.random() > p_occult:
            frac.band_gain = float(rng.uniform(*cfg.fresh_band_gain) * k)
            frac.band_width_mm = float(rng.uniform(*cfg.fresh_band_width_mm) * max(1.0, widen))
            frac.band_depth_mm = float(rng.uniform(*cfg.fresh_band_depth_mm))
        if rng.random() > p_occult:
            frac.step_mm = float(rng.uniform(*cfg.fresh_step_mm) * k)
            frac.break_mm = float(rng.uniform(2.0, 5.0) * min(k, 1.5))
        if rng.random() > p_occult:
            frac.endplate_gap_mm = float(rng.uniform(2.0, 6.0) * min(k, 1.5))
            frac.endplate_gap_pos = float(rng.uniform(0.25, 0.75))
    else:
        if rng.random() < cfg.old_osteophyte_prob:
            frac.osteophyte_mm = float(rng.uniform(2.0, 6.0))
        frac.vacuum_cleft = bool(rng.random() < cfg.old_vacuum_cleft_prob)
        if rng.random() < cfg.old_disc_narrowing_prob:
            frac.disc_narrowing = float(rng.uniform(0.2, 0.5))
    return frac


def sample_view(cfg: SynthConfig, patient: Patient, seed: int, image: int) -> View:
    """Draw the acquisition of image ``image`` (0-based) of ``patient``."""
    rng = np.random.default_rng([seed, patient.index, image + 1])
    d = cfg.difficulty
    # Larger patients get fewer quanta at the detector: the obese/noisy hard negatives.
    body = (patient.soft_tissue_cm - cfg.soft_tissue_cm[0]) / max(1e-6, np.ptp(cfg.soft_tissue_cm))
    quanta = rng.uniform(*cfg.quanta_per_pixel) * _lerp(2.0, 0.7, d) * _lerp(1.3, 0.5, body)
    quanta *= patient.site.dose
    fw, fh = cfg.field_mm
    return View(
        magnification=float(rng.uniform(*cfg.magnification)),
        tilt_deg=float(rng.normal(0, 2.5)),
        shift_mm=(float(rng.normal(0, 8)), float(rng.normal(0, 10))),
        field_mm=(fw * rng.uniform(0.9, 1.1), fh * rng.uniform(0.9, 1.1)),
        face_right=bool(rng.random() < 0.5),
        axial_rotation_mm=float(rng.uniform(0.8, 3.0)) if rng.random() < cfg.rotation_prob else 0.0,
        quanta=float(quanta),
        blur_px=float(rng.uniform(*cfg.blur_px)),
        scatter=float(rng.uniform(*cfg.scatter_to_primary)),
        grid=bool(rng.random() < cfg.grid_line_prob),
        heel=float(rng.uniform(-1, 1) * cfg.heel_effect),
        diaphragm_shift_mm=float(rng.normal(0, 12)),
        gamma=float(rng.uniform(0.8, 1.25)),
        compression=float(rng.uniform(0.5, 0.75)),
        gas_seed=int(rng.integers(2**31)),
    )


def exposure_facts(site: Site, seed: int, patient: int, image: int) -> tuple[float, float]:
    """The header's tube voltage (kV) and exposure (mAs) of one film, from a stream of their
    own (so drawing them changed no image): the site's ranges, the mAs scaled by its dose."""
    rng = np.random.default_rng([seed, patient, image + 1, 98])
    kvp = float(rng.uniform(*site.kvp))
    mas = float(rng.uniform(*site.mas)) * site.dose
    return round(kvp), round(mas, 1)
