"""Fuzz ``edgevcf.data.io.read_image`` with seeded, structure-aware mutations of real files.

Goal (issue 7, section 2): over >= 10,000 mutated inputs per format (DICOM and PNG), no exception
other than :class:`~edgevcf.errors.DataError` escapes, nothing hangs, and no input the reader
refuses ever gets a score from :meth:`Predictor.predict_many`.

Why a seeded mutator, not atheris: atheris has no wheel for every Python we support and builds
only with clang + libFuzzer (neither is on our machines); its coverage guidance sees Python
bytecode, while the risky parsers here are C (zlib, OpenJPEG, Pillow's decoders) that it does not
instrument; and libFuzzer stops at the first crash, whereas we want counts. Here input *i* of a
format is a pure function of ``(--seed, format, i)``: any finding is replayed exactly
(``--replay dicom:1234``), on any machine, without a corpus database. The same mutators are
driven by hypothesis (``st.randoms()``) in the test suite, which shrinks a failure to the fewest
mutations.

Each input runs in a worker process under a per-input time limit (a hang = the watchdog fires;
the worker is killed and restarted) and an address-space limit (a decompression bomb that tries
to allocate gigabytes surfaces as MemoryError, i.e. as a finding, not as a swapping machine).
Inputs that read are also preprocessed (``Preprocess.to_unit`` + ``InputSpec.prepare``) so a
"readable" image that breaks preprocessing is a finding too.

Seeds: pydicom's bundled test files that are small (<= 300 KB) and monochrome; DICOM and PNG
files from our synthetic generator (``edgevcf data synth``, DX and CR-style sites); and variants
of a synthetic film written with pydicom / Pillow to cover the reader's branches (implicit VR,
no preamble, RLE, deflate, signed + rescale, Modality and VOI LUT sequences, SIGMOID,
MONOCHROME1 + INVERSE, 8-bit, 1-bit, palette, RGB, LA, text chunks).

Run: ``.venv/bin/python benchmarks/fuzz_readers.py --n 10000 --bundle BUNDLE`` (writes
benchmarks/results/<machine>-fuzz.{json,md}). The test suite runs a short version.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import platform
import random
import re
import selectors
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgevcf.machine import machine_label

FORMATS = ("dicom", "png")
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 2048
PYDICOM_MAX_BYTES = 300_000


# ============================================================================ seed corpus
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


# ============================================================================ mutators
INTERESTING_8 = (0, 1, 0x7F, 0x80, 0xFF, 0x20, 0x5C)
INTERESTING_16 = (0, 1, 2, 3, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 63, 64, 255, 256,
                  0x7FFF, 0x8000, 0xFFFE, 0xFFFF)  # fmt: skip
INTERESTING_32 = (0, 1, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)

Mutator = Callable[[bytearray, random.Random], str]


def _pos(buf: bytearray, rnd: random.Random, head: int) -> int:
    """A position, biased towards the header where the parser decisions are."""
    if rnd.random() < 0.7 and head > 0:
        return rnd.randrange(min(head, len(buf)))
    return rnd.randrange(len(buf))


def _head_len(buf: bytearray) -> int:
    """Bytes before the pixel payload (DICOM Pixel Data / PNG first IDAT), or 1 KB."""
    if buf[:8] == b"\x89PNG\r\n\x1a\n":
        i = buf.find(b"IDAT")
        return i if i > 0 else 1024
    i = buf.find(b"\xe0\x7f\x10\x00")
    return i + 12 if i > 0 else 1024


def m_bitflip(buf: bytearray, rnd: random.Random) -> str:
    n = rnd.choice((1, 1, 2, 4, 8))
    head = _head_len(buf)
    for _ in range(n):
        i = _pos(buf, rnd, head)
        buf[i] ^= 1 << rnd.randrange(8)
    return f"bitflip x{n}"


def m_byte(buf: bytearray, rnd: random.Random) -> str:
    i = _pos(buf, rnd, _head_len(buf))
    buf[i] = rnd.choice(INTERESTING_8) if rnd.random() < 0.7 else rnd.randrange(256)
    return f"byte@{i}"


def m_int(buf: bytearray, rnd: random.Random) -> str:
    width = rnd.choice((2, 4))
    i = _pos(buf, rnd, _head_len(buf))
    if i + width > len(buf):
        return m_byte(buf, rnd)
    vals = INTERESTING_16 if width == 2 else INTERESTING_32
    fmt = rnd.choice(("<", ">")) + ("H" if width == 2 else "I")
    buf[i : i + width] = struct.pack(fmt, rnd.choice(vals))
    return f"int{8 * width}@{i}"


def m_truncate(buf: bytearray, rnd: random.Random) -> str:
    head = _head_len(buf)
    r = rnd.random()
    if r < 0.4:
        cut = rnd.randrange(1, max(2, min(head, len(buf))))
    elif r < 0.8:
        cut = rnd.randrange(min(head, len(buf) - 1), len(buf))
    else:
        cut = len(buf) - rnd.randrange(1, 16)
    cut = max(1, min(cut, len(buf) - 1))
    del buf[cut:]
    return f"truncate@{cut}"


def m_chunk_dup(buf: bytearray, rnd: random.Random) -> str:
    a = _pos(buf, rnd, _head_len(buf))
    n = rnd.randrange(1, min(512, len(buf) - a) + 1)
    b = rnd.randrange(len(buf))
    buf[b:b] = buf[a : a + n]
    return f"dup[{a}:+{n}]@{b}"


def m_chunk_del(buf: bytearray, rnd: random.Random) -> str:
    a = _pos(buf, rnd, _head_len(buf))
    n = rnd.randrange(1, min(512, len(buf) - a) + 1)
    if len(buf) - n < 1:
        return m_bitflip(buf, rnd)
    del buf[a : a + n]
    return f"del[{a}:+{n}]"


def m_insert(buf: bytearray, rnd: random.Random) -> str:
    a = _pos(buf, rnd, _head_len(buf))
    n = rnd.choice((1, 2, 4, 8, 64, 1024))
    buf[a:a] = bytes(rnd.randrange(256) for _ in range(n))
    return f"insert@{a}+{n}"


def m_splice(buf: bytearray, rnd: random.Random) -> str:
    a, b = rnd.randrange(len(buf)), _pos(buf, rnd, _head_len(buf))
    n = rnd.randrange(1, 64)
    piece = buf[a : a + n]
    buf[b : b + len(piece)] = piece
    return f"splice[{a}:+{n}]@{b}"


GENERIC: dict[str, Mutator] = {
    "bitflip": m_bitflip,
    "byte": m_byte,
    "int": m_int,
    "truncate": m_truncate,
    "chunk_dup": m_chunk_dup,
    "chunk_del": m_chunk_del,
    "insert": m_insert,
    "splice": m_splice,
}

# ------------------------------------------------------------------ DICOM-aware
_LONG_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
UNDEFINED = 0xFFFFFFFF


@dataclass(frozen=True)
class Elem:
    """Where one top-level element of a DICOM file lies."""

    tag: int
    vr: str | None
    hdr: int  # first byte of the element
    len_off: int
    len_size: int
    val: int  # first byte of the value
    length: int
    end: int  # first byte after the element (next element's header)
    explicit: bool
    little: bool


_TS = {
    "1.2.840.10008.1.2": (True, True),
    "1.2.840.10008.1.2.2": (False, False),
}


def dicom_elements(buf: bytes | bytearray) -> list[Elem]:
    """Top-level elements of ``buf`` (best effort: stops where parsing fails)."""
    from pydicom.filereader import data_element_generator

    start = 132 if buf[128:132] == b"DICM" else 0
    fp = io.BytesIO(bytes(buf))
    fp.seek(start)
    raw: list[tuple[Any, bool, bool]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ts = None
            if start:
                for el in data_element_generator(
                    fp, False, True, defer_size=256, stop_when=lambda t, v, n: t.group != 2
                ):
                    raw.append((el, True, True))
                    if el.tag == 0x00020010 and isinstance(el.value, bytes):
                        ts = el.value.rstrip(b"\x00 ").decode("ascii", "replace")
            if ts == "1.2.840.10008.1.2.1.99":
                implicit, little = None, None  # deflated: the data set is not walkable
            elif ts is not None:
                implicit, little = _TS.get(ts, (False, True))
            else:
                pos = fp.tell()
                implicit = not buf[pos + 4 : pos + 6].isalpha()
                little = True
            if implicit is not None and little is not None:
                for el in data_element_generator(fp, implicit, little, defer_size=256):
                    raw.append((el, not implicit, little))
        except Exception:
            pass
    raw = [r for r in raw if getattr(r[0], "value_tell", None) is not None]
    out: list[Elem] = []
    for k, (el, explicit, little) in enumerate(raw):
        vr = el.VR if explicit else None
        long_form = explicit and (vr in _LONG_VRS)
        len_size = 4 if (not explicit or long_form) else 2
        hdr = el.value_tell - (12 if long_form else 8)
        nxt = None
        if k + 1 < len(raw):
            nx, nexp, _ = raw[k + 1]
            nxt = nx.value_tell - (12 if nexp and nx.VR in _LONG_VRS else 8)
        end = nxt if nxt is not None else len(buf)
        out.append(
            Elem(int(el.tag), vr, hdr, el.value_tell - len_size, len_size, el.value_tell,
                 int(el.length), end, explicit, little)
        )  # fmt: skip
    return out


def _find(elems: list[Elem], tag: int) -> Elem | None:
    return next((e for e in elems if e.tag == tag), None)


def _set_length(buf: bytearray, e: Elem, n: int) -> None:
    fmt = ("<" if e.little else ">") + ("H" if e.len_size == 2 else "I")
    buf[e.len_off : e.len_off + e.len_size] = struct.pack(
        fmt, n & (0xFFFF if e.len_size == 2 else 0xFFFFFFFF)
    )


def _replace_value(buf: bytearray, e: Elem, value: bytes, pad: bytes = b" ") -> bool:
    if e.length == UNDEFINED or e.val + e.length > len(buf):
        return False
    if len(value) % 2:
        value += pad
    if e.len_size == 2 and len(value) > 0xFFFF:
        return False
    buf[e.val : e.val + e.length] = value
    _set_length(buf, e, len(value))
    return True


US_TAGS = {
    0x00280002: "SamplesPerPixel", 0x00280006: "PlanarConfiguration", 0x00280010: "Rows",
    0x00280011: "Columns", 0x00280100: "BitsAllocated", 0x00280101: "BitsStored",
    0x00280102: "HighBit", 0x00280103: "PixelRepresentation", 0x00280106: "Smallest",
    0x00280107: "Largest", 0x00280120: "PixelPaddingValue",
}  # fmt: skip

_NUMS = ("0", "-1", "1", "0.5", "1e308", "-1e308", "1e-308", "1e400", "nan", "inf", "-inf",
         "abc", "", "1\\2", "3.4e38", "+", "1 2")  # fmt: skip
_UIDS = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
         "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50",
         "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
         "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
         "1.2.840.10008.1.2.4.100", "1.2.3.4.5", "", "x", "1.2.840.10008.1.2.4.999")  # fmt: skip
STRING_CANDIDATES: dict[int, tuple[str, ...]] = {
    0x00280004: (
        "MONOCHROME1",
        "MONOCHROME2",
        "RGB",
        "PALETTE COLOR",
        "YBR_FULL",
        "YBR_FULL_422",
        "ARGB",
        "",
        "MONOCHROME3",
        "monochrome2",
        "MONOCHROME2\\RGB",
        "CMYK",
        "HSV",
    ),  # PhotometricInterpretation
    0x00020010: _UIDS,  # TransferSyntaxUID
    0x00280008: ("0", "1", "2", "-1", "999999999", "abc", "1.5", "", "1e9"),  # NumberOfFrames
    0x00281052: _NUMS,  # RescaleIntercept
    0x00281053: _NUMS,  # RescaleSlope
    0x00281050: _NUMS,  # WindowCenter
    0x00281051: _NUMS,  # WindowWidth
    0x00281056: ("LINEAR", "LINEAR_EXACT", "SIGMOID", "SIGMOIDX", "", "linear"),
    0x20500020: ("IDENTITY", "INVERSE", "", "FOO"),  # PresentationLUTShape
    0x00181164: ("0\\0", "-1\\1", "nan\\nan", "1", "abc", "1e309\\1", "0.1\\0.1\\0.1"),
    0x00280030: ("0\\0", "-1\\1", "nan\\nan", "1", "abc", "1e309\\1"),
    0x00080060: ("CR", "DX", "SR", "RTDOSE", "", "MG"),  # Modality
    0x00080005: ("ISO_IR 192", "ISO 2022 IR 87", "GARBAGE", "ISO_IR 100\\ISO 2022 IR 149", ""),
    0x00020002: ("1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.88.11", "", "1.2"),
}
INSERTABLE: dict[int, tuple[str, bytes]] = {
    0x00280008: ("IS", b"3 "),  # NumberOfFrames
    0x00280002: ("US", struct.pack("<H", 3)),
    0x00280006: ("US", struct.pack("<H", 1)),
    0x00280120: ("US", struct.pack("<H", 0)),
    0x00281050: ("DS", b"100 "),
    0x00281051: ("DS", b"0 "),
    0x00281052: ("DS", b"nan "),
    0x00281053: ("DS", b"1e308 "),
    0x00281056: ("CS", b"SIGMOID "),
    0x20500020: ("CS", b"INVERSE "),
    0x00280004: ("CS", b"RGB "),
    0x7FE00008: ("OF", b"\x00\x00\x80\x7f" * 4),  # FloatPixelData
}


def _encode_element(tag: int, vr: str, value: bytes, like: Elem) -> bytes:
    e = "<" if like.little else ">"
    head = struct.pack(e + "HH", tag >> 16, tag & 0xFFFF)
    if not like.explicit:
        return head + struct.pack(e + "I", len(value)) + value
    if vr in _LONG_VRS:
        return head + vr.encode() + b"\x00\x00" + struct.pack(e + "I", len(value)) + value
    return head + vr.encode() + struct.pack(e + "H", len(value)) + value


def _dicom_op(fn: Callable[[bytearray, random.Random, list[Elem]], str | None]) -> Mutator:
    def op(buf: bytearray, rnd: random.Random) -> str:
        elems = dicom_elements(buf)
        done = fn(buf, rnd, elems) if elems else None
        return done if done is not None else m_bitflip(buf, rnd)

    op.__name__ = fn.__name__
    return op


@_dicom_op
def d_set_us(buf: bytearray, rnd: random.Random, elems: list[Elem]) -> str | None:
    cands = [e for e in elems if e.tag in US_TAGS and 2 <= e.length <= 8]
    if not cands:
        return None
    e = rnd.choice(cands)
    v = rnd.choice(INTERESTING_16) if rnd.random() < 0.8 else rnd.randrange(65536)
    buf[e.val : e.val + 2] = struct.pack("<H" if e.little else ">H", v)
    return f"{US_TAGS[e.tag]}={v}"


@_dicom_op
def d_set_string(buf: bytearray, rnd: random.Random, elems: list[Elem]) -> str | None:
    cands = [e for e in elems if e.tag in STRING_CANDIDATES]
    if not cands:
        return None
    e = rnd.choice(cands)
    value = rnd.choice(STRING_CANDIDATES[e.tag])
    pad = b"\x00" if e.vr == "UI" or e.tag in (0x00020010, 0x00020002) else b" "
    if not _replace_value(buf, e, value.encode(), pad):
        return None
    if e.tag >> 16 == 2 and rnd.random() < 0.5:  # keep the meta group length right
        gl = _find(dicom_elements(buf), 0x00020000)
        if gl is not None and gl.length == 4:
            meta_end = max(x.end for x in dicom_elements(buf) if x.tag >> 16 == 2)
            buf[gl.val : gl.val + 4] = struct.pack("<I", meta_end - gl.end)
    return f"({e.tag >> 16:04X},{e.tag & 0xFFFF:04X})={value!r}"


@_dicom_op
def d_vr(buf: bytearray, rnd: random.Random, elems: list[Elem]) -> str | None:
    cands = [e for e in elems if e.explicit]
    if not cands:
        return None
    e = rnd.choice([x for x in cands if x.tag in US_TAGS or x.tag in STRING_CANDIDATES] or cands)
    vr = rnd.choice(("US", "SS", "UL", "SL", "OB", "OW", "UN", "SQ", "DS", "IS", "CS", "UI", "FD",
                     "FL", "AT", "LO", "PN", "XX", "\x00\x00", "  ", "OF", "UT"))  # fmt: skip
    buf[e.hdr + 4 : e.hdr + 6] = vr.encode("latin-1")
    return f"vr({e.tag:08X})={vr!r}"


@_dicom_op
def d_length(buf: bytearray, rnd: random.Random, elems: list[Elem]) -> str | None:
    e = rnd.choice(elems)
    top = 0xFFFF if e.len_size == 2 else 0xFFFFFFFF
    n = rnd.choice(
        (0, 1, e.length + 1, max(0, e.length - 1), e.length * 2, top, top - 1, 0x7FFFFFFF & top,
         len(buf), len(buf) - e.val + 2)
    )  # fmt: skip
    _set_length(buf, e, n)
    return f"len({e.tag:08X})={n}"


@_dicom_op
def d_delete(buf: bytearray, rnd: random.Random, elems: list[Elem]) -> str | None:
    important = [e for e in elems if e.tag in US_TAGS or e.tag in STRING_CANDIDATES]
    e = rnd.choice(important if important and rnd.random() < 0.7 else elems)
    del buf[e.hdr : e.end]
    return f"delete({e.tag:08X})"


@_dicom_op
def d_duplicate(buf: bytearray, rnd: random.Random, elems: list[Elem]) -> str | None:
    e = rnd.choice(elems)
    piece = buf[e.hdr : e.end]
    if len(piece) > 4096:
        return None
    buf[e.end : e.end] = piece
    return f"duplicate({e.tag:08X})"


@_dicom_op
def d_swap(buf: bytearray, rnd: random.Random, elems: list[Elem]) -> str | None:
    if len(elems) < 2:
        return None
    k = rnd.randrange(len(elems) - 1)
    a, b = elems[k], elems[k + 1]
    if a.end != b.hdr:
        return None
    buf[a.hdr : b.end] = buf[b.hdr : b.end] + buf[a.hdr : a.end]
    return f"swap({a.tag:08X},{b.tag:08X})"


@_dicom_op
def d_insert(buf: bytearray, rnd: random.Random, elems: list[Elem]) -> str | None:
    present = {e.tag for e in elems}
    free = [t for t in INSERTABLE if t not in present]
    if not free:
        return None
    tag = rnd.choice(free)
    vr, value = INSERTABLE[tag]
    data_elems = [e for e in elems if e.tag >> 16 != 2] or elems
    after = next((e for e in data_elems if e.tag > tag), None)
    like = after or data_elems[-1]
    if not like.little and vr == "US":
        value = value[::-1]
    at = after.hdr if after else data_elems[-1].end
    buf[at:at] = _encode_element(tag, vr, value, like)
    return f"insert({tag:08X},{vr})"


BOMB_DIMS = ((65535, 65535), (10000, 10000), (9999, 10001), (30000, 3334), (1, 65535),
             (65535, 1), (0, 100), (100, 0), (8192, 8192), (1, 1))  # fmt: skip


@_dicom_op
def d_bomb(buf: bytearray, rnd: random.Random, elems: list[Elem]) -> str | None:
    rows, cols = _find(elems, 0x00280010), _find(elems, 0x00280011)
    if rows is None or cols is None or rows.length < 2 or cols.length < 2:
        return None
    r, c = rnd.choice(BOMB_DIMS)
    e = "<H" if rows.little else ">H"
    buf[rows.val : rows.val + 2] = struct.pack(e, r)
    buf[cols.val : cols.val + 2] = struct.pack(e, c)
    extra = ""
    ba = _find(elems, 0x00280100)
    if ba is not None and ba.length >= 2 and rnd.random() < 0.3:
        bits = rnd.choice((1, 32, 64))
        buf[ba.val : ba.val + 2] = struct.pack(e, bits)
        extra = f", BitsAllocated={bits}"
    return f"bomb {r}x{c}{extra}"


@_dicom_op
def d_pixels(buf: bytearray, rnd: random.Random, elems: list[Elem]) -> str | None:
    px = _find(elems, 0x7FE00010)
    if px is None:
        return None
    r = rnd.random()
    if r < 0.4:
        cut = rnd.randrange(px.val, len(buf)) if px.val < len(buf) else px.val
        del buf[max(cut, px.hdr + 1) :]
        return f"pixels truncated@{cut}"
    if r < 0.7:
        n = rnd.choice((0, 2, px.length // 2, px.length + 2, UNDEFINED, 0x7FFFFFFE))
        _set_length(buf, px, n)
        return f"pixels len={n}"
    # fill the pixel payload with one extreme value (checks ranges, LUT tables, 32-bit values)
    v = rnd.choice((b"\xff", b"\x00", b"\x80", b"\x7f"))
    end = min(len(buf), px.val + (px.length if px.length != UNDEFINED else 0))
    buf[px.val : end] = v * (end - px.val)
    return f"pixels={v.hex()}"


DICOM_AWARE: dict[str, Mutator] = {
    "dcm_us": d_set_us,
    "dcm_string": d_set_string,
    "dcm_vr": d_vr,
    "dcm_length": d_length,
    "dcm_delete": d_delete,
    "dcm_duplicate": d_duplicate,
    "dcm_swap": d_swap,
    "dcm_insert": d_insert,
    "dcm_bomb": d_bomb,
    "dcm_pixels": d_pixels,
}

# ------------------------------------------------------------------ PNG-aware
PNG_SIG = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Chunk:
    """One PNG chunk: offset of its length field, data length, type."""

    off: int
    length: int
    ctype: bytes

    @property
    def data(self) -> int:
        return self.off + 8

    @property
    def end(self) -> int:
        return self.off + 12 + self.length


def png_chunks(buf: bytes | bytearray) -> list[Chunk]:
    """The chunks of ``buf`` (stops at the first that does not fit)."""
    out, i = [], 8
    while i + 12 <= len(buf):
        (n,) = struct.unpack(">I", buf[i : i + 4])
        if i + 12 + n > len(buf):
            break
        out.append(Chunk(i, n, bytes(buf[i + 4 : i + 8])))
        i += 12 + n
    return out


def _chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def _fix_crc(buf: bytearray, c: Chunk) -> None:
    crc = zlib.crc32(bytes(buf[c.off + 4 : c.data + c.length]))
    buf[c.data + c.length : c.end] = struct.pack(">I", crc)


def _png_op(fn: Callable[[bytearray, random.Random, list[Chunk]], str | None]) -> Mutator:
    def op(buf: bytearray, rnd: random.Random) -> str:
        chunks = png_chunks(buf) if buf[:8] == PNG_SIG else []
        done = fn(buf, rnd, chunks) if chunks else None
        return done if done is not None else m_bitflip(buf, rnd)

    op.__name__ = fn.__name__
    return op


_IHDR_FIELDS = {
    "width": (0, ">I", (0, 1, 2, 7, 255, 256, 65535, 65536, 100000, 2**31 - 1, 2**31, 2**32 - 1)),
    "height": (4, ">I", (0, 1, 2, 7, 255, 256, 65535, 65536, 100000, 2**31 - 1, 2**31, 2**32 - 1)),
    "depth": (8, ">B", (0, 1, 2, 4, 8, 16, 3, 5, 32, 255)),
    "colour": (9, ">B", (0, 2, 3, 4, 6, 1, 5, 7, 8, 255)),
    "compression": (10, ">B", (0, 1, 255)),
    "filter": (11, ">B", (0, 1, 255)),
    "interlace": (12, ">B", (0, 1, 2, 255)),
}


@_png_op
def p_ihdr(buf: bytearray, rnd: random.Random, chunks: list[Chunk]) -> str | None:
    ihdr = next((c for c in chunks if c.ctype == b"IHDR" and c.length >= 13), None)
    if ihdr is None:
        return None
    name = rnd.choice(list(_IHDR_FIELDS))
    off, fmt, vals = _IHDR_FIELDS[name]
    v = rnd.choice(vals)
    buf[ihdr.data + off : ihdr.data + off + struct.calcsize(fmt)] = struct.pack(fmt, v)
    fixed = rnd.random() < 0.9
    if fixed:
        _fix_crc(buf, ihdr)
    return f"IHDR.{name}={v}{'' if fixed else ' (bad crc)'}"


PNG_BOMBS = ((20000, 20000), (65535, 65535), (2**31 - 1, 2**31 - 1), (100001, 1000),
             (9000, 9000), (1, 2**31 - 1), (2**31 - 1, 1), (12000, 9000))  # fmt: skip


@_png_op
def p_bomb(buf: bytearray, rnd: random.Random, chunks: list[Chunk]) -> str | None:
    """Huge declared dimensions over a tiny (valid) zlib stream of zeros."""
    ihdr = next((c for c in chunks if c.ctype == b"IHDR" and c.length >= 13), None)
    if ihdr is None:
        return None
    w, h = rnd.choice(PNG_BOMBS)
    buf[ihdr.data : ihdr.data + 8] = struct.pack(">II", w, h)
    _fix_crc(buf, ihdr)
    idats = [c for c in chunks if c.ctype == b"IDAT"]
    if idats and rnd.random() < 0.7:
        stream = zlib.compress(b"\x00" * (1 << 20), 9)  # 1 MB of zero rows in ~1 KB
        first, last = idats[0], idats[-1]
        buf[first.off : last.end] = _chunk(b"IDAT", stream)
    return f"bomb {w}x{h}"


@_png_op
def p_length(buf: bytearray, rnd: random.Random, chunks: list[Chunk]) -> str | None:
    c = rnd.choice(chunks)
    n = rnd.choice((0, 1, c.length + 1, max(0, c.length - 1), 0x7FFFFFFF, 0x80000000,
                    0xFFFFFFFF, len(buf)))  # fmt: skip
    buf[c.off : c.off + 4] = struct.pack(">I", n)
    return f"len({c.ctype.decode('latin-1')})={n}"


@_png_op
def p_crc(buf: bytearray, rnd: random.Random, chunks: list[Chunk]) -> str | None:
    c = rnd.choice(chunks)
    buf[c.end - 1] ^= 0x5A
    return f"crc({c.ctype.decode('latin-1')})"


@_png_op
def p_chunk_del(buf: bytearray, rnd: random.Random, chunks: list[Chunk]) -> str | None:
    c = rnd.choice(chunks)
    del buf[c.off : c.end]
    return f"delete {c.ctype.decode('latin-1')}"


@_png_op
def p_chunk_dup(buf: bytearray, rnd: random.Random, chunks: list[Chunk]) -> str | None:
    c = rnd.choice([x for x in chunks if x.length < 1 << 16] or chunks)
    at = rnd.choice(chunks).off
    buf[at:at] = buf[c.off : c.end]
    return f"duplicate {c.ctype.decode('latin-1')}"


@_png_op
def p_chunk_swap(buf: bytearray, rnd: random.Random, chunks: list[Chunk]) -> str | None:
    if len(chunks) < 2:
        return None
    k = rnd.randrange(len(chunks) - 1)
    a, b = chunks[k], chunks[k + 1]
    buf[a.off : b.end] = buf[b.off : b.end] + buf[a.off : a.end]
    return f"swap {a.ctype.decode('latin-1')},{b.ctype.decode('latin-1')}"


def _exif(rnd: random.Random) -> bytes:
    """A little-endian TIFF header with one IFD entry (Orientation), sometimes malformed."""
    count = rnd.choice((1, 1, 0, 0xFFFF))
    orient = rnd.choice((1, 3, 6, 8, 9, 0, 0xFFFF))
    ifd_off = rnd.choice((8, 8, 0xFFFFFFF0, 2))
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, orient, 0)
    return b"II*\x00" + struct.pack("<I", ifd_off) + struct.pack("<H", count) + entry + b"\0" * 4


def _insert_payload(rnd: random.Random) -> tuple[bytes, bytes]:
    kind = rnd.choice(("tEXt", "zTXt", "iTXt", "tRNS", "sBIT", "gAMA", "pHYs", "iCCP", "eXIf",
                       "acTL", "PLTE", "ZZZZ", "zTXt-bomb", "sPLT"))  # fmt: skip
    junk = bytes(rnd.randrange(256) for _ in range(rnd.choice((0, 1, 5, 40))))
    if kind == "tEXt":
        return b"tEXt", b"Comment\x00" + junk
    if kind == "zTXt":
        return b"zTXt", b"Comment\x00\x00" + (zlib.compress(junk) if rnd.random() < 0.5 else junk)
    if kind == "zTXt-bomb":
        return b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * (8 << 20), 9)
    if kind == "iTXt":
        return b"iTXt", b"Comment\x00\x01\x00en\x00\x00" + junk
    if kind == "iCCP":
        return b"iCCP", b"icc\x00\x00" + (zlib.compress(junk) if rnd.random() < 0.5 else junk)
    if kind == "eXIf":
        return b"eXIf", _exif(rnd)
    if kind == "acTL":  # an APNG control chunk: 2 frames
        return b"acTL", struct.pack(">II", rnd.choice((2, 0, 2**31)), 0)
    if kind == "PLTE":
        return b"PLTE", junk or b"\x00\x00\x00"
    if kind == "ZZZZ":  # an unknown *critical* chunk
        return b"ZZZZ", junk
    if kind == "gAMA":
        return b"gAMA", struct.pack(">I", rnd.choice((0, 45455, 2**32 - 1)))
    if kind == "pHYs":
        return b"pHYs", struct.pack(">IIB", rnd.choice((0, 3780)), 2**32 - 1, rnd.choice((0, 1)))
    return kind.encode(), junk


@_png_op
def p_insert(buf: bytearray, rnd: random.Random, chunks: list[Chunk]) -> str | None:
    ctype, data = _insert_payload(rnd)
    idat = next((c for c in chunks if c.ctype == b"IDAT"), None)
    at = idat.off if idat and rnd.random() < 0.7 else chunks[min(1, len(chunks) - 1)].off
    buf[at:at] = _chunk(ctype, data)
    return f"insert {ctype.decode('latin-1')}[{len(data)}]"


@_png_op
def p_scanlines(buf: bytearray, rnd: random.Random, chunks: list[Chunk]) -> str | None:
    """Decompress the image data, damage the scanlines (filter bytes, length), recompress."""
    idats = [c for c in chunks if c.ctype == b"IDAT"]
    if not idats:
        return None
    try:
        raw = bytearray(zlib.decompress(b"".join(buf[c.data : c.data + c.length] for c in idats)))
    except zlib.error:
        return None
    if not raw:
        return None
    r = rnd.random()
    if r < 0.4:
        for _ in range(rnd.choice((1, 4, 32))):
            raw[rnd.randrange(len(raw))] = rnd.choice((5, 6, 255, 4, 2))
        what = "filter bytes"
    elif r < 0.7:
        del raw[rnd.randrange(len(raw)) :]
        what = "short"
    else:
        raw += bytes(rnd.randrange(256) for _ in range(rnd.choice((1, 100, 5000))))
        what = "long"
    first, last = idats[0], idats[-1]
    buf[first.off : last.end] = _chunk(b"IDAT", zlib.compress(bytes(raw), 1))
    return f"scanlines {what}"


@_png_op
def p_idat_bytes(buf: bytearray, rnd: random.Random, chunks: list[Chunk]) -> str | None:
    """Damage the zlib stream itself but keep the CRC valid (so the inflater sees it)."""
    idats = [c for c in chunks if c.ctype == b"IDAT" and c.length > 0]
    if not idats:
        return None
    c = rnd.choice(idats)
    for _ in range(rnd.choice((1, 2, 8))):
        i = c.data + (rnd.randrange(min(c.length, 16)) if rnd.random() < 0.5 else
                      rnd.randrange(c.length))  # fmt: skip
        buf[i] = rnd.randrange(256)
    _fix_crc(buf, c)
    return "idat bytes"


PNG_AWARE: dict[str, Mutator] = {
    "png_ihdr": p_ihdr,
    "png_bomb": p_bomb,
    "png_length": p_length,
    "png_crc": p_crc,
    "png_delete": p_chunk_del,
    "png_duplicate": p_chunk_dup,
    "png_swap": p_chunk_swap,
    "png_insert": p_insert,
    "png_scanlines": p_scanlines,
    "png_idat": p_idat_bytes,
}


def mutators(fmt: str) -> dict[str, Mutator]:
    """Generic byte-level mutators plus the format-aware ones."""
    return {**GENERIC, **(DICOM_AWARE if fmt == "dicom" else PNG_AWARE)}


def mutate(fmt: str, data: bytes, rnd: random.Random) -> tuple[bytes, list[str]]:
    """1-3 mutations of ``data``, 60 % of them format-aware; all choices come from ``rnd``."""
    generic, aware = list(GENERIC), list(DICOM_AWARE if fmt == "dicom" else PNG_AWARE)
    table = mutators(fmt)
    buf = bytearray(data)
    ops = []
    for _ in range(rnd.choice((1, 1, 1, 2, 2, 3))):
        name = rnd.choice(aware) if rnd.random() < 0.6 else rnd.choice(generic)
        desc = table[name](buf, rnd)
        ops.append(f"{name}: {desc}")
        if not buf:
            buf = bytearray(data[:1])
    return bytes(buf), ops


def make_input(
    fmt: str, index: int, seed: int, seeds: Sequence[Seed]
) -> tuple[Seed, bytes, list[str]]:
    """Input ``index`` of ``fmt``: a pure function of ``(seed, fmt, index)``."""
    rnd = random.Random(f"edgevcf-fuzz:{seed}:{fmt}:{index}")
    s = pick_seed(seeds, rnd)
    data, ops = mutate(fmt, s.data, rnd)
    return s, data, ops


# ============================================================================ one input
_NUM = re.compile(r"(?<![A-Za-z])[-+]?\d[\d.,e+-]*")


def reason_kind(message: str, path: str) -> str:
    """A refusal message without the path and the numbers: groups refusals by cause."""
    text = message.replace(path, "<file>")
    text = re.sub(r"\(.*", "", text)  # details (exception text) in parentheses
    text = _NUM.sub("N", text)
    return " ".join(text.split())[:90]


def check_one(
    path: Path, preprocess: Any | None = None, input_spec: Any | None = None
) -> dict[str, Any]:
    """Read one file as the runtime does; classify what happened.

    Outcomes: ``ok`` (a finite 2-D float32 image that preprocesses), ``refused`` (DataError),
    ``unhandled`` (any other exception, from reading or preprocessing), ``bad_output`` (read
    "succeeded" but the array is not a finite 2-D float32 image of the shape meta states).
    """
    import numpy as np

    from edgevcf.data.io import read_image
    from edgevcf.errors import DataError

    t0 = time.perf_counter()
    rec: dict[str, Any] = {}
    stage = "read"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img, meta = read_image(path)
            problems = []
            if not isinstance(img, np.ndarray) or img.dtype != np.float32 or img.ndim != 2:
                problems.append(f"type {type(img).__name__} {getattr(img, 'dtype', '')}")
            elif img.shape != (meta.rows, meta.cols):
                problems.append(f"shape {img.shape} != meta {(meta.rows, meta.cols)}")
            elif not np.isfinite(img).all():
                problems.append("non-finite values")
            elif meta.source_format in ("dicom", "png") and (img.min() < 0 or img.max() > 1):
                problems.append(f"values outside [0, 1]: {img.min()}..{img.max()}")
            if problems:
                rec.update(outcome="bad_output", error="; ".join(problems))
            else:
                rec.update(outcome="ok", shape=list(img.shape), photometric=meta.photometric)
                if preprocess is not None and input_spec is not None:
                    stage = "preprocess"
                    x = input_spec.prepare(preprocess.to_unit(img), preprocess)
                    if not np.isfinite(x).all():
                        rec.update(outcome="bad_output", error="non-finite preprocessed input")
    except DataError as exc:
        if stage == "read":
            rec.update(outcome="refused", reason=reason_kind(exc.message, str(path)))
        else:  # refused by preprocessing (empty, NaN): counts as a refusal by the runtime
            rec.update(outcome="refused", reason="preprocess: " + reason_kind(exc.message, ""))
    except BaseException as exc:  # the point: anything else is a finding
        if isinstance(exc, KeyboardInterrupt):
            raise
        tb = traceback.extract_tb(exc.__traceback__)
        rec.update(
            outcome="unhandled",
            stage=stage,
            error=f"{type(exc).__name__}: {str(exc)[:300]}",
            where=[f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in tb[-4:]],
        )
    rec["ms"] = round((time.perf_counter() - t0) * 1e3, 2)
    return rec


# ============================================================================ worker process
def _worker_main(config_path: str) -> None:
    """Answer ``{"fmt", "i"}`` requests on stdin with one JSON line each on stdout."""
    import resource

    cfg = json.loads(Path(config_path).read_text())
    limit = int(cfg["memory_mb"]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    seeds = build_seeds(Path(cfg["work"]))
    from edgevcf.data.preprocess import Preprocess
    from edgevcf.onnx_export import InputSpec

    pre, spec = Preprocess(input_size=64), InputSpec((1, 3, 64, 64))
    if cfg.get("bundle"):
        from edgevcf.bundle import Bundle

        b = Bundle.load(cfg["bundle"])
        pre, spec = b.preprocess, b.input
    scratch = Path(cfg["scratch"])
    out = sys.stdout
    for line in sys.stdin:
        req = json.loads(line)
        if "path" in req:  # an unmutated file (the sweep over all of pydicom's test files)
            rec = check_one(Path(req["path"]), pre, spec)
            rec.update(path=req["path"])
            out.write(json.dumps(rec) + "\n")
            out.flush()
            continue
        fmt, i = req["fmt"], int(req["i"])
        s, data, ops = make_input(fmt, i, int(cfg["seed"]), seeds[fmt])
        path = scratch / f"input-{os.getpid()}"
        path.write_bytes(data)
        rec = check_one(path, pre, spec)
        rec.update(i=i, fmt=fmt, seed_name=s.name, origin=s.origin, ops=ops, size=len(data))
        out.write(json.dumps(rec) + "\n")
        out.flush()


class Worker:
    """A worker process with a watchdog: a request that takes too long kills it (a hang)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[str] | None = None
        self.restarts = -1
        self._warm = False  # has the current process answered once (imports done)?

    def _start(self) -> subprocess.Popen[str]:
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        with open(self.log, "a") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--worker", str(self.config)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                bufsize=1, env=env,
            )  # fmt: skip
        self.restarts += 1
        return self.proc

    def ask(self, fmt: str, i: int, timeout: float, path: str | None = None) -> dict[str, Any]:
        """The worker's record for input ``i`` (or file ``path``), or a ``hang`` / ``died``."""
        proc = self.proc if self.proc and self.proc.poll() is None else self._start()
        assert proc.stdin is not None and proc.stdout is not None
        t0 = time.monotonic()
        req = {"path": path} if path else {"fmt": fmt, "i": i}
        try:
            proc.stdin.write(json.dumps(req) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        # the first request after a (re)start also waits for the imports and the seed corpus
        budget = timeout + (0.0 if self._warm else 60.0)
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            ready = sel.select(budget)
        if ready:
            line = proc.stdout.readline()
            if line:
                self._warm = True
                rec: dict[str, Any] = json.loads(line)
                return rec
            code = proc.wait(timeout=10)
            self._warm = False
            return {"i": i, "fmt": fmt, "outcome": "died", "error": f"worker exit code {code}",
                    "ms": round((time.monotonic() - t0) * 1e3, 1)}  # fmt: skip
        proc.kill()
        proc.wait(timeout=10)
        self._warm = False
        return {"i": i, "fmt": fmt, "outcome": "hang", "error": f"no answer in {timeout:g} s",
                "ms": round((time.monotonic() - t0) * 1e3, 1)}  # fmt: skip

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# ============================================================================ campaign
OUTCOMES = ("ok", "refused", "unhandled", "bad_output", "hang", "died")
FAILURES = ("unhandled", "bad_output", "hang", "died")


@dataclass
class FormatResult:
    """Counts for one format."""

    fmt: str
    n: int
    counts: dict[str, int]
    seconds: float
    worker_restarts: int
    by_origin: dict[str, dict[str, int]]
    by_mutator: dict[str, dict[str, int]]
    refusal_reasons: dict[str, int]
    failures: list[dict[str, Any]]
    slowest_ms: float
    scoring: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def clean(self) -> bool:
        """No unhandled exception, wrong output, hang or dead worker; no refused input scored."""
        return not any(self.counts.get(k, 0) for k in FAILURES) and not self.scoring.get(
            "refused_scored", 0
        )


def run_format(
    fmt: str,
    n: int,
    *,
    seed: int = 0,
    work: Path,
    bundle: str | os.PathLike[str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    start: int = 0,
    progress_every: int = 0,
) -> FormatResult:
    """Run inputs ``start .. start+n-1`` of ``fmt`` through a watched worker."""
    work.mkdir(parents=True, exist_ok=True)
    build_seeds(work)  # once, here, not in the timed worker start
    shm = Path("/dev/shm")
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-", dir=shm if shm.is_dir() else work))
    config = work / f"worker-{fmt}.json"
    config.write_text(json.dumps({
        "work": str(work), "seed": seed, "memory_mb": memory_mb, "scratch": str(scratch),
        "bundle": str(bundle) if bundle else None,
    }))  # fmt: skip
    worker = Worker(config, work / f"worker-{fmt}.log")
    records = []
    t0 = time.perf_counter()
    try:
        for k, i in enumerate(range(start, start + n)):
            records.append(worker.ask(fmt, i, timeout_s))
            if progress_every and (k + 1) % progress_every == 0:
                c = collections.Counter(r["outcome"] for r in records)
                print(f"  {fmt}: {k + 1}/{n} {dict(c)}", file=sys.stderr, flush=True)
    finally:
        worker.close()
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - t0
    return summarise(fmt, records, seconds, max(0, worker.restarts))


def sweep_pydicom(
    *, work: Path, timeout_s: float = DEFAULT_TIMEOUT_S, memory_mb: int = DEFAULT_MEMORY_MB
) -> dict[str, Any]:
    """Every file pydicom ships for its tests, unmutated (colour, multi-frame, large, broken
    ones included): each must be read or refused with a DataError, never crash or hang."""
    from pydicom.data import get_testdata_files

    work.mkdir(parents=True, exist_ok=True)
    build_seeds(work)
    config = work / "worker-sweep.json"
    config.write_text(json.dumps({"work": str(work), "seed": 0, "memory_mb": memory_mb,
                                  "scratch": str(work), "bundle": None}))  # fmt: skip
    worker = Worker(config, work / "worker-sweep.log")
    files = sorted(f for f in get_testdata_files() if Path(f).is_file())
    t0 = time.perf_counter()
    try:
        recs = [worker.ask("dicom", k, timeout_s, path=f) for k, f in enumerate(files)]
    finally:
        worker.close()
    counts = collections.Counter(r["outcome"] for r in recs)
    return {
        "files": len(files),
        "counts": {k: counts.get(k, 0) for k in OUTCOMES},
        "seconds": round(time.perf_counter() - t0, 1),
        "failures": [
            {**r, "path": Path(r.get("path", "?")).name} for r in recs if r["outcome"] in FAILURES
        ],
    }


def summarise(
    fmt: str, records: list[dict[str, Any]], seconds: float, restarts: int
) -> FormatResult:
    """Counts by outcome, seed origin, mutator; refusal causes; the failures in full."""
    counts = dict.fromkeys(OUTCOMES, 0)
    by_origin: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    by_mut: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    reasons: collections.Counter[str] = collections.Counter()
    for r in records:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
        by_origin[r.get("origin", "?")][r["outcome"]] += 1
        for op in {o.split(":", 1)[0] for o in r.get("ops", [])}:
            by_mut[op][r["outcome"]] += 1
        if r["outcome"] == "refused":
            reasons[r["reason"]] += 1
    return FormatResult(
        fmt=fmt,
        n=len(records),
        counts=counts,
        seconds=round(seconds, 1),
        worker_restarts=restarts,
        by_origin={k: dict(v) for k, v in sorted(by_origin.items())},
        by_mutator={k: dict(v) for k, v in sorted(by_mut.items())},
        refusal_reasons=dict(reasons.most_common(25)),
        failures=[r for r in records if r["outcome"] in FAILURES],
        slowest_ms=max((float(r.get("ms", 0)) for r in records), default=0.0),
        records=records,
    )


def score_check(
    res: FormatResult,
    bundle: str | os.PathLike[str],
    *,
    seed: int,
    work: Path,
    refused_sample: int = 1000,
    ok_sample: int = 50,
) -> dict[str, Any]:
    """Inputs the reader refused go through ``Predictor.predict_many``: none may get a score.

    A sample of readable inputs goes along in the same batches (so refusals sit between scored
    images, as on a cart) and must be scored or refused by the runtime, never fail.
    """
    from edgevcf.runtime import Predictor

    seeds = build_seeds(work)[res.fmt]
    refused = [r["i"] for r in res.records if r["outcome"] == "refused"]
    ok = [r["i"] for r in res.records if r["outcome"] == "ok"]

    def spread(xs: list[int], k: int) -> list[int]:
        if len(xs) <= k:
            return xs
        step = len(xs) / k
        return [xs[int(j * step)] for j in range(k)]

    chosen = sorted([(i, "refused") for i in spread(refused, refused_sample)]
                    + [(i, "ok") for i in spread(ok, ok_sample)])  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="score-", dir=work))
    try:
        paths = []
        for i, _ in chosen:
            _, data, _ = make_input(res.fmt, i, seed, seeds)
            p = tmp / f"{res.fmt}-{i}"
            p.write_bytes(data)
            paths.append(p)
        pred = Predictor.from_bundle(bundle)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            preds = pred.predict_many(paths)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out: collections.Counter[str] = collections.Counter()
    bad = []
    for (i, kind), got in zip(chosen, preds, strict=True):
        scored = got.probability is not None or got.decision is not None
        out[f"{kind}_checked"] += 1
        if kind == "refused":
            if scored or got.status != "refused":
                out["refused_scored"] += 1
                bad.append({"i": i, "status": got.status, "probability": got.probability})
        else:
            out[f"ok_{got.status}"] += 1
            if got.status == "error" or (got.status == "ok" and not scored):
                bad.append({"i": i, "status": got.status, "reason": got.reason})
    summary: dict[str, Any] = {"refused_scored": 0, **out, "problems": bad}
    return summary


