"""Tests for edgevcf.data.io.read_image against files nobody here wrote.

The DICOM references are pydicom's own test files (and pydicom-data's), and every LUT result is
compared with pydicom's ``apply_modality_lut`` / ``apply_voi_lut`` / ``apply_windowing`` rescaled
to [0, 1], so the reader is checked against an independent implementation of PS3.3, not against
itself.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut, apply_windowing

from edgevcf.data import io as io_mod
from edgevcf.data.io import ImageMeta, read_image
from edgevcf.errors import DataError

TOL = 1e-6

CR_FILES = [
    "dicomdirtests/77654033/CR1/6154",
    "dicomdirtests/77654033/CR2/6247",
    "dicomdirtests/77654033/CR3/6278",
]


# --------------------------------------------------------------------------------------------
# helpers


def _tf(name: str) -> str:
    """Path of a pydicom (or pydicom-data) test file; skip when it is not installed."""
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} not available (install pydicom-data)")
    return str(path)


def _pydicom_reference(ds: Dataset) -> np.ndarray:
    """What pydicom's own functions say the displayed image is, rescaled to [0, 1]."""
    stored = ds.pixel_array
    modality = apply_modality_lut(stored, ds)
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        out = apply_voi_lut(modality, ds).astype(np.float64) / (2**bits - 1)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        out = apply_voi_lut(modality, ds).astype(np.float64)
        # pydicom's output range depends on Bits Stored, sign and rescale: probe its ends.
        with np.errstate(over="ignore"):
            y_min, y_max = apply_windowing(np.array([-1e300, 1e300]), ds)
        out = (out - y_min) / (y_max - y_min)
    else:
        modality = modality.astype(np.float64)
        lo, hi = modality.min(), modality.max()
        out = (modality - lo) / (hi - lo) if hi > lo else np.zeros_like(modality)
    shape = str(ds.get("PresentationLUTShape") or "").strip().upper()
    if ds.PhotometricInterpretation == "MONOCHROME1" or shape == "INVERSE":
        out = 1.0 - out
    return out


def _modified_copy(src: str, dst: Path, **attrs: object) -> Path:
    """Write a copy of a real DICOM file with some attributes changed."""
    ds = pydicom.dcmread(src)
    for keyword, value in attrs.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(dst)
    return dst


def _assert_refused(path: str | Path, *fragments: str) -> DataError:
    """Assert DataError whose message (or hint) names the reason."""
    with pytest.raises(DataError) as info:
        read_image(path)
    text = f"{info.value} {info.value.hint or ''}".lower()
    for fragment in fragments:
        assert fragment.lower() in text, f"{fragment!r} not in {text!r}"
    return info.value


def _can_decode(path: str) -> bool:
    try:
        pydicom.dcmread(path).pixel_array  # noqa: B018 - decoding is the point
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
def rg1() -> tuple[np.ndarray, ImageMeta, str]:
    """RG1_UNCR (7 MB chest CR) read once for the module."""
    path = _tf("RG1_UNCR.dcm")
    arr, meta = read_image(path)
    return arr, meta, path


# --------------------------------------------------------------------------------------------
# DICOM pipeline against pydicom


@pytest.mark.parametrize("name", CR_FILES)
def test_agfa_cr_monochrome1_rescale_window_matches_pydicom(name: str) -> None:
    path = _tf(name)
    ds = pydicom.dcmread(path)
    arr, meta = read_image(path)
    assert arr.dtype == np.float32
    assert arr.shape == (ds.Rows, ds.Columns) == (meta.rows, meta.cols)
    assert arr.flags.c_contiguous
    assert meta.source_format == "dicom"
    assert meta.photometric == "MONOCHROME1"
    assert meta.inverted is True
    assert meta.modality_lut == "rescale"
    assert meta.voi == "window:LINEAR"
    assert meta.modality == "CR"
    assert meta.body_part == "CSPINE"
    assert meta.view_position in {"LL", "AP"}
    assert meta.manufacturer == "Agfa-Gevaert AG"
    assert (meta.bits_stored, meta.bits_allocated) == (12, 16)
    assert meta.transfer_syntax == "Explicit VR Little Endian"
    assert meta.pixel_spacing_mm == pytest.approx((0.1, 0.1))
    assert meta.spacing_source == "ImagerPixelSpacing"
    np.testing.assert_allclose(arr, _pydicom_reference(ds), atol=TOL, rtol=0)
    assert arr.min() >= 0.0
    assert arr.max() <= 1.0


