"""The subgroup fields and bands, defined once for every stage that reports by subgroup.

Site validation, the model card, the drift watch and ``score`` all say ``age_band`` or
``manufacturer`` and mean the same bands; they come from here. A film's levels are read from its
DICOM header (:func:`from_header`) unless the manifest has a column of the same name, which wins
(:func:`levels_for`): a site may know a patient's sex better than a film's header does. Raw manifest
columns the generator and many exports carry (``age`` in years, ``pixel_spacing_mm``, ``kvp``,
``exposure_mas``) are banded as the header values would be.

Identifiers never leave the reader: the header is read without pixels, only the tags named here
are looked at (never PatientName, PatientID, UIDs or dates beyond an age computed from them), and
an institution name is replaced by a salted hash where the site gives a salt.

numpy-free and torch-free (pydicom only when a DICOM header is read): the cart's drift watch uses
it too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "FIELDS",
    "UNKNOWN",
    "Field",
    "age_band",
    "exposure_band",
    "from_columns",
    "from_header",
    "kvp_band",
    "levels_for",
    "order",
    "read_header",
    "spacing_band",
]

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Field:
    """One subgroup field: its name, what it is read from, and its levels in report order
    (open-ended fields such as ``manufacturer`` list none: their levels are the values seen)."""

    name: str
    source: str
    levels: tuple[str, ...] = ()


FIELDS: tuple[Field, ...] = (
    Field("sex", "PatientSex", ("F", "M", "O", UNKNOWN)),
    Field(
        "age_band",
        "PatientAge, else StudyDate - PatientBirthDate (years)",
        ("<50", "50-64", "65-79", ">=80", UNKNOWN),
    ),
    Field("manufacturer", "Manufacturer"),
    Field("model", "ManufacturerModelName"),
    Field("institution", "InstitutionName (a salted hash where the site gives a salt)"),
    Field("modality", "Modality", ("CR", "DX", "other", UNKNOWN)),
    Field(
        "spacing_band",
        "ImagerPixelSpacing, else PixelSpacing (mm)",
        ("<0.12", "0.12-0.16", ">0.16", UNKNOWN),
    ),
    Field("kvp_band", "KVP (kV)", ("<70", "70-84", "85-99", ">=100", UNKNOWN)),
    Field(
        "exposure_band",
        "Exposure (mAs), else ExposureInuAs / 1000",
        ("<5", "5-19", ">=20", UNKNOWN),
    ),
)
NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)


def _number(value: Any) -> float | None:
    try:
        v = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _band(value: Any, edges: tuple[float, ...], names: tuple[str, ...]) -> str:
    """``names[i]`` for the first edge the value lies below, the last name above them all."""
    v = _number(value)
    if v is None or v < 0:
        return UNKNOWN
    for edge, name in zip(edges, names, strict=False):
        if v < edge:
            return name
    return names[-1]


def age_band(years: Any) -> str:
    """< 50, 50-64, 65-79, >= 80 (years), else unknown."""
    return _band(years, (50, 65, 80), ("<50", "50-64", "65-79", ">=80"))


def spacing_band(mm: Any) -> str:
    """Pixel spacing < 0.12, 0.12-0.16, > 0.16 mm, else unknown."""
    v = _number(mm)
    if v is None or v <= 0:
        return UNKNOWN
    return "<0.12" if v < 0.12 else "0.12-0.16" if v <= 0.16 else ">0.16"


def kvp_band(kv: Any) -> str:
    """Tube voltage < 70, 70-84, 85-99, >= 100 kV, else unknown."""
    v = _number(kv)
    return (
        UNKNOWN
        if v is None or v <= 0
        else _band(v, (70, 85, 100), ("<70", "70-84", "85-99", ">=100"))
    )


def exposure_band(mas: Any) -> str:
    """Exposure < 5, 5-19, >= 20 mAs, else unknown."""
    v = _number(mas)
    return UNKNOWN if v is None or v <= 0 else _band(v, (5, 20), ("<5", "5-19", ">=20"))


def _sex(value: Any) -> str:
    v = str(value or "").strip().upper()[:1]
    return v if v in ("M", "F", "O") else UNKNOWN


def _modality(value: Any) -> str:
    v = str(value or "").strip().upper()
    return UNKNOWN if not v else v if v in ("CR", "DX") else "other"


def _text(value: Any) -> str:
    v = " ".join(str(value or "").split())
    return v or UNKNOWN


def _institution(value: Any, salt: str | None) -> str:
    v = _text(value)
    if v == UNKNOWN or salt is None:
        return v
    return "inst-" + hashlib.sha256(f"{salt}\0{v}".encode()).hexdigest()[:12]


def _dicom_age(value: Any) -> float | None:
    """PatientAge ("065Y", "030M", "012W", "004D") in years."""
    v = str(value or "").strip().upper()
    if len(v) != 4 or not v[:3].isdigit() or v[3] not in "DWMY":
        return None
    return int(v[:3]) / {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}[v[3]]


def _dicom_date(value: Any) -> dt.date | None:
    try:
        return dt.datetime.strptime(str(value or "").strip()[:8], "%Y%m%d").date()
    except ValueError:
        return None


def _years_between(born: dt.date | None, then: dt.date | None) -> float | None:
    if born is None or then is None or then < born:
        return None
    return (then - born).days / 365.25


def read_header(path: str | os.PathLike[str]) -> Any | None:
    """The DICOM header of ``path`` without its pixels, or None for a non-DICOM file (a PNG
    has no header: its levels come from the manifest or stay unknown)."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return None
    if head[128:132] != b"DICM":
        return None
    import pydicom

    try:
        return pydicom.dcmread(p, stop_before_pixels=True)
    except Exception:  # a damaged header: the film's levels are unknown, the reader refuses it
        return None


