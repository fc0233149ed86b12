"""Seeded, structure-aware mutations of the seed files: the fuzzer's inputs (issue 7, section 2).

Why a seeded mutator, not atheris: atheris has no wheel for every Python we support and builds
only with clang + libFuzzer (neither is on our machines); its coverage guidance sees Python
bytecode, while the risky parsers here are C (zlib, OpenJPEG, Pillow's decoders) that it does not
instrument; and libFuzzer stops at the first crash, whereas we want counts. Here input *i* of a
format is a pure function of ``(seed, format, i)`` (:func:`make_input`): any finding is replayed
exactly (``benchmarks/fuzz_readers.py --replay dicom:1234``), on any machine, without a corpus
database. The same mutators are driven by hypothesis (``st.randoms()``) in the test suite, which
shrinks a failure to the fewest mutations.

Generic byte-level mutators, plus DICOM-aware ones (element values, VRs, lengths, order,
dimension bombs) and PNG-aware ones (IHDR fields, chunk lengths and CRCs, zlib streams, ancillary
chunks); every choice comes from the ``random.Random`` passed in.
"""

from __future__ import annotations

import io
import random
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevcf.testing.fuzz_corpus import Seed, build_seeds, pick_seed

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


def iter_inputs(fmt: str, n: int, seed: int, work: Path) -> Iterator[tuple[int, bytes, list[str]]]:
    """``(index, bytes, mutations)`` for inputs 0..n-1 (for tests and ad-hoc use)."""
    seeds = build_seeds(work)[fmt]
    for i in range(n):
        _, data, ops = make_input(fmt, i, seed, seeds)
        yield i, data, ops