def test_ct_small_rescale_without_window_is_full_range() -> None:
    path = _tf("CT_small.dcm")
    ds = pydicom.dcmread(path)
    arr, meta = read_image(path)
    assert (meta.modality_lut, meta.voi, meta.inverted) == ("rescale", "full_range", False)
    assert meta.spacing_source == "PixelSpacing"
    assert meta.pixel_spacing_mm == pytest.approx((0.661468, 0.661468))
    np.testing.assert_allclose(arr, _pydicom_reference(ds), atol=TOL, rtol=0)
    assert arr.min() == 0.0
    assert arr.max() == 1.0


def test_voi_lut_sequence_matches_pydicom() -> None:
    path = _tf("vlut_04.dcm")
    ds = pydicom.dcmread(path)
    arr, meta = read_image(path)
    assert meta.voi == "lut_sequence"
    expected = apply_voi_lut(ds.pixel_array, ds).astype(np.float64) / 65535.0
    np.testing.assert_allclose(arr, expected, atol=TOL, rtol=0)


def test_voi_lut_sequence_wins_over_window(tmp_path: Path) -> None:
    src = _tf("vlut_04.dcm")
    copy = _modified_copy(src, tmp_path / "v.dcm", WindowCenter=100, WindowWidth=50)
    arr, meta = read_image(copy)
    assert meta.voi == "lut_sequence"
    np.testing.assert_allclose(arr, read_image(src)[0], atol=0, rtol=0)


def test_modality_lut_sequence_matches_pydicom() -> None:
    path = _tf("mlut_18.dcm")
    ds = pydicom.dcmread(path)
    arr, meta = read_image(path)
    assert (meta.modality_lut, meta.voi) == ("lut_sequence", "full_range")
    np.testing.assert_allclose(arr, _pydicom_reference(ds), atol=TOL, rtol=0)


def test_modality_lut_sequence_then_window_matches_pydicom(tmp_path: Path) -> None:
    copy = _modified_copy(
        _tf("mlut_18.dcm"), tmp_path / "m.dcm", WindowCenter=30000, WindowWidth=20000
    )
    arr, meta = read_image(copy)
    assert (meta.modality_lut, meta.voi) == ("lut_sequence", "window:LINEAR")
    np.testing.assert_allclose(arr, _pydicom_reference(pydicom.dcmread(copy)), atol=TOL, rtol=0)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize(
    ("name", "center", "width"),
    [(CR_FILES[0], 1600, 2800), (CR_FILES[0], 1800, 300), ("CT_small.dcm", 200, 400)],
)
def test_voi_lut_functions_match_pydicom_windowing(
    tmp_path: Path, name: str, center: float, width: float, function: str
) -> None:
    copy = _modified_copy(
        _tf(name),
        tmp_path / "w.dcm",
        WindowCenter=center,
        WindowWidth=width,
        VOILUTFunction=function,
    )
    ds = pydicom.dcmread(copy)
    arr, meta = read_image(copy)
    assert meta.voi == f"window:{function}"
    np.testing.assert_allclose(arr, _pydicom_reference(ds), atol=TOL, rtol=0)


def test_multivalued_window_uses_first_value() -> None:
    path = _tf("examples_overlay.dcm")
    ds = pydicom.dcmread(path)
    assert ds["WindowCenter"].VM > 1
    arr, meta = read_image(path)
    assert meta.voi == "window:LINEAR"
    np.testing.assert_allclose(arr, _pydicom_reference(ds), atol=TOL, rtol=0)


def test_big_endian_and_little_endian_agree() -> None:
    little, _ = read_image(_tf("MR_small.dcm"))
    big, meta = read_image(_tf("MR_small_bigendian.dcm"))
    assert meta.transfer_syntax == "Explicit VR Big Endian"
    np.testing.assert_array_equal(little, big)


