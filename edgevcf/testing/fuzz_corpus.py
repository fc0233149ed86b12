"""The fuzzer's seed corpus: real, unmutated DICOM and PNG files to mutate (issue 7, section 2).

Mutating real files, not random bytes, gets inputs past the first parser checks into the
branches where the reader decides. Seeds: pydicom's bundled test files that are small
(<= 300 KB) and monochrome; DICOM and PNG files from our synthetic generator (``edgevcf data
synth``, DX and CR-style sites); and variants of a synthetic film written with pydicom / Pillow
to cover the reader's branches (implicit VR, no preamble, RLE, deflate, signed + rescale,
Modality and VOI LUT sequences, SIGMOID, MONOCHROME1 + INVERSE, 8-bit, 1-bit, palette, RGB, LA,
text chunks). The corpus is deterministic and cached as files, so worker processes load it
instead of rebuilding it.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

FORMATS = ("dicom", "png")
PYDICOM_MAX_BYTES = 300_000


@dataclass(frozen=True)
class Seed:
    """One unmutated input."""

    name: str
    origin: str  # pydicom | synthetic | variant
    data: bytes


def _synth(
    out: Path, fmt: Literal["png", "dicom"], patients: int = 6, pixel_mm: float = 2.0
) -> list[Path]:
    """Small synthetic patients (2 mm pixels: ~175 x 215) in ``fmt``; DX and CR sites."""
    from edgevcf import progress
    from edgevcf.data.synth import SynthConfig, generate

    was = progress.enabled()
    progress.set_enabled(False)
    try:
        generate(
            out, patients, cfg=SynthConfig(pixel_mm=pixel_mm), seed=3, fmt=fmt, workers=1,
            preview=False,
        )  # fmt: skip
    finally:
        progress.set_enabled(was)
    return sorted((out / "images").iterdir())


def _large_variants(film: Path) -> dict[str, bytes]:
    """A film over 65,536 pixels (the reader's lookup-table path), also as 32-bit pixels."""
    import numpy as np
    import pydicom

    out = {"lut_path": film.read_bytes()}
    ds = pydicom.dcmread(film)
    px = ds.pixel_array.astype(np.uint32) << 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    ds.PixelData = px.astype("<u4").tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    out["u32"] = buf.getvalue()
    return out


def _dicom_variants(base: Path) -> dict[str, bytes]:
    """A synthetic DICOM rewritten to reach each branch of the DICOM reader."""
    import numpy as np
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import (
        DeflatedExplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        RLELossless,
    )

    def load() -> Any:
        ds = pydicom.dcmread(base)
        px = ds.pixel_array[::2, ::2].copy()  # ~88 x 108: fast to read, still a film
        ds.Rows, ds.Columns = px.shape
        ds.PixelData = px.astype("<u2").tobytes()
        return ds, px

    def dump(ds: Any, **kw: Any) -> bytes:
        buf = io.BytesIO()
        ds.save_as(buf, **kw)
        return buf.getvalue()

    out: dict[str, bytes] = {}
    ds, _ = load()
    out["explicit_le"] = dump(ds, enforce_file_format=True)
    ds, _ = load()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    out["implicit_le"] = dump(ds, implicit_vr=True, little_endian=True, enforce_file_format=True)
    out["no_preamble"] = out["implicit_le"][132:]  # forced read of a bare data set
    ds, _ = load()
    ds.compress(RLELossless)
    out["rle"] = dump(ds, enforce_file_format=True)
    ds, _ = load()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    out["deflate"] = dump(ds, enforce_file_format=True)
    ds, px = load()
    ds.PixelRepresentation = 1
    ds.PixelData = (px.astype(np.int32) - 2048).astype("<i2").tobytes()
    ds.RescaleSlope, ds.RescaleIntercept = "0.5", "-100"
    out["signed_rescale"] = dump(ds, enforce_file_format=True)
    ds, _ = load()
    for k in ("RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth"):
        delattr(ds, k)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "US"
    item.add_new(0x00283006, "US", [min(65535, 16 * v) for v in range(4096)])  # LUT Data
    ds.ModalityLUTSequence = DicomSequence([item])
    voi = Dataset()
    voi.LUTDescriptor = [256, 0, 8]
    voi.add_new(0x00283006, "OW", np.arange(256, dtype="<u2").tobytes())
    ds.VOILUTSequence = DicomSequence([voi])
    out["lut_sequences"] = dump(ds, enforce_file_format=True)
    ds, _ = load()
    ds.VOILUTFunction = "SIGMOID"
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.PresentationLUTShape = "INVERSE"
    out["sigmoid_mono1"] = dump(ds, enforce_file_format=True)
    ds, px = load()
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = (px >> 4).astype(np.uint8).tobytes()
    ds.WindowCenter, ds.WindowWidth = "128", "256"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out["8bit"] = dump(ds, enforce_file_format=True)
    return out


def _png_variants(base: Path) -> dict[str, bytes]:
    """A synthetic PNG re-saved in each grey mode Pillow writes, and in refused ones."""
    import numpy as np
    from PIL import Image, PngImagePlugin

    with Image.open(base) as im:
        a16 = np.asarray(im, dtype=np.uint16)[::2, ::2].copy()
    a8 = (a16 >> 8).astype(np.uint8)

    def dump(img: Any, **kw: Any) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format="PNG", **kw)
        return buf.getvalue()

    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "synthetic film")
    text.add_text("Software", "edgevcf", zip=True)
    return {
        "i16": dump(Image.fromarray(a16)),
        "l8": dump(Image.fromarray(a8)),
        "l8_text": dump(Image.fromarray(a8), pnginfo=text),
        "bilevel": dump(Image.fromarray(a8 > 128)),
        "tiny": dump(Image.fromarray(a8[:4, :4])),
        "palette": dump(Image.fromarray(a8).convert("P")),
        "rgb": dump(Image.fromarray(a8).convert("RGB")),
        "la": dump(Image.fromarray(a8).convert("LA")),
    }


