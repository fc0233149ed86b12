"""Every knob of the synthetic lateral thoracolumbar radiograph, with its literature default.

Numbers come from DESIGN.md ("The synthetic radiograph generator"). ``difficulty`` is the one
control the training issue tunes: it scales how conspicuous the signs of a *fresh* fracture are,
how often its signs are occult, how often benign mimics appear, and the dose.

The scale, as measured (benchmarks/results/reference-models.md): at 0.0, the default, fresh
condensation bands are up to twice the literature width and contrast and a MobileNetV3 trained
from scratch at 224 px on 1,500 synthetic patients reaches a validation AUC in the study's range
within ~20 CPU minutes; at 0.5 the signs have their literature sizes and such a network stays
near chance (it would need pretrained weights or a higher resolution); 1.0 is harder still.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from edgevcf.errors import ConfigError

#: Levels drawn (T8 and L5 only as context beyond the collimated field).
RENDER_LEVELS = ("T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
#: Levels where fractures may occur (the study's thoracolumbar range).
FRACTURE_LEVELS = ("T10", "T11", "T12", "L1", "L2", "L3")

# Anatomy (mm, before magnification).
POSTERIOR_HEIGHT_MM = {
    "T8": 19.5,
    "T9": 20.5,
    "T10": 22.0,
    "T11": 24.0,
    "T12": 26.0,
    "L1": 27.0,
    "L2": 28.0,
    "L3": 29.0,
    "L4": 29.0,
    "L5": 28.0,
}
DEPTH_MM = {
    "T8": 25.5,
    "T9": 27.0,
    "T10": 28.0,
    "T11": 29.0,
    "T12": 30.0,
    "L1": 32.0,
    "L2": 33.0,
    "L3": 34.0,
    "L4": 35.0,
    "L5": 35.0,
}
#: Disc below each level (T10/11 .. L2/3 from the literature; the rest extrapolated).
DISC_BELOW_MM = {
    "T8": 4.5,
    "T9": 5.0,
    "T10": 5.0,
    "T11": 5.5,
    "T12": 6.0,
    "L1": 7.5,
    "L2": 8.5,
    "L3": 9.5,
    "L4": 10.0,
    "L5": 10.0,
}
FRACTURE_LEVEL_WEIGHTS = {"T10": 0.05, "T11": 0.12, "T12": 0.25, "L1": 0.30, "L2": 0.18, "L3": 0.10}

# Linear attenuation at ~55 keV, per cm.
MU_SOFT_PER_CM = 0.21
MU_CORTICAL_PER_CM = 0.67
MU_FAT_PER_CM = 0.19
MU_LUNG_PER_CM = 0.05
#: Extra attenuation per mg/cm3 of bone mineral in trabecular bone (cortical ~1,100 mg/cm3).
MU_PER_MG_CM3 = (MU_CORTICAL_PER_CM - MU_SOFT_PER_CM) / 1100.0

Photometric = Literal["MONOCHROME1", "MONOCHROME2"]


@dataclass(frozen=True)
class Site:
    """An acquisition site's detector: what it is, how it stores images and how its console
    processes them (vendors differ in exactly these; see :mod:`edgevcf.data.synth.sites`).

    The processing fields at their defaults leave an image untouched, so the built-in sites
    render the same bytes as before they existed.

    Attributes:
        name: The site's name (the manifest's ``site`` column).
        modality: ``DX`` or ``CR``.
        photometric: How pixels are stored.
        pixel_scale: Times ``SynthConfig.pixel_mm``.
        rescale_slope: Modality LUT slope written to DICOM.
        rescale_intercept: Modality LUT intercept.
        manufacturer: DICOM Manufacturer.
        model: DICOM ManufacturerModelName.
        institution: DICOM InstitutionName (default: ``name``).
        kvp: Tube voltage range (kV), drawn per film for the header.
        dose: Quanta at the detector times this (lower dose: noisier films).
        mas: Exposure range (mAs) at ``dose`` 1, drawn per film for the header (scaled by dose).
        edge_enhance: Unsharp-mask amount of the console (0: none; 1: the detail doubled).
        edge_radius_mm: The unsharp mask's Gaussian sigma.
        display_gamma: The console's display curve, applied as ``d ** display_gamma`` (< 1
            brighter, > 1 darker).
    """

    name: str
    modality: Literal["DX", "CR"]
    photometric: Photometric
    pixel_scale: float = 1.0  # times SynthConfig.pixel_mm
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    manufacturer: str = "edgevcf-synth"
    model: str = "synth-detector"
    institution: str = ""
    kvp: tuple[float, float] = (75.0, 90.0)
    dose: float = 1.0
    mas: tuple[float, float] = (8.0, 32.0)
    edge_enhance: float = 0.0
    edge_radius_mm: float = 2.0
    display_gamma: float = 1.0

    @property
    def processed(self) -> bool:
        """Whether the console changes the image beyond the detector's own curve."""
        return self.edge_enhance != 0.0 or self.display_gamma != 1.0