def test_large_chest_cr_matches_pydicom(rg1: tuple[np.ndarray, ImageMeta, str]) -> None:
    arr, meta, path = rg1
    assert (meta.rows, meta.cols) == (1955, 1841)
    assert meta.photometric == "MONOCHROME1"
    assert meta.inverted
    np.testing.assert_allclose(arr, _pydicom_reference(pydicom.dcmread(path)), atol=TOL, rtol=0)


def test_presentation_lut_shape_inverse_inverts_monochrome2(tmp_path: Path) -> None:
    src = _tf("CT_small.dcm")
    plain, _ = read_image(src)
    copy = _modified_copy(src, tmp_path / "inv.dcm", PresentationLUTShape="INVERSE")
    arr, meta = read_image(copy)
    assert meta.inverted is True
    np.testing.assert_allclose(arr, 1.0 - plain, atol=TOL, rtol=0)


def test_monochrome1_with_inverse_shape_is_inverted_once(tmp_path: Path) -> None:
    # PS3.3 C.8.11.6.1.2 requires INVERSE with MONOCHROME1 for DX: one inversion, not two.
    src = _tf(CR_FILES[0])
    plain, _ = read_image(src)
    copy = _modified_copy(src, tmp_path / "inv.dcm", PresentationLUTShape="INVERSE")
    arr, meta = read_image(copy)
    assert meta.inverted is True
    np.testing.assert_array_equal(arr, plain)


