"""Compressed films as carts and archives send them, decoded by permissively licensed decoders.

JPEG Lossless (Process 14, SV1) is the most common compression of CR/DX archives; JPEG-LS and
JPEG 2000 follow. The ``decoders`` extra brings python-gdcm (BSD-style) and pylibjpeg-openjpeg
(MIT); pylibjpeg-libjpeg (GPLv3) is never needed. Each syntax is checked on a real file: our own
synthetic DX film compressed by dcmtk (a codec nobody here wrote), or by pydicom's encoder, must
decode to exactly the original; and real files of other vendors from pydicom's test data decode
to what dcmtk's own decompressor makes of them.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
)

from edgevcf.data.io import read_image
from edgevcf.errors import DataError

DCMTK_HINT = "needs dcmtk (Debian: apt-get update && apt-get install -y dcmtk)"
needs_gdcm = pytest.mark.skipif(
    importlib.util.find_spec("gdcm") is None, reason="needs pip install 'edgevcf[decoders]'"
)
needs_openjpeg = pytest.mark.skipif(
    importlib.util.find_spec("openjpeg") is None, reason="needs pip install 'edgevcf[decoders]'"
)


def _dcmtk(tool: str, *args: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(DCMTK_HINT)
    subprocess.run([tool, *args], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def film(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic lateral DX film (12 bits stored in 16), as the generator writes it."""
    pytest.importorskip("scipy")
    from edgevcf import progress
    from edgevcf.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("film")
    was = progress.enabled()
    progress.set_enabled(False)
    try:
        generate(out, 1, seed=3, cfg=SynthConfig.fast(), fmt="dicom", preview=False, val=0, test=0)
    finally:
        progress.set_enabled(was)
    return sorted((out / "images").glob("*.dcm"))[0]


def _same_image(compressed: Path, original: Path, syntax: str) -> None:
    assert pydicom.dcmread(compressed, stop_before_pixels=True).file_meta.TransferSyntaxUID == (
        syntax
    )
    got, meta = read_image(compressed)
    want, _ = read_image(original)
    assert meta.transfer_syntax == pydicom.uid.UID(syntax).name
    np.testing.assert_array_equal(got, want)  # lossless: the very same image


@needs_gdcm
def test_jpeg_lossless_sv1_by_dcmtk(film: Path, tmp_path: Path) -> None:
    out = tmp_path / "sv1.dcm"
    _dcmtk("dcmcjpeg", "+e1", str(film), str(out))
    _same_image(out, film, JPEGLosslessSV1)


@needs_gdcm
def test_jpeg_ls_lossless_by_dcmtk(film: Path, tmp_path: Path) -> None:
    out = tmp_path / "jls.dcm"
    _dcmtk("dcmcjpls", "+el", str(film), str(out))
    _same_image(out, film, JPEGLSLossless)


@needs_openjpeg
def test_jpeg2000_lossless_by_openjpeg(film: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(film)
    ds.compress(JPEG2000Lossless)
    out = tmp_path / "j2k.dcm"
    ds.save_as(out)
    _same_image(out, film, JPEG2000Lossless)


@needs_gdcm
@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm"])
def test_other_vendors_jpeg_lossless_matches_dcmtk(name: str, tmp_path: Path) -> None:
    """Real Process 14 files from pydicom's test data: ours equals dcmtk's own decompression."""
    src = get_testdata_file(name)
    if src is None:
        pytest.skip("needs pydicom-data")
    plain = tmp_path / "plain.dcm"
    _dcmtk("dcmdjpeg", str(src), str(plain))
    got, _ = read_image(src)
    want, _ = read_image(plain)
    np.testing.assert_array_equal(got, want)


@needs_openjpeg
@pytest.mark.parametrize("name", ["RG3_J2KR.dcm", "RG3_J2KI.dcm"])
def test_cr_jpeg2000_films_decode(name: str) -> None:
    """CR films in JPEG 2000 (lossless and lossy) from pydicom's test data."""
    src = get_testdata_file(name)
    if src is None:
        pytest.skip("needs pydicom-data")
    img, meta = read_image(src)
    assert img.shape == (1760, 1760) and np.isfinite(img).all()
    assert 0.0 <= float(img.min()) < float(img.max()) <= 1.0
    assert meta.transfer_syntax.startswith("JPEG 2000")


def test_12_bit_jpeg_extended_is_refused_with_an_honest_hint() -> None:
    """Only the GPLv3 pylibjpeg-libjpeg decodes it: the hint says so rather than recommend it."""
    src = get_testdata_file("JPEG-lossy.dcm")
    if src is None:
        pytest.skip("needs pydicom-data")
    assert pydicom.dcmread(src, stop_before_pixels=True).file_meta.TransferSyntaxUID == (
        JPEGExtended12Bit
    )
    if importlib.util.find_spec("libjpeg") is not None:
        pytest.skip("a 12-bit JPEG Extended decoder (pylibjpeg-libjpeg) is installed here")
    with pytest.raises(DataError) as info:
        read_image(src)
    hint = info.value.hint or ""
    assert "GPLv3" in hint and "JPEG Lossless" in hint