def _pydicom_seeds() -> list[Seed]:
    """pydicom's test files that are small and single-sample monochrome (the ones in scope)."""
    import pydicom
    from pydicom.data import get_testdata_files

    seeds = []
    for f in sorted(get_testdata_files(), key=lambda s: Path(s).name):
        p = Path(f)
        if not p.is_file() or p.stat().st_size > PYDICOM_MAX_BYTES:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
                mono = str(ds.get("PhotometricInterpretation", "")).startswith("MONOCHROME")
                single = int(ds.get("SamplesPerPixel", 1) or 1) == 1
        except Exception:  # a deliberately broken test file: still a fine seed
            mono = single = True
        if mono and single:
            seeds.append(Seed(f"pydicom/{p.parent.name}/{p.name}", "pydicom", p.read_bytes()))
    return seeds


def build_seeds(work: Path) -> dict[str, list[Seed]]:
    """The seed corpus per format (deterministic), cached as files under ``work/seeds``."""
    cache = work / "seeds"
    index = cache / "index.json"
    if index.is_file():
        listing = json.loads(index.read_text())
        return {
            fmt: [Seed(s["name"], s["origin"], (cache / s["file"]).read_bytes()) for s in items]
            for fmt, items in listing.items()
        }
    tmp = Path(tempfile.mkdtemp(prefix="synth-", dir=work))
    try:
        dcm_files = _synth(tmp / "dicom", "dicom")
        png_files = _synth(tmp / "png", "png")
        seeds: dict[str, list[Seed]] = {"dicom": [], "png": []}
        for p in dcm_files:
            seeds["dicom"].append(Seed(f"synthetic/{p.name}", "synthetic", p.read_bytes()))
        for name, data in _dicom_variants(dcm_files[0]).items():
            seeds["dicom"].append(Seed(f"variant/{name}.dcm", "variant", data))
        large = _synth(tmp / "large", "dicom", patients=1, pixel_mm=1.2)[0]
        for name, data in _large_variants(large).items():
            seeds["dicom"].append(Seed(f"variant/{name}.dcm", "variant", data))
        seeds["dicom"] += _pydicom_seeds()
        for p in png_files:
            seeds["png"].append(Seed(f"synthetic/{p.name}", "synthetic", p.read_bytes()))
        for name, data in _png_variants(png_files[0]).items():
            seeds["png"].append(Seed(f"variant/{name}.png", "variant", data))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    listing = {}
    for fmt, items in seeds.items():
        listing[fmt] = []
        for k, s in enumerate(items):
            fname = f"{fmt}-{k:03d}"
            (cache / fname).write_bytes(s.data)
            listing[fmt].append({"name": s.name, "origin": s.origin, "file": fname})
    index.write_text(json.dumps(listing, indent=1))
    return seeds


def pick_seed(seeds: Sequence[Seed], rnd: random.Random) -> Seed:
    """Half the inputs from our own files (synthetic + variants), half from the others."""
    own = [s for s in seeds if s.origin != "pydicom"]
    other = [s for s in seeds if s.origin == "pydicom"]
    pool = own if not other or rnd.random() < 0.5 else other
    return rnd.choice(pool)