def test_invalid_window_falls_back_to_full_range(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copy = _modified_copy(_tf("CT_small.dcm"), tmp_path / "w0.dcm", WindowCenter=40, WindowWidth=0)
    with caplog.at_level(logging.WARNING, logger="edgevcf.data.io"):
        arr, meta = read_image(copy)
    assert meta.voi == "full_range"
    assert "invalid window" in caplog.text
    assert arr.min() == 0.0
    assert arr.max() == 1.0


def test_compressed_transfer_syntax_decodable_here_matches_pydicom() -> None:
    # JPEG 2000 through Pillow's openjpeg and RLE through numpy work without pylibjpeg.
    for name in ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"):
        path = _tf(name)
        if not _can_decode(path):
            continue
        arr, _ = read_image(path)
        np.testing.assert_allclose(arr, _pydicom_reference(pydicom.dcmread(path)), atol=TOL)


# --------------------------------------------------------------------------------------------
# pixel spacing


def test_spacing_zero_is_none(rg1: tuple[np.ndarray, ImageMeta, str]) -> None:
    _, meta, path = rg1
    assert [float(v) for v in pydicom.dcmread(path, stop_before_pixels=True).PixelSpacing] == [
        0.0,
        0.0,
    ]
    assert meta.pixel_spacing_mm is None
    assert meta.spacing_source is None


def test_spacing_missing_is_none() -> None:
    _, meta = read_image(_tf("RG3_UNCR.dcm"))
    assert meta.pixel_spacing_mm is None
    assert meta.spacing_source is None


def test_imager_pixel_spacing_preferred(tmp_path: Path) -> None:
    copy = _modified_copy(_tf(CR_FILES[0]), tmp_path / "s.dcm", PixelSpacing=[0.2, 0.25])
    _, meta = read_image(copy)
    assert meta.pixel_spacing_mm == pytest.approx((0.1, 0.1))
    assert meta.spacing_source == "ImagerPixelSpacing"


def test_invalid_imager_spacing_falls_back_to_pixel_spacing(tmp_path: Path) -> None:
    copy = _modified_copy(_tf("CT_small.dcm"), tmp_path / "s.dcm", ImagerPixelSpacing=[0.0, -1.0])
    _, meta = read_image(copy)
    assert meta.spacing_source == "PixelSpacing"
    assert meta.pixel_spacing_mm == pytest.approx((0.661468, 0.661468))


# --------------------------------------------------------------------------------------------
# metadata: no patient identifiers


@pytest.mark.parametrize("name", [CR_FILES[0], CR_FILES[1], "CT_small.dcm", "RG3_UNCR.dcm"])
def test_meta_has_no_patient_identifiers(name: str) -> None:
    path = _tf(name)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    _, meta = read_image(path)
    data = meta.to_dict()
    text = json.dumps(data)  # must be JSON-serialisable
    assert set(data) == {f.name for f in dataclasses.fields(ImageMeta)}
    for key in data:
        assert not key.lower().startswith(("patient", "study", "accession", "institution"))
    phi_keywords = (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "AccessionNumber",
        "StudyDate",
        "InstitutionName",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
    )
    checked = 0
    for keyword in phi_keywords:
        value = str(ds.get(keyword) or "").strip()
        if len(value) >= 4:
            assert value not in text, f"{keyword} leaked into ImageMeta"
            checked += 1
    assert checked >= 2  # the files do carry (fake) identifiers


def test_meta_is_frozen_and_round_trips_json() -> None:
    _, meta = read_image(_tf(CR_FILES[0]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.rows = 1  # type: ignore[misc]
    data = json.loads(json.dumps(meta.to_dict()))
    assert data["pixel_spacing_mm"] == pytest.approx([0.1, 0.1])
    restored = ImageMeta(**{**data, "pixel_spacing_mm": tuple(data["pixel_spacing_mm"])})
    assert restored == meta


# --------------------------------------------------------------------------------------------
# DICOM refusals


def test_truncated_dicom_refused() -> None:
    _assert_refused(_tf("MR_truncated.dcm"), "truncated")


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb.dcm",
        "SC_rgb_small_odd.dcm",
        "SC_rgb_rle.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "SC_rgb_rle_2frame.dcm",
        "SC_ybr_full_422_uncompressed.dcm",
        "examples_palette.dcm",
    ],
)
def test_colour_dicom_refused(name: str) -> None:
    _assert_refused(_tf(name), "colour", "greyscale")


def test_multiframe_dicom_refused() -> None:
    path = _tf("emri_small.dcm")
    assert int(pydicom.dcmread(path, stop_before_pixels=True).NumberOfFrames) == 10
    _assert_refused(path, "multi-frame", "10 frames")


def test_dicom_without_pixel_data_refused() -> None:
    _assert_refused(_tf("rtplan.dcm"), "no pixel data")


def test_zero_size_dicom_refused(tmp_path: Path) -> None:
    copy = _modified_copy(_tf("CT_small.dcm"), tmp_path / "z.dcm", Rows=0)
    _assert_refused(copy, "zero-size")


def test_non_finite_modality_output_refused(tmp_path: Path) -> None:
    copy = _modified_copy(_tf("CT_small.dcm"), tmp_path / "inf.dcm", RescaleSlope="1e308")
    _assert_refused(copy, "non-finite")


def test_unknown_voi_function_refused(tmp_path: Path) -> None:
    copy = _modified_copy(
        _tf("CT_small.dcm"),
        tmp_path / "f.dcm",
        WindowCenter=40,
        WindowWidth=400,
        VOILUTFunction="LOG",
    )
    _assert_refused(copy, "VOI LUT Function", "LOG")


@pytest.mark.parametrize(
    ("name", "package"),
    [
        ("MR_small_jpeg_ls_lossless.dcm", "python-gdcm"),
        ("JPEG-lossy.dcm", "pylibjpeg-libjpeg"),  # 12-bit JPEG: only the GPLv3 one decodes it
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", "python-gdcm"),
        ("JPEG2000.dcm", "pylibjpeg-openjpeg"),
        ("MR_small_jp2klossless.dcm", "pylibjpeg-openjpeg"),
        ("MR_small_RLE.dcm", "pylibjpeg-rle"),
    ],
)
def test_compressed_dicom_read_or_refused_with_package_hint(name: str, package: str) -> None:
    """Whatever pydicom can decode here must match it; what it cannot must name the fix."""
    path = _tf(name)
    if _can_decode(path):
        arr, meta = read_image(path)
        assert meta.transfer_syntax == pydicom.dcmread(path).file_meta.TransferSyntaxUID.name
        np.testing.assert_allclose(arr, _pydicom_reference(pydicom.dcmread(path)), atol=TOL)
    else:
        error = _assert_refused(path, "decode")
        assert error.hint is not None
        assert package in error.hint


def test_jpeg_ls_refused_without_a_decoder() -> None:
    path = _tf("MR_small_jpeg_ls_lossless.dcm")
    if _can_decode(path):
        pytest.skip("a JPEG-LS decoder is installed here")
    error = _assert_refused(path, "JPEG-LS", "no decoder plugin")
    assert error.hint is not None
    assert "edgevcf[decoders]" in error.hint and "python-gdcm" in error.hint


def test_decoder_hints_recommend_no_gpl_library() -> None:
    """A device cannot ship a GPL decoder unawares: every hint names permissive ones."""
    for uid in (
        *pydicom.uid.JPEGTransferSyntaxes,
        *pydicom.uid.JPEGLSTransferSyntaxes,
        *pydicom.uid.JPEG2000TransferSyntaxes,
    ):
        hint = io_mod._decoder_hint(uid)
        if "pylibjpeg-libjpeg" in hint:  # named only to warn that it is GPLv3
            assert uid == pydicom.uid.JPEGExtended12Bit and "GPLv3" in hint
        else:
            assert "edgevcf[decoders]" in hint


def test_missing_jpeg2000_decoder_names_openjpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    class _Unavailable:
        is_available = False
        missing_dependencies = ("pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg",)

    monkeypatch.setattr(io_mod, "get_decoder", lambda uid: _Unavailable())
    error = _assert_refused(_tf("MR_small_jp2klossless.dcm"), "JPEG 2000", "no decoder")
    assert error.hint is not None
    assert "pylibjpeg-openjpeg" in error.hint


# --------------------------------------------------------------------------------------------
# dispatch on content, not on extension


def test_dicom_with_wrong_extension_read_as_dicom(tmp_path: Path) -> None:
    src = Path(_tf("CT_small.dcm"))
    dst = tmp_path / "image.png"
    dst.write_bytes(src.read_bytes())
    arr, meta = read_image(dst)
    assert meta.source_format == "dicom"
    np.testing.assert_array_equal(arr, read_image(str(src))[0])


def test_png_with_dcm_extension_read_as_png(tmp_path: Path) -> None:
    path = tmp_path / "scan.dcm"
    Image.fromarray(np.full((4, 5), 51, np.uint8)).save(path, format="PNG")
    arr, meta = read_image(path)
    assert meta.source_format == "png"
    np.testing.assert_allclose(arr, 0.2, atol=TOL)


def test_preamble_less_dicom_is_read(tmp_path: Path) -> None:
    src = _tf("CT_small.dcm")
    ds = pydicom.dcmread(src)
    ds.preamble = None
    ds.file_meta = FileMetaDataset()
    path = tmp_path / "raw"
    pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert path.read_bytes()[128:132] != b"DICM"
    arr, meta = read_image(path)
    assert meta.source_format == "dicom"
    assert meta.transfer_syntax == "Implicit VR Little Endian"
    np.testing.assert_array_equal(arr, read_image(src)[0])


# --------------------------------------------------------------------------------------------
# PNG / TIFF / JPEG


def test_png_8bit(tmp_path: Path) -> None:
    data = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(data).save(tmp_path / "a.png")
    arr, meta = read_image(tmp_path / "a.png")
    assert arr.dtype == np.float32
    assert arr.shape == (16, 16)
    np.testing.assert_allclose(arr, data / 255.0, atol=TOL)
    assert (meta.source_format, meta.photometric, meta.bits_stored) == ("png", "MONOCHROME2", 8)
    assert (meta.modality_lut, meta.voi, meta.inverted) == ("none", "bit_depth", False)
    assert meta.pixel_spacing_mm is None
    assert meta.modality is None


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_16bit_png_and_tiff(tmp_path: Path, suffix: str) -> None:
    data = (np.arange(12 * 20, dtype=np.uint32).reshape(12, 20) * 273).astype(np.uint16)
    data[0, 0], data[-1, -1] = 0, 65535
    img = Image.fromarray(data)
    assert img.mode == "I;16"
    img.save(tmp_path / f"a.{suffix}")
    arr, meta = read_image(tmp_path / f"a.{suffix}")
    np.testing.assert_allclose(arr, data / 65535.0, atol=TOL)
    assert meta.bits_stored == 16
    assert meta.source_format == {"png": "png", "tif": "tiff"}[suffix]


def test_32bit_integer_tiff_in_16bit_range(tmp_path: Path) -> None:
    data = np.array([[0, 1000], [40000, 65535]], dtype=np.int32)
    Image.fromarray(data).save(tmp_path / "i.tif")
    arr, meta = read_image(tmp_path / "i.tif")
    np.testing.assert_allclose(arr, data / 65535.0, atol=TOL)
    assert meta.bits_stored == 16


def test_32bit_integer_tiff_out_of_range_refused(tmp_path: Path) -> None:
    Image.fromarray(np.array([[-5, 70000]], dtype=np.int32)).save(tmp_path / "i.tif")
    _assert_refused(tmp_path / "i.tif", "outside 0..65535")


def test_1bit_png(tmp_path: Path) -> None:
    data = np.eye(8, dtype=bool)
    Image.fromarray(data).save(tmp_path / "b.png")
    arr, meta = read_image(tmp_path / "b.png")
    np.testing.assert_array_equal(arr, data.astype(np.float32))
    assert meta.bits_stored == 1


def test_float_tiff_passes_through(tmp_path: Path) -> None:
    data = np.linspace(-3.5, 1000.0, 30, dtype=np.float32).reshape(5, 6)
    Image.fromarray(data).save(tmp_path / "f.tif")
    arr, meta = read_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(arr, data)
    assert (meta.voi, meta.bits_stored, meta.bits_allocated) == ("none", None, 32)


def test_float_tiff_with_nan_refused(tmp_path: Path) -> None:
    data = np.ones((4, 4), dtype=np.float32)
    data[1, 2] = np.nan
    Image.fromarray(data).save(tmp_path / "f.tif")
    _assert_refused(tmp_path / "f.tif", "non-finite", "nan")


def test_jpeg_greyscale(tmp_path: Path) -> None:
    data = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (24, 1))
    Image.fromarray(data).save(tmp_path / "a.jpg", quality=95)
    arr, meta = read_image(tmp_path / "a.jpg")
    assert meta.source_format == "jpeg"
    assert arr.shape == (24, 32)
    np.testing.assert_allclose(arr, data / 255.0, atol=0.05)