def from_header(ds: Any, *, institution_salt: str | None = None) -> dict[str, str]:
    """Every field's level from a DICOM dataset (unknown where a tag is absent or invalid)."""
    if ds is None:
        return dict.fromkeys(NAMES, UNKNOWN)
    get = ds.get
    years = _dicom_age(get("PatientAge"))
    if years is None:
        years = _years_between(_dicom_date(get("PatientBirthDate")), _dicom_date(get("StudyDate")))
    spacing = get("ImagerPixelSpacing") or get("PixelSpacing")
    try:
        mm = float(spacing[0]) if spacing else None
    except (TypeError, ValueError, IndexError):
        mm = None
    mas = get("Exposure")
    if _number(mas) is None and _number(get("ExposureInuAs")) is not None:
        mas = float(get("ExposureInuAs")) / 1000.0
    return {
        "sex": _sex(get("PatientSex")),
        "age_band": age_band(years),
        "manufacturer": _text(get("Manufacturer")),
        "model": _text(get("ManufacturerModelName")),
        "institution": _institution(get("InstitutionName"), institution_salt),
        "modality": _modality(get("Modality")),
        "spacing_band": spacing_band(mm),
        "kvp_band": kvp_band(get("KVP")),
        "exposure_band": exposure_band(mas),
    }


#: raw manifest columns and the field each bands into
_RAW_COLUMNS: dict[str, tuple[str, Any]] = {
    "age": ("age_band", age_band),
    "pixel_spacing_mm": ("spacing_band", spacing_band),
    "kvp": ("kvp_band", kvp_band),
    "exposure_mas": ("exposure_band", exposure_band),
}
_NORMALISE = {"sex": _sex, "modality": _modality}


def from_columns(
    extra: Mapping[str, str], *, institution_salt: str | None = None
) -> dict[str, str]:
    """The levels a manifest row gives: columns named as a field (taken as they are, sex and
    modality normalised), or raw columns (``age``, ``pixel_spacing_mm``, ``kvp``,
    ``exposure_mas``) banded. Empty cells give nothing (the header decides)."""
    out: dict[str, str] = {}
    for column, (name, band) in _RAW_COLUMNS.items():
        if str(extra.get(column, "")).strip():
            out[name] = band(extra[column])
    for name in NAMES:
        value = str(extra.get(name, "")).strip()
        if value:
            norm = _NORMALISE.get(name)
            out[name] = (
                norm(value)
                if norm
                else _institution(value, institution_salt)
                if name == "institution"
                else value
            )
    return out


def levels_for(
    path: str | os.PathLike[str],
    extra: Mapping[str, str],
    *,
    institution_salt: str | None = None,
) -> dict[str, str]:
    """One film's level of every field: the header's, overridden by the manifest's columns."""
    from_manifest = from_columns(extra, institution_salt=institution_salt)
    if all(name in from_manifest for name in NAMES):
        return from_manifest
    header = from_header(read_header(path), institution_salt=institution_salt)
    return {**header, **from_manifest}


def order(name: str, levels: set[str] | list[str]) -> list[str]:
    """``levels`` of field ``name`` in report order: the field's own order, else sorted, with
    unknown last."""
    field = next((f for f in FIELDS if f.name == name), None)
    known = list(field.levels) if field and field.levels else []
    rank = {lvl: i for i, lvl in enumerate(known)}
    return sorted(levels, key=lambda v: (v == UNKNOWN, rank.get(v, len(rank)), v))