# ============================================================================ reporting
def versions() -> dict[str, str]:
    """Library versions the readers ran with."""
    import numpy
    import PIL
    import pydicom

    out = {"python": platform.python_version(), "numpy": numpy.__version__,
           "pydicom": pydicom.__version__, "Pillow": PIL.__version__}  # fmt: skip
    for mod in ("pylibjpeg", "openjpeg", "hypothesis"):
        try:
            from importlib.metadata import version

            out[mod if mod != "openjpeg" else "pylibjpeg-openjpeg"] = version(
                mod if mod != "openjpeg" else "pylibjpeg-openjpeg"
            )
        except Exception:
            continue
    return out


def report(
    results: list[FormatResult], args: dict[str, Any], sweep: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON summary (per-input records are left out; failures are kept in full)."""
    return {
        "machine": machine_label(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": args,
        "versions": versions(),
        "clean": all(r.clean for r in results) and not (sweep or {}).get("failures"),
        "formats": {
            r.fmt: {k: v for k, v in asdict(r).items() if k not in ("records", "fmt")}
            for r in results
        },
        "pydicom_sweep": sweep,
    }


def markdown(rep: dict[str, Any]) -> str:
    """A short human summary of :func:`report`."""
    a = rep["args"]
    lines = [
        "# Fuzzing `read_image` (DICOM and PNG)",
        "",
        f"Machine {rep['machine']}, {rep['created']}; seed {a['seed']}, per-input time limit "
        f"{a['timeout_s']:g} s, worker address space {a['memory_mb']} MB; "
        + ", ".join(f"{k} {v}" for k, v in rep["versions"].items())
        + ".",
        "",
        "| format | inputs | read OK | refused (DataError) | unhandled exceptions | bad output "
        "| hangs | worker deaths | refused checked via predict_many | refused that got a score "
        "| time s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    seeds = rep.get("seeds", {})
    for fmt, r in rep["formats"].items():
        c, s = r["counts"], r.get("scoring", {})
        lines.append(
            f"| {fmt} | {r['n']} | {c['ok']} | {c['refused']} | {c['unhandled']} | "
            f"{c['bad_output']} | {c['hang']} | {c['died']} | "
            f"{s.get('refused_checked', 'n/a')} | {s.get('refused_scored', 'n/a')} | "
            f"{r['seconds']:.0f} |"
        )
    if seeds:
        lines += [
            "",
            "Seed files: "
            + "; ".join(
                f"{fmt}: " + ", ".join(f"{n} {origin}" for origin, n in sorted(c.items()))
                for fmt, c in seeds.items()
            )
            + " (pydicom: its small single-sample monochrome test files; synthetic: "
            "`edgevcf data synth`; variant: a synthetic film rewritten per reader branch).",
        ]
    sw = rep.get("pydicom_sweep")
    if sw:
        c = sw["counts"]
        lines += [
            "",
            f"All {sw['files']} files pydicom ships for its tests, unmutated (colour, multi-frame, "
            f"large and deliberately broken ones included): {c['ok']} read, {c['refused']} "
            f"refused, {sum(c[k] for k in FAILURES)} failures.",
        ]
    lines += ["", f"Verdict: {'clean' if rep['clean'] else 'FINDINGS (see below)'}.", ""]
    for fmt, r in rep["formats"].items():
        lines += [f"## {fmt}", ""]
        s = r.get("scoring")
        if s:
            extra = ", ".join(f"{k} {v}" for k, v in s.items() if k != "problems")
            lines += [f"predict_many check: {extra}.", ""]
        lines += ["| mutator | inputs | ok | refused | failures |", "|---|---|---|---|---|"]
        for name, c in r["by_mutator"].items():
            fails = sum(c.get(k, 0) for k in FAILURES)
            lines.append(
                f"| {name} | {sum(c.values())} | {c.get('ok', 0)} | {c.get('refused', 0)} "
                f"| {fails} |"
            )
        lines += ["", "Most frequent refusal causes:", ""]
        lines += [f"- {n} x {why}" for why, n in list(r["refusal_reasons"].items())[:12]]
        if r["failures"]:
            lines += ["", "Failures:", ""]
            for f in r["failures"][:30]:
                lines.append(
                    f"- input {f['i']} ({f.get('seed_name')}; {'; '.join(f.get('ops', []))}): "
                    f"{f['outcome']}: {f.get('error')}"
                )
        lines.append("")
    return "\n".join(lines)


# ============================================================================ CLI
def _replay(spec: str, seed: int, work: Path, out: Path | None) -> None:
    fmt, _, idx = spec.partition(":")
    seeds = build_seeds(work)[fmt]
    s, data, ops = make_input(fmt, int(idx), seed, seeds)
    target = out or work / f"replay-{fmt}-{idx}"
    target.write_bytes(data)
    print(f"{fmt} input {idx}: seed file {s.name}; mutations: {'; '.join(ops)}")
    print(f"written to {target}")
    print(json.dumps(check_one(target)))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="inputs per format")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--bundle", help="a bundle: preprocess spec + the predict_many check")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per input, s")
    ap.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB)
    ap.add_argument("--work", type=Path, default=None, help="seed cache (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for the results files")
    ap.add_argument("--replay", help="FORMAT:INDEX: write that input and read it once")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        _worker_main(a.worker)
        return 0
    work = a.work or Path(tempfile.mkdtemp(prefix="edgevcf-fuzz-"))
    if a.replay:
        _replay(a.replay, a.seed, work, None)
        return 0
    results = []
    for fmt in a.formats.split(","):
        print(f"{fmt}: {a.n} inputs", file=sys.stderr, flush=True)
        res = run_format(fmt, a.n, seed=a.seed, work=work, bundle=a.bundle, timeout_s=a.timeout,
                         memory_mb=a.memory_mb, progress_every=1000)  # fmt: skip
        if a.bundle:
            res.scoring = score_check(res, a.bundle, seed=a.seed, work=work)
        results.append(res)
    sweep = sweep_pydicom(work=work, timeout_s=a.timeout, memory_mb=a.memory_mb)
    args = {"n": a.n, "seed": a.seed, "timeout_s": a.timeout, "memory_mb": a.memory_mb,
            "bundle": Path(a.bundle).name if a.bundle else None}  # fmt: skip
    rep = report(results, args, sweep)
    rep["seeds"] = {
        fmt: dict(collections.Counter(s.origin for s in items))
        for fmt, items in build_seeds(work).items()
    }
    a.out.mkdir(parents=True, exist_ok=True)
    stem = a.out / f"{machine_label()}-fuzz"
    Path(f"{stem}.json").write_text(json.dumps(rep, indent=1) + "\n")
    Path(f"{stem}.md").write_text(markdown(rep))
    print(markdown(rep))
    return 0 if rep["clean"] else 1


def iter_inputs(fmt: str, n: int, seed: int, work: Path) -> Iterator[tuple[int, bytes, list[str]]]:
    """``(index, bytes, mutations)`` for inputs 0..n-1 (for tests and ad-hoc use)."""
    seeds = build_seeds(work)[fmt]
    for i in range(n):
        _, data, ops = make_input(fmt, i, seed, seeds)
        yield i, data, ops


if __name__ == "__main__":
    sys.exit(main())