def test_exif_orientation_applied(tmp_path: Path) -> None:
    data = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    img = Image.fromarray(data)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "o.png", exif=exif)
    arr, meta = read_image(tmp_path / "o.png")
    assert (meta.rows, meta.cols) == (4, 3)
    np.testing.assert_allclose(arr, np.rot90(data, -1) / 255.0, atol=TOL)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "LA"])
def test_colour_png_refused(tmp_path: Path, mode: str) -> None:
    Image.new(mode, (8, 8)).save(tmp_path / "c.png")
    _assert_refused(tmp_path / "c.png", "colour", "greyscale radiograph")


def test_truncated_png_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 65535, (64, 64), dtype=np.uint16)).save(tmp_path / "t.png")
    raw = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(raw[: len(raw) // 2])
    _assert_refused(tmp_path / "t.png", "truncated or corrupt")


def test_multipage_tiff_refused(tmp_path: Path) -> None:
    frames = [Image.new("L", (4, 4), 40 * i) for i in range(3)]
    frames[0].save(tmp_path / "m.tif", save_all=True, append_images=frames[1:])
    _assert_refused(tmp_path / "m.tif", "multi-page", "3 frames")


def test_zero_size_png_refused(tmp_path: Path) -> None:
    # Pillow cannot write one, so build the chunks by hand (valid CRCs, width 0).
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", 0, 4, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    (tmp_path / "z.png").write_bytes(png)
    _assert_refused(tmp_path / "z.png", "png")


def test_too_many_pixels_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("L", (16, 16)).save(tmp_path / "big.png")
    monkeypatch.setattr(io_mod, "MAX_PIXELS", 100)
    _assert_refused(tmp_path / "big.png", "too large", "decompression bomb")
    _assert_refused(_tf(CR_FILES[0]), "too large")


# --------------------------------------------------------------------------------------------
# not an image at all


def test_text_file_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.dcm").write_text("patient list\n" * 20)
    _assert_refused(tmp_path / "notes.dcm", "not a DICOM file or a supported image format")


def test_empty_file_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    _assert_refused(tmp_path / "empty.png", "empty")


def test_missing_file_and_directory_refused(tmp_path: Path) -> None:
    _assert_refused(tmp_path / "nope.dcm", "not found")
    _assert_refused(tmp_path, "directory")