DEFAULT_SITES = (
    Site("synth-dx-a", "DX", "MONOCHROME2", 1.0),
    Site("synth-cr-b", "CR", "MONOCHROME1", 1.15, rescale_slope=0.684, rescale_intercept=200.0),
    Site("synth-dx-c", "DX", "MONOCHROME2", 0.93),
)


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of the generator. Defaults follow the literature (DESIGN.md).

    Attributes are grouped: acquisition, anatomy, pathology, cohort. Ranges are (low, high)
    drawn uniformly per patient or per image as the name says.
    """

    # --- acquisition ---------------------------------------------------------------------
    pixel_mm: float = 0.15
    detector_mm: tuple[float, float] = (350.0, 430.0)  # width, height
    field_mm: tuple[float, float] = (190.0, 270.0)  # collimated field (width, height), +-10 %
    magnification: tuple[float, float] = (1.1, 1.2)
    bits_stored: int = 12
    quanta_per_pixel: tuple[float, float] = (1500.0, 5000.0)  # behind the patient, at 0.15 mm
    electronic_noise: float = 6.0  # quanta (rms) at 0.15 mm
    blur_px: tuple[float, float] = (0.5, 1.0)
    scatter_to_primary: tuple[float, float] = (0.2, 0.6)
    grid_line_prob: float = 0.3
    heel_effect: float = 0.08
    sites: tuple[Site, ...] = DEFAULT_SITES
    site_weights: tuple[float, ...] = ()  # empty: each site equally likely
    # --- anatomy -------------------------------------------------------------------------
    height_jitter: float = 0.08
    stature: tuple[float, float] = (0.9, 1.1)
    ratio_thoracic: tuple[float, float] = (0.93, 0.04)  # normal anterior/posterior height, mean, sd
    ratio_lumbar: tuple[float, float] = (0.97, 0.04)
    disc_jitter_mm: float = 1.5
    lordosis_deg: tuple[float, float] = (10.0, 20.0)  # over L1-L3
    cortex_mm: float = 0.35
    endplate_mm: float = 0.5
    waist_mm: float = 1.5  # anterior-wall concavity of the vertebral body at mid-height
    bone_density_mg_cm3: tuple[float, float] = (60.0, 180.0)
    soft_tissue_cm: tuple[float, float] = (25.0, 40.0)
    rotation_prob: float = 0.25  # axial rotation -> double endplate contour
    # --- pathology -----------------------------------------------------------------------
    multi_fracture_prob: float = 0.2
    morphology_weights: tuple[float, float, float] = (0.6, 0.3, 0.1)  # wedge, biconcave, crush
    fresh_height_loss: tuple[float, float] = (0.15, 0.08)  # mean, sd of fractional loss
    old_height_loss: tuple[float, float] = (0.36, 0.10)
    fresh_band_gain: tuple[float, float] = (0.10, 0.30)
    fresh_band_width_mm: tuple[float, float] = (2.0, 6.0)
    fresh_band_depth_mm: tuple[float, float] = (2.0, 8.0)
    fresh_step_mm: tuple[float, float] = (0.8, 2.5)
    old_osteophyte_prob: float = 0.5
    old_vacuum_cleft_prob: float = 0.10
    old_disc_narrowing_prob: float = 0.5
    mimic_rate: float = 0.35  # per spine, for each kind of hard negative, at difficulty 0.5
    # --- cohort --------------------------------------------------------------------------
    prevalence: float = 0.45  # patients with >= 1 fresh fracture
    old_fracture_prob: float = 0.45  # among patients without a fresh one; 0.15 among those with
    label_noise: float = 0.07
    age_mean: float = 70.0  # years; clipped to 40-95
    age_sd: float = 11.0
    female_share: float = 0.7
    images_per_patient: tuple[float, ...] = (0.72, 0.22, 0.06)  # P(1), P(2), P(3)
    difficulty: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if not 0.05 <= self.pixel_mm <= 2.0:
            problems.append(f"pixel_mm must be in 0.05..2.0, got {self.pixel_mm}")
        if not 0.0 <= self.difficulty <= 1.0:
            problems.append(f"difficulty must be in 0..1, got {self.difficulty}")
        if not 0.0 <= self.prevalence <= 1.0:
            problems.append(f"prevalence must be in 0..1, got {self.prevalence}")
        if not 0.0 <= self.label_noise < 0.5:
            problems.append(f"label_noise must be in 0..0.5, got {self.label_noise}")
        if self.bits_stored not in (8, 10, 12, 14, 16):
            problems.append(f"bits_stored must be 8, 10, 12, 14 or 16, got {self.bits_stored}")
        if not self.sites:
            problems.append("at least one site is needed")
        if self.site_weights and (
            len(self.site_weights) != len(self.sites)
            or min(self.site_weights) < 0
            or sum(self.site_weights) <= 0
        ):
            problems.append("site_weights must give one non-negative weight per site")
        if not 0.0 <= self.female_share <= 1.0:
            problems.append(f"female_share must be in 0..1, got {self.female_share}")
        for site in self.sites:
            if site.dose <= 0 or site.display_gamma <= 0 or site.edge_radius_mm <= 0:
                problems.append(
                    f"site {site.name}: dose, display_gamma, edge_radius_mm must be > 0"
                )
        if abs(sum(self.images_per_patient) - 1.0) > 1e-6:
            problems.append("images_per_patient probabilities must sum to 1")
        if problems:
            raise ConfigError("invalid synthetic-data settings: " + "; ".join(problems))

    @classmethod
    def fast(cls, **overrides: Any) -> SynthConfig:
        """The test/demo mode: 0.6 mm pixels (about 580x720), 16x fewer pixels."""
        return cls(**{"pixel_mm": 0.6, **overrides})

    def with_(self, **overrides: Any) -> SynthConfig:
        """A copy with some fields changed."""
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (recorded next to the data for reproducibility)."""
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of all settings."""
        return [f.name for f in fields(cls)]
