"""Subgroup fields and bands (defined once), read from real DICOM headers and manifest columns;
the generator's site profiles write the header fields a real film carries."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgevcf import subgroups
from edgevcf.subgroups import UNKNOWN


@pytest.mark.parametrize(
    ("fn", "value", "band"),
    [
        (subgroups.age_band, 49.9, "<50"), (subgroups.age_band, 50, "50-64"),
        (subgroups.age_band, 64, "50-64"), (subgroups.age_band, 65, "65-79"),
        (subgroups.age_band, 80, ">=80"), (subgroups.age_band, "", UNKNOWN),
        (subgroups.spacing_band, 0.1, "<0.12"), (subgroups.spacing_band, 0.12, "0.12-0.16"),
        (subgroups.spacing_band, 0.16, "0.12-0.16"), (subgroups.spacing_band, 0.17, ">0.16"),
        (subgroups.spacing_band, 0, UNKNOWN), (subgroups.kvp_band, 69, "<70"),
        (subgroups.kvp_band, 70, "70-84"), (subgroups.kvp_band, 85, "85-99"),
        (subgroups.kvp_band, 100, ">=100"), (subgroups.kvp_band, "x", UNKNOWN),
        (subgroups.exposure_band, 4.9, "<5"), (subgroups.exposure_band, 5, "5-19"),
        (subgroups.exposure_band, 20, ">=20"), (subgroups.exposure_band, None, UNKNOWN),
    ],
)  # fmt: skip
def test_bands(fn: object, value: object, band: str) -> None:
    assert fn(value) == band  # type: ignore[operator]


def _film(tmp: Path, profile: str) -> Path:
    pytest.importorskip("scipy")
    from edgevcf import progress
    from edgevcf.data.synth import SynthConfig, generate
    from edgevcf.data.synth.sites import apply_profile

    progress.set_enabled(False)
    cfg = apply_profile(SynthConfig.fast(pixel_mm=1.2), profile)
    generate(tmp, 2, seed=3, cfg=cfg, fmt="dicom", workers=1, preview=False, val=0, test=0)
    return sorted((tmp / "images").glob("*.dcm"))[0]


def test_levels_from_a_real_header_and_manifest_columns_win(tmp_path: Path) -> None:
    import pydicom

    film = _film(tmp_path, "clinic-edge")
    ds = pydicom.dcmread(film, stop_before_pixels=True)
    got = subgroups.levels_for(film, {})
    assert (got["manufacturer"], got["model"], got["modality"]) in {
        ("SynthVendor Edge", "EdgeDR 500", "DX"),
        ("SynthVendor Plate", "PlateReader 20", "CR"),
    }
    assert got["manufacturer"] == ds.Manufacturer and got["sex"] == ds.PatientSex
    assert got["age_band"] == subgroups.age_band(int(ds.PatientAge[:3]))
    assert got["kvp_band"] == subgroups.kvp_band(float(ds.KVP)) != UNKNOWN
    assert got["exposure_band"] == subgroups.exposure_band(int(ds.Exposure)) != UNKNOWN
    assert got["spacing_band"] == ">0.16"
    # the manifest knows better: its columns win; raw columns are banded
    over = subgroups.levels_for(film, {"sex": "male", "age": "45", "kvp": "", "model": "X1"})
    assert over["sex"] == "M" and over["age_band"] == "<50" and over["model"] == "X1"
    assert over["kvp_band"] == got["kvp_band"]  # an empty cell leaves the header's
    # a salted institution never shows the name
    salted = subgroups.levels_for(film, {}, institution_salt="s3cret")
    assert salted["institution"].startswith("inst-") and "Clinic" not in salted["institution"]
    # a film without a header: unknown unless the manifest says
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert subgroups.levels_for(png, {"sex": "F"}) == {
        **dict.fromkeys(subgroups.NAMES, UNKNOWN), "sex": "F"}  # fmt: skip


def test_birth_date_gives_the_age_when_patient_age_is_absent() -> None:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.PatientBirthDate, ds.StudyDate = "19500615", "20230101"
    assert subgroups.from_header(ds)["age_band"] == "65-79"
    ds.PatientAge = "081Y"
    assert subgroups.from_header(ds)["age_band"] == ">=80"


def test_site_profiles_are_the_clis_choices() -> None:
    from edgevcf.cli.data import SITE_PROFILES
    from edgevcf.data.synth.sites import PROFILES

    assert set(SITE_PROFILES) == set(PROFILES)


def test_home_profile_keeps_the_generator_unchanged() -> None:
    from edgevcf.data.synth import SynthConfig
    from edgevcf.data.synth.sites import apply_profile

    assert apply_profile(SynthConfig.fast(), "home") == SynthConfig.fast()
    assert not any(s.processed or s.dose != 1.0 for s in SynthConfig().sites)


def test_order_puts_unknown_last() -> None:
    assert subgroups.order("age_band", {"unknown", ">=80", "<50"}) == ["<50", ">=80", "unknown"]
    assert subgroups.order("model", {"b", "unknown", "a"}) == ["a", "b", "unknown"]
