"""Every crash the reader fuzzer found, as a test of its own (issue 7, section 2).

Each test builds the smallest input that showed the fault (the fuzzer's input number is in the
docstring: ``benchmarks/fuzz_readers.py --replay FORMAT:N --seed 0`` rewrites it). Memory faults
are checked in a child process under an address-space limit, as a cart with little memory would
see them; peak memory is read from /proc (Linux).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from dicom_files import small_dicom
from PIL import Image
from pydicom.dataset import Dataset

from edgevcf.data.io import MAX_PIXELS, read_image
from edgevcf.errors import DataError

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc and RLIMIT_AS")

_LIMITED_READ = textwrap.dedent(
    """
    import json, resource, sys
    from edgevcf.data.io import read_image
    from edgevcf.errors import DataError

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024

    limit = (status("VmSize") + int(sys.argv[2])) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    before = status("VmHWM")
    try:
        img, meta = read_image(sys.argv[1])
        out = {"outcome": "ok", "shape": list(img.shape)}
    except DataError as exc:
        out = {"outcome": "refused", "message": exc.message}
    except BaseException as exc:
        out = {"outcome": type(exc).__name__, "message": str(exc)[:300]}
    out["peak_mb"] = status("VmHWM") - before
    print(json.dumps(out))
    """
)


def _limited_read(path: Path, headroom_mb: int = 1024) -> dict[str, Any]:
    """read_image in a child allowed ``headroom_mb`` of address space beyond its imports."""
    proc = subprocess.run(
        [sys.executable, "-c", _LIMITED_READ, str(path), str(headroom_mb)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _patched(path: Path, old: bytes, new: bytes) -> Path:
    data = path.read_bytes()
    assert data.count(old) == 1, old
    path.write_bytes(data.replace(old, new))
    return path


def _chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def _png(width: int, height: int, idat: bytes, depth: int = 8) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------ forged lengths (MemoryError)
@linux_only
def test_forged_dicom_element_length_is_a_truncated_file_not_a_4gb_read(tmp_path: Path) -> None:
    """dicom:1 (seed 0): a length field claiming ~4 GB made pydicom's buffered ``read(length)``
    allocate 4 GB before finding the file short -> MemoryError under a memory limit."""
    path = small_dicom(tmp_path / "a.dcm")
    data = bytearray(path.read_bytes())
    at = data.find(b"\xe0\x7f\x10\x00OW")  # Pixel Data: tag, VR, 2 reserved, 4-byte length
    data[at + 8 : at + 12] = struct.pack("<I", 0xFFFFFFF0)
    path.write_bytes(bytes(data[:-100]))  # and the pixel data really is short
    res = _limited_read(path, headroom_mb=1024)
    assert res["outcome"] == "refused", res
    assert "truncated" in res["message"]
    assert res["peak_mb"] < 100


@linux_only
def test_forged_length_in_a_file_read_as_baresmall_dicom(tmp_path: Path) -> None:
    """png:117 (seed 0): bytes no parser recognises are tried as a preamble-less DICOM; an
    implicit-VR length of 2 GB there was read (allocated) in full."""
    path = tmp_path / "b.bin"
    path.write_bytes(struct.pack("<HHI", 0x0008, 0x0016, 0x7FFFFFF0) + b"1.2.3" * 40)
    res = _limited_read(path, headroom_mb=1024)
    assert res["outcome"] == "refused", res
    assert res["peak_mb"] < 100


@linux_only
def test_forged_png_chunk_length_after_the_image_data(tmp_path: Path) -> None:
    """png:113 (seed 0): an IDAT whose length says 2**31 - 1: Pillow's ``load_end`` then
    ``read``s that many bytes -> MemoryError. Now a short read: the pixels are all there."""
    rows = np.arange(32 * 16, dtype=np.uint8).reshape(32, 16)
    raw = b"".join(b"\x00" + r.tobytes() for r in rows)
    data = bytearray(_png(16, 32, zlib.compress(raw)))
    at = data.find(b"IDAT") - 4
    data[at : at + 4] = struct.pack(">I", 2**31 - 1)
    path = tmp_path / "c.png"
    path.write_bytes(bytes(data))
    res = _limited_read(path, headroom_mb=1024)
    assert res["outcome"] in ("ok", "refused"), res
    assert res["peak_mb"] < 100


# ------------------------------------------------------------------ malformed attribute values
def test_rescale_intercept_that_is_no_number_is_refused(tmp_path: Path) -> None:
    """dicom:27 (seed 0): RescaleIntercept 'abc' escaped as ValueError from float()."""
    path = small_dicom(tmp_path / "d.dcm", RescaleSlope="1", RescaleIntercept="0")
    _patched(path, b"DS\x02\x000 ", b"DS\x04\x00abc ")
    with pytest.raises(DataError, match="Rescale Slope / Intercept are not numbers"):
        read_image(path)


def test_multivalued_rescale_slope_is_read(tmp_path: Path) -> None:
    """'1\\2' is a legal multi-valued DS: its first value is used (float() of the list failed)."""
    path = small_dicom(tmp_path / "e.dcm", RescaleSlope=["2", "3"], RescaleIntercept="0")
    ref = small_dicom(tmp_path / "f.dcm", RescaleSlope="2", RescaleIntercept="0")
    np.testing.assert_array_equal(read_image(path)[0], read_image(ref)[0])


@pytest.mark.parametrize("value", [b"+ ", b"1 2 "])
def test_window_that_is_no_number_falls_back_to_full_range(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, value: bytes
) -> None:
    """dicom:3 / dicom:759 (seed 0): WindowCenter '+' or '1 2' escaped as ValueError. Treated
    like any invalid window (width 0, NaN): full range, with a warning."""
    path = small_dicom(tmp_path / "g.dcm")
    _patched(path, b"\x28\x00\x50\x10DS\x04\x002048", b"\x28\x00\x50\x10DS" +
             struct.pack("<H", len(value)) + value)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="edgevcf.data.io"):
        img, meta = read_image(path)
    assert meta.voi == "full_range"
    assert img.min() == 0.0 and img.max() == 1.0
    assert "unreadable window values" in caplog.text


@pytest.mark.parametrize(
    ("vr", "error"), [(b"XX", "NotImplementedError"), (b"SL", "BytesLengthException")]
)
def test_element_with_a_damaged_vr_is_refused(tmp_path: Path, vr: bytes, error: str) -> None:
    """dicom:110 / dicom:165 (seed 0): pydicom converts an element on first access and raised
    NotImplementedError (unknown VR) or BytesLengthException (2 bytes read as SL) there."""
    tag = b"\x28\x00\x02\x00"
    path = _patched(small_dicom(tmp_path / "h.dcm"), tag + b"US", tag + vr)
    with pytest.raises(DataError, match="malformed DICOM attribute SamplesPerPixel") as info:
        read_image(path)
    assert error in str(info.value)


def test_rows_that_are_no_integer_are_refused(tmp_path: Path) -> None:
    """Rows stored as text: ``int(ds.Rows)`` raised ValueError."""
    path = small_dicom(tmp_path / "i.dcm")
    _patched(path, b"\x28\x00\x10\x00US\x02\x00\x40\x00", b"\x28\x00\x10\x00CS\x02\x00ab")
    with pytest.raises(DataError, match="Rows"):
        read_image(path)


# ------------------------------------------------------------------ memory bombs
@linux_only
def test_32bit_pixels_with_a_wide_range(tmp_path: Path) -> None:
    """Found with the u32 seed: one pixel of 0xFFFFFFF0 in a film over 65,536 pixels made the
    lookup-table fast path ask for a 32 GB table. Now the direct path, with the same values."""
    px = ((np.arange(300 * 300) * 7919) % 4096).astype(np.uint32).reshape(300, 300)
    px[0, 0] = 0xFFFFFFF0
    path = small_dicom(tmp_path / "j.dcm", pixels=px, WindowCenter="2048", WindowWidth="4096")
    res = _limited_read(path, headroom_mb=1024)
    assert res["outcome"] == "ok", res
    assert res["peak_mb"] < 100
    img, _ = read_image(path)
    expected = np.clip((px.astype(np.float64) - 2047.5) / 4095 + 0.5, 0, 1)
    np.testing.assert_allclose(img, expected, atol=1e-6)


@linux_only
def test_png_zero_bomb_within_the_size_limit_reads_in_float32(tmp_path: Path) -> None:
    """A 16 KB PNG declaring 4000 x 4000 zero pixels (a legal size): the float64 temporaries
    used ~14 bytes per pixel (1.2 GB at 9000 x 9000); now under 10."""
    n = 4000
    path = tmp_path / "k.png"
    path.write_bytes(_png(n, n, zlib.compress((b"\x00" * (n + 1)) * n, 9)))
    assert path.stat().st_size < 20_000
    res = _limited_read(path, headroom_mb=1024)
    assert res["outcome"] == "ok", res
    assert res["peak_mb"] * 2**20 / n**2 < 10, res


def test_float32_scaling_is_bit_identical_to_float64() -> None:
    """The memory fix changes no output value: all 8- and 16-bit levels."""
    from edgevcf.data.io import _scaled

    for full in (255, 65535):
        x = np.arange(full + 1, dtype=np.uint16 if full > 255 else np.uint8)
        np.testing.assert_array_equal(
            _scaled(x, float(full)), (x.astype(np.float64) / full).astype(np.float32)
        )


@linux_only
@pytest.mark.parametrize(("width", "height"), [(20000, 20000), (65535, 65535), (2**31 - 1, 2)])
def test_png_with_huge_declared_dimensions_is_refused_without_allocating(
    tmp_path: Path, width: int, height: int
) -> None:
    path = tmp_path / "l.png"
    path.write_bytes(_png(width, height, zlib.compress(b"\x00" * (1 << 20), 9)))
    res = _limited_read(path, headroom_mb=512)
    assert res["outcome"] == "refused", res
    assert res["peak_mb"] < 50


@linux_only
@pytest.mark.parametrize(("rows", "cols"), [(65535, 65535), (10001, 10000), (9999, 10000)])
def test_dicom_with_huge_declared_dimensions_is_refused_without_allocating(
    tmp_path: Path, rows: int, cols: int
) -> None:
    """Declared dims over the limit are refused up front; under it, the short pixel data is."""
    path = small_dicom(tmp_path / "m.dcm")
    data = bytearray(path.read_bytes())
    for tag, value in (
        (b"\x28\x00\x10\x00US\x02\x00", rows),
        (b"\x28\x00\x11\x00US\x02\x00", cols),
    ):
        at = data.find(tag) + len(tag)
        data[at : at + 2] = struct.pack("<H", value)
    path.write_bytes(bytes(data))
    res = _limited_read(path, headroom_mb=512)
    assert res["outcome"] == "refused", res
    assert res["peak_mb"] < 50
    if rows * cols > MAX_PIXELS:
        assert "too large" in res["message"]
    else:
        assert "truncated" in res["message"] or "pixel" in res["message"].lower()


def test_regression_inputs_round_trip_through_pydicom(tmp_path: Path) -> None:
    """The helper writes what pydicom reads back (so the tests above damage a valid file)."""
    ds = pydicom.dcmread(small_dicom(tmp_path / "n.dcm"))
    assert ds.Rows == 64 and ds.Columns == 48
    img, meta = read_image(tmp_path / "n.dcm")
    assert img.shape == (64, 48) and meta.voi == "window:LINEAR"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "o.png")
    assert read_image(tmp_path / "o.png")[0].shape == (4, 4)


# ------------------------------------------------------------------ the fast paths are exact
def _films(tmp_path: Path) -> list[Path]:
    """Full-size-path films (> 65,536 pixels) for every grey-scale pipeline the reader has."""
    rng = np.random.default_rng(17)
    u12 = rng.integers(200, 3900, size=(300, 280)).astype(np.uint16)
    u12[0, :8] = [200, 3899, 1000, 1001, 1002, 3000, 250, 260]
    junk = u12 | np.uint16(0xA000)  # unused high bits set: must be ignored (PS3.5 8.1.1)
    s12 = rng.integers(-2000, 2000, size=(300, 280)).astype(np.int16)
    s12_junk = (s12.view(np.uint16) & np.uint16(0x0FFF)).view(np.int16)  # 12-bit two's complement
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 16]
    lut.LUTData = rng.integers(0, 65535, size=4096).astype("<u2").tobytes()  # not monotone
    voi = Dataset()
    voi.LUTDescriptor = [4096, 0, 12]
    voi.LUTData = rng.integers(0, 4095, size=4096).astype("<u2").tobytes()
    cases: list[tuple[str, np.ndarray, dict[str, Any]]] = [
        ("window", u12, {}),
        ("junk-bits", junk, {}),
        ("sigmoid", u12, {"VOILUTFunction": "SIGMOID"}),
        ("exact", u12, {"VOILUTFunction": "LINEAR_EXACT", "WindowWidth": "1000"}),
        ("full-range-rescale", u12, {"RescaleSlope": "-0.5", "RescaleIntercept": "100",
                                     "WindowCenter": None, "WindowWidth": None}),
        ("mono1", u12, {"PhotometricInterpretation": "MONOCHROME1", "RescaleSlope": "0.684",
                        "RescaleIntercept": "3"}),
        ("signed", s12_junk, {"PixelRepresentation": 1, "WindowCenter": "0",
                              "WindowWidth": "3000"}),
        ("modality-lut", u12, {"ModalityLUTSequence": [lut]}),
        ("voi-lut", u12, {"VOILUTSequence": [voi]}),
        ("16-bit", (u12.astype(np.uint32) * 16).astype(np.uint16), {"BitsStored": 16}),
    ]  # fmt: skip
    out = []
    for name, px, attrs in cases:
        path = small_dicom(tmp_path / f"{name}.dcm", pixels=px)
        ds = pydicom.dcmread(path)
        for k, v in attrs.items():
            if v is None:
                delattr(ds, k)
            else:
                setattr(ds, k, v)
        ds.save_as(path)
        out.append(path)
    return out


def test_the_readers_fast_paths_give_what_the_general_path_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Direct decoding of native films and the value-range lookup table (issue 17) change no
    output value: compared with pydicom's decoder and the pixel-by-pixel pipeline."""
    from edgevcf.data import io as io_mod

    films = _films(tmp_path)
    fast = [read_image(p) for p in films]
    for p in films:
        ds = pydicom.dcmread(p)
        decoded = io_mod._decode_native(ds, ds.file_meta.TransferSyntaxUID)
        assert decoded is not None, p.name
        native, peak = decoded
        np.testing.assert_array_equal(native, ds.pixel_array, err_msg=p.name)
        assert native.dtype == ds.pixel_array.dtype
        assert int(np.abs(native.astype(np.int32)).max()) <= peak, p.name  # the bound holds
    monkeypatch.setattr(io_mod, "_decode_native", lambda ds, ts: None)
    monkeypatch.setattr(io_mod, "_LUT_MIN_PIXELS", 1 << 40)  # pixel by pixel, pydicom decodes
    for p, (img, meta) in zip(films, fast, strict=True):
        ref_img, ref_meta = read_image(p)
        np.testing.assert_array_equal(img, ref_img, err_msg=p.name)
        assert meta == ref_meta, p.name


def test_pixel_data_with_an_unknown_vr_is_refused_not_raised(tmp_path: Path) -> None:
    """Found by the hypothesis-driven fuzz run (variant ``lut_path.dcm``, one byte changed): a
    Pixel Data element whose VR bytes are no VR made pydicom raise NotImplementedError from the
    native-decode fast path, past the reader's refusals. The fast path now hands any element it
    cannot convert to the general path, which refuses the film."""
    data = bytearray(small_dicom(tmp_path / "ok.dcm").read_bytes())
    at = data.find(b"\xe0\x7f\x10\x00OW")
    assert at > 0
    data[at + 4 : at + 6] = b"QQ"
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError, match="cannot decode pixel data"):
        read_image(bad)
