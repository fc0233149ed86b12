"""The synthetic radiograph generator: reproducibility, ground truth, valid files, physics."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest

from edgevcf import progress
from edgevcf.data.io import read_image
from edgevcf.data.manifest import Manifest
from edgevcf.data.synth import SynthConfig, generate
from edgevcf.data.synth.anatomy import _genant_grade, sample_patient, sample_view
from edgevcf.data.synth.config import FRACTURE_LEVEL_WEIGHTS, RENDER_LEVELS
from edgevcf.data.synth.render import render
from edgevcf.errors import ConfigError

progress.set_enabled(False)
FAST = SynthConfig.fast()


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("fmt", ["png", "dicom"])
def test_same_seed_gives_byte_identical_files_whatever_the_workers(
    tmp_path: Path, fmt: str
) -> None:
    a = generate(tmp_path / "a", 5, seed=7, cfg=FAST, fmt=fmt, workers=1)  # type: ignore[arg-type]
    b = generate(tmp_path / "b", 5, seed=7, cfg=FAST, fmt=fmt, workers=2)  # type: ignore[arg-type]
    da, db = _digests(a.out_dir), _digests(b.out_dir)
    assert da == db
    assert any(k.startswith("images/") for k in da)
    c = generate(tmp_path / "c", 5, seed=8, cfg=FAST, fmt=fmt, workers=1)  # type: ignore[arg-type]
    assert _digests(c.out_dir)["manifest.csv"] != da["manifest.csv"]


def test_manifest_ground_truth_is_consistent(synth_fast_dataset) -> None:
    res = synth_fast_dataset
    m = Manifest.load(res.manifest)
    assert len(m.studies) == res.images >= res.patients == 24
    assert not m.check_leakage()
    assert set(m.splits()) <= {"train", "val", "test"}
    for s in m.studies:
        e = s.extra
        assert s.resolve(m.root).is_file()
        assert int(e["label_true"]) == int(bool(e["fresh_levels"]))
        assert (s.label != int(e["label_true"])) == (e["label_noise"] == "1")
        for part in filter(None, e["fractures"].split(";")):
            level, age, grade, morph = part.split(":")
            assert level in FRACTURE_LEVEL_WEIGHTS
            assert age in ("fresh", "old") and morph in ("wedge", "biconcave", "crush")
            assert grade in ("g0", "g1", "g2", "g3")
    # Images of one patient share one label (one MRI reference per patient).
    labels: dict[str, set[int]] = {}
    for s in m.studies:
        labels.setdefault(s.patient_id, set()).add(s.label)
    assert all(len(v) == 1 for v in labels.values())
    assert res.preview is not None and res.preview.stat().st_size > 10_000


def test_preview_is_an_rgb_contact_sheet(synth_fast_dataset) -> None:
    from PIL import Image

    with Image.open(synth_fast_dataset.preview) as im:
        assert im.mode == "RGB"
        assert im.width > 600 and im.height > 900


def test_dicom_objects_are_valid_and_read_back_like_the_png(tmp_path: Path) -> None:
    png = generate(tmp_path / "png", 6, seed=3, cfg=FAST, fmt="png", preview=False)
    dcm = generate(tmp_path / "dcm", 6, seed=3, cfg=FAST, fmt="dicom", preview=False)
    mp, md = Manifest.load(png.manifest), Manifest.load(dcm.manifest)
    photometrics = set()
    for sp, sd in zip(mp.studies, md.studies, strict=True):
        ds = pydicom.dcmread(sd.resolve(md.root))
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID in ("1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1")
        assert ds.Modality in ("DX", "CR") and ds.BitsStored == 12 and ds.BitsAllocated == 16
        assert ds.PhotometricInterpretation == sd.extra["photometric"]
        assert float(ds.ImagerPixelSpacing[0]) == pytest.approx(
            float(sd.extra["pixel_spacing_mm"]), rel=1e-3
        )
        assert float(ds.WindowWidth) > 0
        photometrics.add(ds.PhotometricInterpretation)
        a_png, _ = read_image(sp.resolve(mp.root))
        a_dcm, meta = read_image(sd.resolve(md.root))
        assert meta.modality == ds.Modality and meta.pixel_spacing_mm is not None
        # The DICOM is windowed (VOI) and, for CR, inverted: after the reader both must show
        # the same picture up to a monotone linear map. Compare by correlation.
        r = np.corrcoef(a_png.ravel(), a_dcm.ravel())[0, 1]
        assert r > 0.98, f"{sd.path}: DICOM and PNG disagree (r={r:.3f}, {meta.photometric})"
    assert photometrics  # at least one site drawn; both kinds covered across seeds below


def test_both_photometric_interpretations_occur_and_read_the_same_way(tmp_path: Path) -> None:
    # MONOCHROME1 (CR) stored inverted with rescale: bone must still come out bright.
    cfg = FAST.with_(sites=(FAST.sites[1],))
    res = generate(tmp_path, 2, seed=1, cfg=cfg, fmt="dicom", preview=False)
    m = Manifest.load(res.manifest)
    for s in m.studies:
        ds = pydicom.dcmread(s.resolve(m.root))
        assert ds.PhotometricInterpretation == "MONOCHROME1"
        assert float(ds.RescaleSlope) == pytest.approx(0.684) and float(ds.RescaleIntercept) == 200
        img, meta = read_image(s.resolve(m.root))
        assert meta.inverted
        # Collimator shutters (outside the field) are bright on the display, tissue darker.
        assert img[0, 0] >= img.max() - 0.05
        assert np.percentile(img, 5) < img[0, 0] - 0.3


def test_cohort_statistics_follow_the_settings() -> None:
    cfg = FAST.with_(prevalence=0.4, label_noise=0.1)
    pats = [sample_patient(cfg, 5, i) for i in range(1500)]
    prev = np.mean([p.label_true for p in pats])
    assert abs(prev - 0.4) < 4 * np.sqrt(0.4 * 0.6 / 1500)
    noise = np.mean([p.label != p.label_true for p in pats])
    assert abs(noise - 0.1) < 4 * np.sqrt(0.1 * 0.9 / 1500)
    fractures = [f for p in pats for f in p.fractures]
    levels = Counter(f.level for f in fractures)
    assert levels.most_common(2)[0][0] in ("L1", "T12")
    assert levels["T10"] < levels["L1"]
    fresh = [f.height_loss for f in fractures if f.age == "fresh"]
    old = [f.height_loss for f in fractures if f.age == "old"]
    # Fresh is not "more collapse": fresh fractures are milder on average than old ones.
    assert np.mean(fresh) < np.mean(old) - 0.1
    multi = np.mean([len(p.fractures) > 1 for p in pats if p.fractures])
    assert 0.1 < multi < 0.45
    assert np.mean([p.n_images for p in pats]) == pytest.approx(1.34, abs=0.08)
    morph = Counter(f.morphology for f in fractures)
    assert morph["wedge"] > morph["biconcave"] > morph["crush"]


@pytest.mark.parametrize(
    ("loss", "grade"), [(0.1, 0), (0.2, 1), (0.24, 1), (0.25, 2), (0.4, 2), (0.41, 3)]
)
def test_genant_grades(loss: float, grade: int) -> None:
    assert _genant_grade(loss) == grade


def test_difficulty_controls_fresh_sign_conspicuity() -> None:
    def mean_band(d: float) -> float:
        cfg = FAST.with_(difficulty=d, prevalence=1.0)
        gains = [
            f.band_gain
            for i in range(300)
            for f in sample_patient(cfg, 2, i).fractures
            if f.age == "fresh"
        ]
        return float(np.mean(gains))

    assert mean_band(0.0) > 1.5 * mean_band(1.0)


def _find(cfg: SynthConfig, pred) -> tuple:
    for i in range(500):
        p = sample_patient(cfg, 4, i)
        if pred(p):
            return p, i
    raise AssertionError("no such patient")


def test_fresh_condensation_band_is_rendered_below_the_superior_endplate() -> None:
    cfg = FAST.with_(pixel_mm=0.2, difficulty=0.0, prevalence=1.0, quanta_per_pixel=(1e7, 1e7))
    p, _ = _find(cfg, lambda p: any(f.age == "fresh" and f.band_gain > 0.3 for f in p.fractures))
    f = next(f for f in p.fractures if f.age == "fresh")
    with_band = render(cfg, p, sample_view(cfg, p, 4, 0), 4, 0)
    f.band_gain = 0.0
    without = render(cfg, p, sample_view(cfg, p, 4, 0), 4, 0)
    lv = with_band.levels[f.level]
    xs = [pt[0] for pt in lv.values()]
    ys = [pt[1] for pt in lv.values()]
    box = (slice(int(min(ys)), int(max(ys)) + 1), slice(int(min(xs)), int(max(xs)) + 1))
    diff = with_band.display[box] - without.display[box]
    assert diff.max() > 0.02  # the band brightens the fractured body
    rows = np.nonzero(diff.mean(axis=1) > 0.5 * diff.mean(axis=1).max())[0]
    top = min(lv["anterior_superior"][1], lv["posterior_superior"][1]) - int(min(ys))
    depth_mm = (rows.mean() - top) * with_band.pixel_mm
    assert 0.5 < depth_mm < 15  # 2-8 mm under the endplate (plus band width, tilt, magnification)


def test_vertebrae_are_ordered_and_inside_the_image(synth_fast_dataset) -> None:
    import json

    for line in synth_fast_dataset.annotations.read_text().splitlines():
        ann = json.loads(line)
        h, w = ann["shape"]
        ys = [ann["levels"][lv]["posterior_superior"][1] for lv in RENDER_LEVELS]
        assert ys == sorted(ys)
        for lv in ("T10", "T11", "T12", "L1", "L2", "L3"):
            for x, y in ann["levels"][lv].values():
                assert 0 <= x < w and 0 <= y < h


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="difficulty"):
        SynthConfig(difficulty=1.5)
    with pytest.raises(ConfigError, match="images_per_patient"):
        SynthConfig(images_per_patient=(0.5, 0.2))
    with pytest.raises(ConfigError, match="patient"):
        generate("/tmp/never", 0, cfg=FAST)


def test_cli_synth_writes_data_manifest_and_preview(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgevcf.cli import cli

    out = tmp_path / "d"
    r = CliRunner().invoke(
        cli,
        [
            "-q",
            "data",
            "synth",
            "--out",
            str(out),
            "--patients",
            "4",
            "--fast",
            "--workers",
            "1",
            "--seed",
            "2",
        ],
    )
    assert r.exit_code == 0, r.output
    assert (
        "images/s" in r.output
        and (out / "manifest.csv").is_file()
        and (out / "preview.png").is_file()
    )
    help_text = CliRunner().invoke(cli, ["data", "synth", "--help"]).output
    assert "--difficulty" in help_text and "Example" in help_text


@pytest.mark.slow
def test_full_resolution_image_matches_the_detector_spec(tmp_path: Path) -> None:
    res = generate(
        tmp_path,
        1,
        seed=0,
        cfg=SynthConfig(sites=(SynthConfig().sites[0],)),
        fmt="dicom",
        preview=False,
    )
    s = Manifest.load(res.manifest).studies[0]
    ds = pydicom.dcmread(s.resolve(res.out_dir))
    assert (ds.Columns, ds.Rows) == (2333, 2867)  # 35 x 43 cm at 0.15 mm
    img, meta = read_image(s.resolve(res.out_dir))
    assert img.shape == (2867, 2333) and meta.pixel_spacing_mm == pytest.approx((0.15, 0.15))


def test_reader_lookup_table_path_matches_the_direct_formulas_on_full_size_pixels(
    tmp_path: Path,
) -> None:
    # Synthetic films are large enough (> 65,536 pixels) for the reader's lookup-table path;
    # check it against the PS3.3 formulas computed directly, for both photometric kinds.
    from pydicom.pixels import apply_modality_lut

    for site in FAST.sites[:2]:
        res = generate(
            tmp_path / site.name,
            1,
            seed=9,
            cfg=FAST.with_(sites=(site,)),
            fmt="dicom",
            preview=False,
        )
        s = Manifest.load(res.manifest).studies[0]
        ds = pydicom.dcmread(s.resolve(res.out_dir))
        m = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
        c, w = float(ds.WindowCenter) - 0.5, float(ds.WindowWidth) - 1.0
        expected = np.clip((m - c) / w + 0.5, 0.0, 1.0)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            expected = 1.0 - expected
        got, _ = read_image(s.resolve(res.out_dir))
        assert got.size > 65_536
        np.testing.assert_allclose(got, expected, atol=1e-6)
