"""Built-in site profiles: synthetic clinics whose films differ from the home site's as real
vendors' and sites' do — console processing (edge enhancement, display curve), dose, detector,
header fields and patient mix — for proving a site validation on (``data synth --site-profile``).

The anatomy and the fractures are drawn exactly as at home; only acquisition, processing and the
patient mix change, so whatever a bundle does differently on these films is the site shift and
nothing else. What each does to the demo's bundle is measured in
``benchmarks/results/<machine>-site.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgevcf.data.synth.config import Site, SynthConfig
from edgevcf.errors import ConfigError

__all__ = ["PROFILES", "SiteProfile", "apply_profile"]


@dataclass(frozen=True)
class SiteProfile:
    """A named site: a sentence for ``--help`` and the generator settings it changes."""

    name: str
    summary: str
    overrides: dict[str, Any] = field(default_factory=dict)


#: the second detector of the shifted clinics: a CR reader processed as at home
_CR_HOME_LIKE = Site(
    "synth-clinic-cr",
    "CR",
    "MONOCHROME1",
    1.15,
    rescale_slope=0.684,
    rescale_intercept=200.0,
    manufacturer="SynthVendor Plate",
    model="PlateReader 20",
    institution="Synth Clinic",
    kvp=(80.0, 95.0),
    mas=(10.0, 40.0),
)


def _clinic(
    manufacturer: str, model: str, *, cohort: dict[str, Any] | None = None, **room: Any
) -> dict[str, Any]:
    """A clinic with a DX room (60 % of films) made by ``manufacturer`` / ``model`` and set up
    as ``room`` says (its processing, dose, pixel size), beside a home-like CR reader (40 %)."""
    dx = Site(
        "synth-clinic-dx",
        "DX",
        "MONOCHROME2",
        room.pop("pixel_scale", 1.0),
        manufacturer=manufacturer,
        model=model,
        institution="Synth Clinic",
        **room,
    )
    return {"sites": (dx, _CR_HOME_LIKE), "site_weights": (0.6, 0.4), **(cohort or {})}


PROFILES: dict[str, SiteProfile] = {
    p.name: p
    for p in (
        SiteProfile("home", "the home site's mix: three detectors, no console processing"),
        SiteProfile(
            "clinic-edge",
            "a DX room whose console enhances edges (unsharp mask), beside a CR reader; older "
            "patients: moves the operating point while AUC holds",
            _clinic(
                "SynthVendor Edge",
                "EdgeDR 500",
                pixel_scale=0.93,
                kvp=(85.0, 100.0),
                mas=(6.0, 20.0),
                edge_enhance=1.0,
                edge_radius_mm=3.0,
                cohort={"age_mean": 76.0},
            ),
        ),
        SiteProfile(
            "clinic-bright",
            "a DX room with a brighter display curve (gamma 0.7), beside a CR reader",
            _clinic("SynthVendor Lux", "LuxDR 300", display_gamma=0.7),
        ),
        SiteProfile(
            "clinic-dark",
            "a DX room with a darker display curve (gamma 1.5), beside a CR reader",
            _clinic("SynthVendor Umbra", "UmbraDR 100", display_gamma=1.5),
        ),
        SiteProfile(
            "clinic-lowdose",
            "a DX room run at a third of the dose (noisier films), beside a CR reader",
            _clinic(
                "SynthVendor Lite",
                "LiteDR 50",
                dose=0.33,
                mas=(2.0, 8.0),
            ),
        ),
    )
}


def apply_profile(cfg: SynthConfig, name: str) -> SynthConfig:
    """``cfg`` with site profile ``name``'s settings."""
    profile = PROFILES.get(name)
    if profile is None:
        raise ConfigError(
            f"unknown site profile {name!r}", hint=f"choose one of {', '.join(PROFILES)}"
        )
    return cfg.with_(**profile.overrides)
