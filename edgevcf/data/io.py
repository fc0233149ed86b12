"""Read one radiograph (DICOM, PNG, TIFF, JPEG) into a display-ready float32 array.

Every model, the training loop and every deployed runtime see images through :func:`read_image`,
so this is the one place where stored values become "what a radiologist would see": for DICOM the
grey-scale pipeline of PS3.3 C.11 (Modality LUT -> VOI LUT -> Presentation/MONOCHROME1 inversion),
for ordinary image files a fixed scaling by bit depth. The output is always a 2-D float32 array in
which larger means brighter (bone bright), so a classifier never has to know which vendor or which
photometric interpretation produced its input.

Anything that cannot be shown faithfully as one grey-scale picture (colour, several frames, an
undecodable transfer syntax, a truncated file, non-finite values) is refused with a
:class:`~edgevcf.errors.DataError` that says why: a wrong image must never become a score.

No patient-identifying attribute leaves this module: :class:`ImageMeta` holds acquisition facts
only, so it can be logged, written into reports and bundles without de-identification. A damaged
file can still put a patient's name where a harmless attribute should be (a wrong length makes an
element swallow its neighbours), so nothing read from a file is quoted unless it is a well-formed
code string: third-party messages have their quoted values masked, pydicom's warnings are turned
into masked DEBUG logs, and pydicom's own log records are masked too (found by fuzzing a DICOM
whose identifying fields were filled in).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydicom
import pydicom.uid
from PIL import Image, ImageOps, UnidentifiedImageError
from pydicom.datadict import dictionary_has_tag
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder

from edgevcf.errors import DataError

logger = logging.getLogger(__name__)

#: Largest image (rows x cols) accepted from any format. A 43 x 43 cm detector at 0.05 mm is
#: 74 M pixels; anything beyond this is a decompression bomb or not a radiograph.
MAX_PIXELS: int = 100_000_000

ModalityLUTKind = Literal["rescale", "lut_sequence", "none"]
VOIKind = Literal[
    "lut_sequence",
    "window:LINEAR",
    "window:LINEAR_EXACT",
    "window:SIGMOID",
    "full_range",
    "bit_depth",
    "none",
]

_SUPPORTED_FORMATS_HINT = (
    "edgevcf reads single-frame greyscale DICOM (CR/DX/SC...) and greyscale PNG, TIFF or JPEG "
    "(8 or 16 bit)."
)
_GREYSCALE_HINT = (
    "The classifier needs a greyscale radiograph: export the original single-frame "
    "MONOCHROME1/MONOCHROME2 image from the PACS or modality, not a screenshot or colour rendering."
)
_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
)
_COLOUR_PHOTOMETRICS = ("RGB", "PALETTE COLOR", "ARGB", "CMYK", "HSV")
_VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")

# Pillow modes we can turn into grey levels, with (bits_stored, bits_allocated).
_PIL_GREY_MODES: dict[str, tuple[int | None, int]] = {
    "1": (1, 1),
    "L": (8, 8),
    "I;16": (16, 16),
    "I;16L": (16, 16),
    "I;16B": (16, 16),
    "I;16N": (16, 16),
    "I": (16, 32),
    "F": (None, 32),
}
_PIL_COLOUR_MODES = frozenset(
    {"RGB", "RGBA", "RGBX", "RGBa", "P", "PA", "LA", "La", "CMYK", "YCbCr", "LAB", "HSV"}
)


# --------------------------------------------------------------------------------------------
# no patient data in messages

#: A quoted value in a message (Python reprs of str and bytes included).
_QUOTED = re.compile(r"b?'(?:[^'\\\n]|\\.)*'" + r'|b?"(?:[^"\\\n]|\\.)*"')
_CODE_STRING = re.compile(r"[A-Z0-9 _]{1,16}")
_LONG_STRING = re.compile(r"[^\x00-\x1f\x7f\\]{1,64}")


def redact(text: str) -> str:
    """``text`` with every quoted value masked as ``'…'``.

    For messages of third-party code about a file's content: a damaged element's value may hold
    bytes of its neighbours, a patient's name among them.
    """
    return _QUOTED.sub("'…'", text)


def _shown(value: object) -> str:
    """A DICOM code string for a message, quoted only when it is a well-formed one."""
    text = str(value).strip()
    return repr(text) if _CODE_STRING.fullmatch(text) else "(not a valid code string)"


class _RedactValues(logging.Filter):
    """Masks quoted values in pydicom's log records (it logs what it warns, values included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot be formatted: leave it to the handler
            return True
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


for _name in ("pydicom", "pydicom.pixels.decoders.base", "pydicom.pixels.utils"):
    _pydicom_logger = logging.getLogger(_name)
    if not any(isinstance(f, _RedactValues) for f in _pydicom_logger.filters):
        _pydicom_logger.addFilter(_RedactValues())

#: ``warnings.catch_warnings`` swaps process-wide state: one reader at a time may hold it.
_WARNINGS_LOCK = threading.Lock()


@contextmanager
def _warnings_as_masked_logs(p: Path) -> Iterator[None]:
    """Warnings raised in the block become DEBUG logs with their quoted values masked.

    pydicom's validation warnings quote the offending value ("Invalid value for VR UI: '...'"),
    which in a damaged file can be a swallowed patient name; printed by Python's default
    warning display it would reach the terminal and the logs.
    """
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                if not issubclass(w.category, Image.DecompressionBombWarning):
                    logger.debug("%s: %s: %s", p, w.category.__name__, redact(str(w.message)))


@dataclass(frozen=True)
class ImageMeta:
    """Acquisition facts about one image, free of patient identifiers.

    Kept deliberately small: it travels into manifests, reports and bundles, so it must never
    carry a name, ID, date, institution or UID (those would make every report a PHI leak).

    Attributes:
        source_format: ``"dicom"`` or the lower-cased Pillow format name (``"png"``, ``"tiff"``,
            ``"jpeg"``, ...).
        rows: Image height in pixels.
        cols: Image width in pixels.
        photometric: DICOM Photometric Interpretation (``"MONOCHROME1"`` / ``"MONOCHROME2"``);
            always ``"MONOCHROME2"`` for Pillow images.
        bits_stored: Significant bits per pixel (DICOM Bits Stored; 1, 8 or 16 for Pillow
            integer images; ``None`` for float images).
        bits_allocated: Container bits per pixel.
        pixel_spacing_mm: ``(row, col)`` spacing in mm, or ``None`` when absent or invalid.
        spacing_source: ``"ImagerPixelSpacing"``, ``"PixelSpacing"`` or ``None``.
        modality: DICOM Modality (``"CR"``, ``"DX"``, ...), ``None`` for Pillow images.
        view_position: DICOM View Position (``"LL"``, ``"AP"``, ...).
        body_part: DICOM Body Part Examined.
        manufacturer: DICOM Manufacturer (device maker, not the site).
        transfer_syntax: Name of the DICOM transfer syntax the pixels were stored with.
        modality_lut: Which Modality LUT stage was applied.
        voi: Which VOI stage produced the [0, 1] output; ``"bit_depth"`` (value / (2**bits - 1))
            and ``"none"`` (float pass-through) are used for Pillow images.
        inverted: Whether ``1 - x`` was applied so that bone is bright.
        reduced_by: The integer box reduction applied to the stored pixels before the grey-scale
            pipeline (``read_image(..., shrink_for=)``, preprocessing version 2); 1: none.
            ``rows`` and ``cols`` are the stored size either way.
    """

    source_format: str
    rows: int
    cols: int
    photometric: str
    bits_stored: int | None
    bits_allocated: int | None
    pixel_spacing_mm: tuple[float, float] | None
    spacing_source: str | None
    modality: str | None
    view_position: str | None
    body_part: str | None
    manufacturer: str | None
    transfer_syntax: str | None
    modality_lut: ModalityLUTKind
    voi: VOIKind
    inverted: bool
    reduced_by: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        if self.pixel_spacing_mm is not None:
            out["pixel_spacing_mm"] = list(self.pixel_spacing_mm)
        return out


def read_image(
    path: str | os.PathLike[str], *, shrink_for: int | None = None
) -> tuple[np.ndarray, ImageMeta]:
    """Read a radiograph as a 2-D float32 array where larger means brighter.

    The format is decided by content, not by file extension, because PACS exports are often
    named ``IM0001`` or carry a wrong suffix: a ``DICM`` marker at byte 128 means DICOM; otherwise
    Pillow is asked to identify the file; if it cannot, a preamble-less DICOM is tried.

    Args:
        path: File to read.
        shrink_for: The longer side the caller will shrink the image to (preprocessing version
            2). A film at least 6 times larger is first box-reduced in its *stored* values by
            ``k = longer // (3 * shrink_for)`` — the first step Pillow's antialiased resize takes
            anyway (``reducing_gap=3``) — and the grey-scale pipeline then runs on 1/k² of the
            pixels (``meta.reduced_by``). None: the full image (version 1).

    Returns:
        ``(image, meta)``: image is C-contiguous float32 of shape ``(rows, cols)`` in display
        orientation (DICOM output in [0, 1]; integer Pillow images in [0, 1]; float TIFFs as
        stored), meta describes how it was obtained.

    Raises:
        DataError: The file is missing, unreadable, or refused (colour, multi-frame, truncated,
            undecodable, empty, too large, non-finite values, ...). The message says why.
    """
    p = Path(os.fspath(path))
    head = _read_head(p)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return _read_dicom(p, forced=False, shrink_for=shrink_for)
    pillow_result = _read_pillow(p)
    if pillow_result is not None:
        img, meta = pillow_result
        k = reduction(meta.rows, meta.cols, shrink_for)
        if k > 1:  # the grey scale of a Pillow image is linear: the order does not matter
            return box_reduce(img, k), dataclasses.replace(meta, reduced_by=k)
        return pillow_result
    for magic, fmt in _IMAGE_MAGIC:
        if head.startswith(magic):
            # An image signature Pillow cannot parse: say so rather than "not DICOM".
            raise DataError(
                f"{p}: corrupt or unsupported {fmt} file (Pillow cannot parse its header)",
                hint="The file is damaged or uses an unusual variant; re-export it.",
            )
    return _read_dicom(p, forced=True, shrink_for=shrink_for)


# --------------------------------------------------------------------------------------------
# shared helpers


def reduction(rows: int, cols: int, shrink_for: int | None) -> int:
    """The box reduction ``read_image(..., shrink_for=)`` applies to a ``rows`` x ``cols`` image."""
    if not shrink_for:
        return 1
    return max(1, max(rows, cols) // (3 * int(shrink_for)))


def box_reduce(image: np.ndarray, k: int) -> np.ndarray:
    """Mean of each k x k block (partial blocks at the right and bottom edges: their own mean),
    in float32: Pillow's ``Image.reduce``, the first step of its antialiased resize.

    Integers of up to 16 bits take :func:`block_sums` and :func:`block_means`, which give
    Pillow's values bit for bit (it sums them exactly too) at a fraction of its time; other
    images go through Pillow itself.
    """
    if _sums_exact(image):
        return block_means(block_sums(image, k), image.shape, k)
    if image.dtype == np.dtype("<u2") and image.flags.c_contiguous:
        # Pillow maps 16-bit pixels without a copy and converts them to float itself: one
        # full-size float image instead of three (each a fresh 20 MB for a 5-megapixel film)
        h, w = image.shape
        pil = Image.frombuffer("I;16", (w, h), image, "raw", "I;16", 0, 1).convert("F")
    else:
        pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    return np.asarray(pil.reduce(k), dtype=np.float32)


def _sums_exact(image: np.ndarray) -> bool:
    """Whether Pillow's float reduce sums ``image`` exactly: integers of up to 16 bits (its
    partial sums of four stay below 2**24), so any exact sum gives its means."""
    return image.dtype.kind in "iu" and image.dtype.itemsize <= 2


def block_sums(image: np.ndarray, k: int, peak: int | None = None) -> np.ndarray:
    """Exact sum of each k x k block of an integer image of up to 16 bits, partial blocks at the
    right and bottom edges summing what they hold: shape ``(ceil(rows / k), ceil(cols / k))``.

    Rows first (k whole rows added at a time, vectorised along them), then columns on the k
    times smaller result (k strided adds), each in the narrowest integer type that holds its
    sums: 16 bits for a 12-bit film reduced by up to 4, where numpy adds without converting.
    ``peak`` bounds ``abs(image)`` where the caller knows it (the decoder: a pass less); where
    it does not allow 16-bit sums, the image's own extremes are looked at.
    """
    h, w = image.shape
    hf, wf = h // k, w // k
    signed = image.dtype.kind == "i"
    if peak is None or _accumulator(signed, peak * k * k).itemsize > 2:
        peak = max(int(image.max()), -int(image.min()) if signed else 0)
    rows_t, sums_t = _accumulator(signed, peak * k), _accumulator(signed, peak * k * k)
    rows = np.empty((-(-h // k), w), rows_t)
    np.add.reduce(image[: hf * k].reshape(hf, k, w), axis=1, dtype=rows_t, out=rows[:hf])
    if h % k:
        np.add.reduce(image[hf * k :], axis=0, dtype=rows_t, out=rows[hf])
    sums = np.empty((rows.shape[0], -(-w // k)), sums_t)
    whole = sums[:, :wf]
    np.add(rows[:, 0 : wf * k : k], rows[:, 1 : wf * k : k], out=whole, dtype=sums_t)
    for j in range(2, k):
        np.add(whole, rows[:, j : wf * k : k], out=whole, dtype=sums_t)
    if w % k:
        np.add.reduce(rows[:, wf * k :], axis=1, dtype=sums_t, out=sums[:, wf])
    return sums


def _accumulator(signed: bool, bound: int) -> np.dtype:
    """The narrowest integer type holding every sum of magnitude up to ``bound``."""
    kinds = (np.int16, np.int32, np.int64) if signed else (np.uint16, np.int32, np.int64)
    return next(np.dtype(t) for t in kinds if bound <= np.iinfo(t).max)


def _edge_blocks(shape: tuple[int, ...], k: int) -> list[tuple[tuple[slice, slice], int]]:
    """The partial blocks of a k-reduction of ``shape`` (right column, bottom row, corner) as
    ``(index into the reduced image, pixels per block)``."""
    h, w = shape
    hf, wf, hr, wr = h // k, w // k, h % k, w % k
    parts = []
    if wr:
        parts.append(((slice(0, hf), slice(wf, wf + 1)), wr * k))
    if hr:
        parts.append(((slice(hf, hf + 1), slice(0, wf)), k * hr))
    if wr and hr:
        parts.append(((slice(hf, hf + 1), slice(wf, wf + 1)), wr * hr))
    return parts


def block_means(sums: np.ndarray, shape: tuple[int, ...], k: int) -> np.ndarray:
    """:func:`block_sums` of an image of ``shape`` as means, rounded as Pillow rounds them:
    ``float32(sum * (1.0 / pixels))`` in double precision."""
    means = sums * (1.0 / (k * k))
    for where, n in _edge_blocks(shape, k):
        means[where] = sums[where] * (1.0 / n)
    return means.astype(np.float32)


def _read_head(p: Path) -> bytes:
    """Return the first 132 bytes, turning file-system problems into DataError."""
    try:
        with p.open("rb") as fh:
            head = fh.read(132)
    except FileNotFoundError as exc:
        raise DataError(f"{p}: file not found", hint="Check the path (and the manifest).") from exc
    except IsADirectoryError as exc:
        raise DataError(
            f"{p}: is a directory, not an image file",
            hint="Point to one image file; a DICOM series folder is not read as a whole.",
        ) from exc
    except PermissionError as exc:
        raise DataError(f"{p}: permission denied", hint="Check the file's permissions.") from exc
    except OSError as exc:
        raise DataError(f"{p}: cannot open file ({exc})") from exc
    if not head:
        raise DataError(f"{p}: file is empty (0 bytes)", hint="Re-export or re-copy the image.")
    return head


class _BoundedReader(io.BufferedReader):
    """A read-only file whose ``read(n)`` never asks for more than what is left in it.

    pydicom and Pillow call ``read(length)`` with lengths taken from the file itself; a forged
    length (a DICOM element or a PNG chunk claiming 4 GB) would make the buffered reader
    allocate 4 GB before finding the file short -- a MemoryError on a cart with little memory
    (found by fuzzing). Clamped, a forged length only yields a short read, which both libraries
    report as a truncated file.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(io.FileIO(path, "rb"))
        self._size = os.fstat(self.fileno()).st_size

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size > 0:
            size = min(size, max(0, self._size - self.tell()))
            if size == 0:
                return b""
        return super().read(size)


def _open(p: Path) -> _BoundedReader:
    """Open ``p`` for the parsers, turning file-system problems into DataError."""
    try:
        return _BoundedReader(p)
    except OSError as exc:
        raise DataError(f"{p}: cannot open file ({exc})") from exc


def _check_size(p: Path, rows: int, cols: int) -> None:
    """Refuse empty and absurdly large images before any pixel is decoded."""
    if rows <= 0 or cols <= 0:
        raise DataError(f"{p}: zero-size image ({rows} x {cols} pixels)")
    if rows * cols > MAX_PIXELS:
        raise DataError(
            f"{p}: image too large ({rows} x {cols} = {rows * cols} pixels > {MAX_PIXELS})",
            hint="Refused as a possible decompression bomb; downsample the image first.",
        )


def _check_finite(p: Path, arr: np.ndarray, stage: str) -> None:
    """Refuse NaN/inf: they would silently poison normalisation and the model's score."""
    if not np.isfinite(arr).all():
        n_bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise DataError(
            f"{p}: {n_bad} non-finite (NaN/inf) pixel value(s) {stage}",
            hint="Check Rescale Slope/Intercept and the LUTs, or the exporting software.",
        )


# --------------------------------------------------------------------------------------------
# DICOM


_LUT_MIN_PIXELS = 1 << 16
_LUT_MAX_SPAN = 1 << 16


def _table_codes(
    image: np.ndarray, k: int, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """A film of ``shape``, given as its stored integers (k = 1) or their :func:`block_sums`
    (k > 1), as codes into a table of the values the (reduced) image may hold, for the lookup
    of :func:`_read_dicom`: ``(codes, values, first)`` with the image equal to
    ``values[codes]``.

    ``values`` holds every integer (k = 1) or whole-block mean (k > 1: the mean of a block sum,
    rounded as :func:`block_means` rounds it) from 0 (unsigned) or the smallest up to the
    largest that occurs, ``first`` indexing the smallest; then, for k > 1, the mean of each
    partial block at the right and bottom edges (a mean of fewer pixels), one entry each. None
    where a table does not pay (float pixels, a small image) or would be larger than the image
    (32-bit pixels of a wide range: one stray 0xFFFFFFF0 would ask for a 32 GB table; found by
    fuzzing).
    """
    hf, wf = shape[0] // k, shape[1] // k
    if image.dtype.kind not in "iu" or image.size <= _LUT_MIN_PIXELS or hf * wf == 0:
        return None
    smallest, largest = int(image[:hf, :wf].min()), int(image[:hf, :wf].max())
    low = 0 if image.dtype.kind == "u" else smallest  # unsigned: codes without a subtraction
    if largest - low >= max(_LUT_MAX_SPAN, image.size):
        return None
    values = np.arange(low, largest + 1)
    edges = _edge_blocks(shape, k) if k > 1 else []
    n_codes = values.size + sum(image[where].size for where, _ in edges)
    codes = image
    if low or n_codes - 1 > np.iinfo(codes.dtype).max:  # codes from 0, in a type that holds them
        codes = codes.astype(np.promote_types(codes.dtype, np.int32))
        codes[:hf, :wf] -= low
    elif k > 1:
        codes = codes.copy()  # the sums stay as they are: the edge blocks become codes below
    if k == 1:
        return codes, values.astype(image.dtype), smallest - low
    means = [(values * (1.0 / (k * k))).astype(np.float32)]  # rounded as block_means rounds
    for where, n in edges:
        means.append((image[where] * (1.0 / n)).astype(np.float32).ravel())
        start = sum(m.size for m in means[:-1])
        codes[where] = np.arange(start, start + means[-1].size).reshape(codes[where].shape)
    return codes, np.concatenate(means), smallest - low


def _read_dicom(
    p: Path, *, forced: bool, shrink_for: int | None = None
) -> tuple[np.ndarray, ImageMeta]:
    """Run the PS3.3 grey-scale pipeline on a single-frame DICOM image.

    Order: refuse what cannot be one grey-scale picture -> decode -> Modality LUT -> VOI ->
    inversion. Inversion rule: invert (``1 - x``) when Photometric Interpretation is MONOCHROME1
    *or* Presentation LUT Shape is INVERSE, and only once when both hold. PS3.3 C.8.11.6.1.2
    requires INVERSE together with MONOCHROME1 for DX images, i.e. the two attributes describe
    the same single inversion, so XOR-ing them would display bone dark. MONOCHROME1 with an
    IDENTITY shape is still inverted (the photometric interpretation defines what the stored
    values mean). A Presentation LUT *Sequence* (rare in image objects) is not applied.

    Args:
        p: File to read.
        forced: Whether the file had no ``DICM`` marker (read with pydicom's ``force=True``, and
            accepted only if it looks like a data set).
        shrink_for: See :func:`read_image`: large films are box-reduced in their stored values
            before the Modality LUT (version 2 of the preprocessing).
    """
    with _warnings_as_masked_logs(p):
        ds = _parse_dicom(p, forced=forced)
    _refuse_unsupported_dicom(p, ds)
    rows, cols = _required_int(p, ds, "Rows"), _required_int(p, ds, "Columns")
    _check_size(p, rows, cols)
    tsyntax = _transfer_syntax(p, ds)
    _check_decoder(p, tsyntax)

    stored, peak = _decode_pixels(p, ds, tsyntax)
    if stored.ndim != 2 or stored.shape != (rows, cols):
        raise DataError(
            f"{p}: decoded pixel array has shape {stored.shape}, expected ({rows}, {cols})",
            hint="Only single-frame greyscale images are supported.",
        )
    reduced_by = reduction(rows, cols, shrink_for)
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    shape = str(ds.get("PresentationLUTShape") or "").strip().upper()
    inverted = photometric == "MONOCHROME1" or shape == "INVERSE"
    # Integer pixels of up to 16 bits take at most 65,536 distinct values: run the pipeline once
    # per value that occurs and look the image up (as viewers do) -- ~5x faster on a
    # 7-megapixel film, and identical, since every step is elementwise and full-range only needs
    # the values present. A reduced film is looked up by its block sums (the mean of a whole
    # block is a function of its sum; :func:`_table_codes`), so neither its means nor the
    # pipeline are computed per pixel.
    sums = block_sums(stored, reduced_by, peak) if reduced_by > 1 and _sums_exact(stored) else None
    plan = _table_codes(stored if sums is None else sums, reduced_by, stored.shape)
    if plan is None and reduced_by > 1:  # stored values averaged, then pixel by pixel below
        stored = (
            box_reduce(stored, reduced_by)
            if sums is None
            else block_means(sums, stored.shape, reduced_by)
        )
    if plan is not None:
        codes, values, first = plan
        if ds.get("ModalityLUTSequence") or ds.get("VOILUTSequence"):
            # A LUT table maps each value on its own, and only the values that occur may be
            # looked at (a table's entries for absent values can be anything).
            present = np.bincount(codes.ravel(), minlength=values.size) > 0
        else:
            # Rescale and windows are monotone elementwise maps: every value between the
            # smallest and the largest stored one gives the same table for the values present
            # (the full-range VOI's extremes are those of the present ones) without a pass
            # counting them (9 ms on a 5-megapixel film).
            present = np.ones(values.size, dtype=bool)
            present[:first] = False
        values = values[present]
    else:
        values = stored
    modality_out, modality_kind = _modality_lut(p, values, ds, tsyntax)
    _check_finite(p, modality_out, "after the Modality LUT / rescale")
    shown, voi_kind = _voi(p, modality_out, ds, tsyntax)
    if inverted:
        shown = 1.0 - shown
    _check_finite(p, shown, "after the VOI LUT / windowing")
    if plan is not None:
        table = np.zeros(present.size, dtype=np.float32)
        table[present] = shown
        shown = np.take(table, codes)

    spacing, spacing_source = _pixel_spacing(ds)
    meta = ImageMeta(
        source_format="dicom",
        rows=rows,
        cols=cols,
        photometric=photometric,
        bits_stored=_opt_int(ds.get("BitsStored")),
        bits_allocated=_opt_int(ds.get("BitsAllocated")),
        pixel_spacing_mm=spacing,
        spacing_source=spacing_source,
        modality=_opt_code(ds.get("Modality")),
        view_position=_opt_code(ds.get("ViewPosition")),
        body_part=_opt_code(ds.get("BodyPartExamined")),
        manufacturer=_opt_long(ds.get("Manufacturer")),
        transfer_syntax=tsyntax.name,
        modality_lut=modality_kind,
        voi=voi_kind,
        inverted=inverted,
        reduced_by=reduced_by,
    )
    return np.ascontiguousarray(shown, dtype=np.float32), meta


def _parse_dicom(p: Path, *, forced: bool) -> Dataset:
    """Parse the file and decode every element now (pydicom decodes lazily, and a damaged
    element warns or raises when first touched: here, where warnings are masked)."""
    try:
        with _open(p) as fh:
            ds = pydicom.dcmread(fh, force=forced)
    except DataError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # pydicom raises many types on damaged input; all mean "unreadable"
        if forced:
            raise DataError(
                f"{p}: not a DICOM file or a supported image format", hint=_SUPPORTED_FORMATS_HINT
            ) from exc
        raise DataError(
            f"{p}: unreadable DICOM file ({type(exc).__name__}: {redact(str(exc))})",
            hint="The file may be truncated or damaged; re-export it.",
        ) from exc
    if forced and not _looks_like_dicom(ds):
        raise DataError(
            f"{p}: not a DICOM file or a supported image format", hint=_SUPPORTED_FORMATS_HINT
        )
    _convert_elements(p, ds)
    return ds


def _looks_like_dicom(ds: Dataset) -> bool:
    """Tell a preamble-less DICOM from arbitrary bytes that pydicom's force read "parsed".

    Forced reading of a text file yields elements with random tags; a real data set has at least
    one standard tag outside the command/meta groups.
    """
    try:
        tags = list(ds.keys())
    except Exception:  # garbage may fail lazily while iterating
        return False
    return any(tag.group >= 0x0008 and dictionary_has_tag(tag) for tag in tags)


#: Every attribute the reader (or pydicom's decoder) looks at. pydicom converts an element's
#: bytes on first access, and a damaged element (unknown VR, a length that is not a multiple of
#: the value size, undecodable text) raises NotImplementedError, BytesLengthException,
#: ValueError, ... there: converted once up front, each becomes a DataError naming the attribute.
_USED_KEYWORDS: tuple[str, ...] = (
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "NumberOfFrames",
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "PixelPaddingValue", "PixelPaddingRangeLimit", "RescaleSlope", "RescaleIntercept",
    "ModalityLUTSequence", "VOILUTSequence", "WindowCenter", "WindowWidth", "VOILUTFunction",
    "PresentationLUTShape", "ImagerPixelSpacing", "PixelSpacing", "Modality", "ViewPosition",
    "BodyPartExamined", "Manufacturer", "FloatPixelData", "DoubleFloatPixelData",
    "ExtendedOffsetTable", "ExtendedOffsetTableLengths", "SpecificCharacterSet",
)  # fmt: skip
_LUT_KEYWORDS = ("LUTDescriptor", "LUTData", "ModalityLUTType", "LUTExplanation")
_PIXEL_DATA = 0x7FE00010


def _convert_elements(p: Path, ds: Dataset) -> None:
    """Decode every attribute the pipeline uses now, refusing the file if one is malformed."""

    def convert(d: Dataset, keyword: str, where: str) -> None:
        try:
            d.get(keyword)
        except MemoryError:
            raise
        except Exception as exc:  # pydicom's value converters raise many types
            # the type only: pydicom's text quotes the element's bytes (maybe a swallowed name)
            raise DataError(
                f"{p}: malformed DICOM attribute {where}{keyword} ({type(exc).__name__})",
                hint="The file is damaged or was written by non-conformant software.",
            ) from exc

    try:
        meta = ds.file_meta if hasattr(ds, "file_meta") else None
    except Exception:  # a damaged meta group: decided later from the data set's own encoding
        meta = None
    if meta is not None:
        convert(meta, "TransferSyntaxUID", "")
    for keyword in _USED_KEYWORDS:
        convert(ds, keyword, "")
    for seq_keyword in ("ModalityLUTSequence", "VOILUTSequence"):
        seq = ds.get(seq_keyword)
        if not seq:
            continue
        if not isinstance(seq, Sequence) or isinstance(seq, str | bytes):
            raise DataError(f"{p}: malformed DICOM attribute {seq_keyword} (not a sequence)")
        for item in seq:
            if not isinstance(item, Dataset):
                raise DataError(f"{p}: malformed DICOM attribute {seq_keyword} (bad item)")
            for keyword in _LUT_KEYWORDS:
                convert(item, keyword, f"{seq_keyword} > ")
    if _PIXEL_DATA in ds:  # read by the native decoder, after the masked block
        _convert_quietly(p, ds, [_PIXEL_DATA])


def _convert_rest(p: Path, ds: Dataset) -> None:
    """Decode the elements the reader does not use too, before pydicom's decoder looks at the
    data set, so that nothing is decoded (and warns) later, outside the masked block.

    Not needed where the reader decodes the pixels itself (:func:`_decode_native`): nothing but
    the attributes :func:`_convert_elements` decoded is then read (~0.5 ms of the ~6 ms read of
    a 5-megapixel film).
    """
    with _warnings_as_masked_logs(p):
        _convert_quietly(p, ds, list(ds.keys()))


def _convert_quietly(p: Path, ds: Dataset, tags: Sequence[int]) -> None:
    """Decode elements the reader does not need: one may be malformed without refusing the
    image (logged at DEBUG)."""
    for tag in tags:
        try:
            ds[tag]
        except MemoryError:
            raise
        except Exception:
            logger.debug("%s: element %s is malformed (not used)", p, tag)


def _required_int(p: Path, ds: Dataset, keyword: str) -> int:
    """An integer attribute the image cannot be read without (Rows, Columns)."""
    value = _opt_int(ds.get(keyword))
    if value is None:
        raise DataError(
            f"{p}: DICOM attribute {keyword} is not an integer",
            hint="The file is damaged or was written by non-conformant software.",
        )
    return value


def _refuse_unsupported_dicom(p: Path, ds: Dataset) -> None:
    """Refuse what cannot be shown as one grey-scale picture, before decoding any pixel."""
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise DataError(
                f"{p}: float pixel data (a parametric map) is not a radiograph",
                hint=_GREYSCALE_HINT,
            )
        raise DataError(
            f"{p}: DICOM file has no Pixel Data (not an image object, or the file is truncated)",
            hint="Pass the image instances of the study, not SR/RT/presentation-state objects.",
        )
    for keyword in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"):
        if ds.get(keyword) in (None, ""):
            raise DataError(
                f"{p}: DICOM image lacks the required attribute {keyword}",
                hint="The file is damaged or was written by non-conformant software.",
            )
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    samples = _opt_int(ds.get("SamplesPerPixel")) or 1
    if samples != 1 or photometric in _COLOUR_PHOTOMETRICS or photometric.startswith("YBR"):
        raise DataError(
            f"{p}: colour image (Photometric Interpretation {_shown(photometric)}, "
            f"{samples} sample(s) per pixel) is refused",
            hint=_GREYSCALE_HINT,
        )
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DataError(
            f"{p}: unsupported Photometric Interpretation {_shown(photometric)}",
            hint=_GREYSCALE_HINT,
        )
    frames = _opt_int(ds.get("NumberOfFrames")) or 1
    if frames > 1:
        raise DataError(
            f"{p}: multi-frame image ({frames} frames) is refused; one radiograph is one frame",
            hint="Export the single projection image you want classified as its own file.",
        )


def _transfer_syntax(p: Path, ds: Dataset) -> pydicom.uid.UID:
    """Return the transfer syntax, inferring it for files written without a File Meta header."""
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if not tsyntax:
        implicit, little = ds.original_encoding
        if implicit is None or little is None:
            raise DataError(f"{p}: cannot determine the DICOM transfer syntax")
        if implicit:
            tsyntax = pydicom.uid.ImplicitVRLittleEndian
        elif little:
            tsyntax = pydicom.uid.ExplicitVRLittleEndian
        else:
            tsyntax = pydicom.uid.ExplicitVRBigEndian
        # pydicom needs it to decode; this only touches our in-memory copy.
        ds.file_meta.TransferSyntaxUID = tsyntax
        logger.debug("%s: no Transfer Syntax UID in file meta; inferred %s", p, tsyntax.name)
    tsyntax = pydicom.uid.UID(str(tsyntax))
    if not tsyntax.is_transfer_syntax:
        raise DataError(
            f"{p}: unknown or private transfer syntax {tsyntax}",
            hint="Ask the exporting system for an uncompressed (Explicit VR Little Endian) copy.",
        )
    return tsyntax


#: What ``_decoder_hint`` recommends: permissively licensed decoders only (a device cannot ship a
#: GPL library unawares). python-gdcm (BSD-style) decodes JPEG lossless/baseline and JPEG-LS,
#: pylibjpeg-openjpeg (MIT) JPEG 2000; pylibjpeg-libjpeg is GPLv3 and never recommended.
DECODERS_EXTRA = "pip install 'edgevcf[decoders]'"


def _decoder_hint(tsyntax: pydicom.uid.UID, missing: Sequence[str] = ()) -> str:
    """Name the package(s) that would let pydicom decode this transfer syntax."""
    if tsyntax in pydicom.uid.JPEG2000TransferSyntaxes:
        hint = f"Install a JPEG 2000 decoder: {DECODERS_EXTRA} (pylibjpeg-openjpeg, MIT licence)"
    elif tsyntax in pydicom.uid.JPEGLSTransferSyntaxes:
        hint = f"Install a JPEG-LS decoder: {DECODERS_EXTRA} (python-gdcm, BSD-style licence)"
    elif tsyntax == pydicom.uid.JPEGExtended12Bit:
        hint = (
            "12-bit JPEG Extended is decoded only by pylibjpeg-libjpeg, which is GPLv3 (check "
            "before shipping it in a device); ask the sender for JPEG Lossless or uncompressed"
        )
    elif tsyntax in pydicom.uid.JPEGTransferSyntaxes:
        hint = f"Install a JPEG decoder: {DECODERS_EXTRA} (python-gdcm, BSD-style licence)"
    elif tsyntax in pydicom.uid.RLETransferSyntaxes:
        hint = "Install an RLE decoder: pip install numpy (or pylibjpeg pylibjpeg-rle)"
    else:
        hint = "Ask the exporting system for an uncompressed (Explicit VR Little Endian) copy"
    if missing:
        hint += " (pydicom's plugins: " + "; ".join(missing) + ")"
    return hint + "."


def _check_decoder(p: Path, tsyntax: pydicom.uid.UID) -> None:
    """Refuse compressed pixel data up front when no installed plugin can decode it."""
    if not tsyntax.is_compressed:
        return
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as exc:
        raise DataError(
            f"{p}: pixel data in transfer syntax {tsyntax.name!r} cannot be decoded by pydicom",
            hint=_decoder_hint(tsyntax),
        ) from exc
    if not decoder.is_available:
        raise DataError(
            f"{p}: cannot decode {tsyntax.name!r} pixel data: no decoder plugin installed",
            hint=_decoder_hint(tsyntax, decoder.missing_dependencies),
        )


_NATIVE_LITTLE_ENDIAN = (pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian)


def _decode_native(ds: Dataset, tsyntax: pydicom.uid.UID) -> tuple[np.ndarray, int] | None:
    """The common film decoded directly: one 16-bit grey frame, uncompressed little endian,
    exactly as long as Rows x Columns requires. The same values as pydicom's ``pixel_array``
    (unused high bits ignored, signed values sign-extended from Bits Stored, PS3.5 8.1.1), in
    under 1 ms instead of ~6 ms for a 5-megapixel film; None for anything else (pydicom then).
    With the pixels, a bound on their magnitude (the largest value where it was looked at)."""
    if tsyntax not in _NATIVE_LITTLE_ENDIAN:
        return None
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        allocated, bits, signed = int(ds.BitsAllocated), int(ds.BitsStored), ds.PixelRepresentation
        samples, frames = int(ds.get("SamplesPerPixel", 1)), int(ds.get("NumberOfFrames") or 1)
        data = ds.PixelData
    except MemoryError:
        raise
    except (
        Exception
    ):  # any element pydicom cannot convert (e.g. an unknown VR: NotImplementedError)
        return None  # the general path decides, and refuses what it cannot read
    if (allocated, samples, frames) != (16, 1, 1) or not 1 <= bits <= 16 or signed not in (0, 1):
        return None
    if not isinstance(data, bytes) or len(data) != 2 * rows * cols:
        return None
    view = np.frombuffer(data, dtype="<i2" if signed else "<u2").reshape(rows, cols)
    if signed:
        if bits == 16:
            return view, 1 << 15
        shifted = np.left_shift(view, 16 - bits)
        return np.right_shift(shifted, 16 - bits, out=shifted), 1 << (bits - 1)
    if bits == 16:
        return view, (1 << 16) - 1
    largest = int(view.max())
    if largest < (1 << bits):  # the unused high bits are clear (the usual case)
        return view, largest
    return np.bitwise_and(view, np.uint16((1 << bits) - 1)), (1 << bits) - 1


def _decode_pixels(p: Path, ds: Dataset, tsyntax: pydicom.uid.UID) -> tuple[np.ndarray, int | None]:
    """Decode stored values, classifying pydicom's failures into a reason a user can act on;
    with them, a bound on their magnitude where the reader decoded them itself."""
    native = _decode_native(ds, tsyntax)
    if native is not None:
        return native
    _convert_rest(p, ds)
    try:
        return np.asarray(ds.pixel_array), None
    except MemoryError:
        raise
    except Exception as exc:  # decoders raise ValueError/RuntimeError/AttributeError/...
        text = str(exc)
        if "less than expected" in text or "truncat" in text.lower():
            raise DataError(
                f"{p}: truncated file: pixel data is shorter than Rows x Columns x Bits "
                f"Allocated requires ({redact(text.splitlines()[0])})",
                hint="The transfer was interrupted or the file is damaged; re-export it.",
            ) from exc
        if tsyntax.is_compressed:
            raise DataError(
                f"{p}: cannot decode {tsyntax.name!r} pixel data: {redact(' '.join(text.split()))}",
                hint=_decoder_hint(tsyntax),
            ) from exc
        raise DataError(
            f"{p}: cannot decode pixel data "
            f"({type(exc).__name__}: {redact((text.splitlines() or [''])[0])})",
            hint="The file is damaged or its group 0028 attributes are inconsistent.",
        ) from exc


def _lut_table(p: Path, item: Dataset, tsyntax: pydicom.uid.UID) -> tuple[np.ndarray, int, int]:
    """Return ``(table, first_mapped_value, bits_per_entry)`` of a Modality/VOI LUT item.

    LUT Data may arrive as a list (VR US) or as raw bytes (VR OW, in the data set's byte order);
    8-bit entries may be packed one per byte.
    """
    try:
        descriptor = [int(v) for v in item.LUTDescriptor]
        n_entries = descriptor[0] or 65536
        first_map = descriptor[1]
        bits = descriptor[2]
        value = item["LUTData"].value
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise DataError(
            f"{p}: malformed LUT (LUT Descriptor / LUT Data): {redact(str(exc))}"
        ) from exc
    if not 1 <= bits <= 16:
        raise DataError(f"{p}: LUT with {bits} bits per entry is not supported (1..16)")
    if isinstance(value, bytes | bytearray):
        if bits <= 8 and len(value) == n_entries:
            table = np.frombuffer(value, dtype=np.uint8)
        else:
            dtype = "<u2" if tsyntax.is_little_endian else ">u2"
            table = np.frombuffer(value[: 2 * (len(value) // 2)], dtype=dtype)
    elif isinstance(value, int | float):
        table = np.asarray([value])
    else:
        table = np.asarray(list(value))
    if table.size < n_entries:
        raise DataError(
            f"{p}: LUT Data has {table.size} entries, its descriptor promises {n_entries}"
        )
    return table[:n_entries].astype(np.float64), first_map, bits


def _apply_lut(values: np.ndarray, table: np.ndarray, first_map: int) -> np.ndarray:
    """Map values through a LUT: below the first mapped value -> first entry, above -> last."""
    index = np.clip(np.floor(values - first_map), 0, table.size - 1).astype(np.intp)
    return table[index]


def _modality_lut(
    p: Path, stored: np.ndarray, ds: Dataset, tsyntax: pydicom.uid.UID
) -> tuple[np.ndarray, ModalityLUTKind]:
    """Stored values -> modality values (PS3.3 C.11.1), in float64.

    Follows :func:`pydicom.pixels.apply_modality_lut`: a Modality LUT Sequence wins; rescale is
    applied only when both Rescale Slope and Intercept are present.
    """
    values = stored.astype(np.float64)
    seq = ds.get("ModalityLUTSequence")
    if seq:
        table, first_map, _ = _lut_table(p, seq[0], tsyntax)
        return _apply_lut(values, table, first_map), "lut_sequence"
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope not in (None, "") and intercept not in (None, ""):
        try:
            s, i = _first_float(slope), _first_float(intercept)
        except (TypeError, ValueError):
            s = i = None
        if s is None or i is None:
            raise DataError(
                f"{p}: Rescale Slope / Intercept are not numbers",
                hint="The file is damaged or its modality LUT was written incorrectly.",
            )
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused by the caller
            return values * s + i, "rescale"
    return values, "none"


def _first_float(value: Any) -> float | None:
    """First value of a possibly multi-valued DS element, or None when empty."""
    if value is None or value == "":
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        return float(value)
    return float(value[0]) if len(value) else None


def _voi(
    p: Path, values: np.ndarray, ds: Dataset, tsyntax: pydicom.uid.UID
) -> tuple[np.ndarray, VOIKind]:
    """Modality values -> [0, 1] (PS3.3 C.11.2), choosing the first VOI transform offered.

    A VOI LUT Sequence wins over a window (as pydicom's ``apply_voi_lut`` does). An invalid window
    (width 0 is a common "not set" value) falls back to the full range with a warning, and the
    fallback is visible in ``ImageMeta.voi``.
    """
    seq = ds.get("VOILUTSequence")
    if seq and seq[0].get("LUTDescriptor") is not None and seq[0].get("LUTData") is not None:
        table, first_map, bits = _lut_table(p, seq[0], tsyntax)
        out = _apply_lut(values, table, first_map) / float(2**bits - 1)
        if out.max(initial=0.0) > 1.0:
            logger.warning("%s: VOI LUT entries exceed %d bits; clipped", p, bits)
            out = np.minimum(out, 1.0)
        return out, "lut_sequence"

    try:
        center = _first_float(ds.get("WindowCenter"))
        width = _first_float(ds.get("WindowWidth"))
    except (TypeError, ValueError):  # text that is no number: treated as an invalid window
        logger.warning("%s: unreadable window values; using the full range instead", p)
        center = width = None
    if center is not None and width is not None:
        function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
        if function not in _VOI_FUNCTIONS:
            raise DataError(
                f"{p}: unsupported VOI LUT Function {_shown(function)} "
                "(LINEAR, LINEAR_EXACT, SIGMOID)",
            )
        # PS3.3: width >= 1 for LINEAR, > 0 for LINEAR_EXACT and SIGMOID.
        width_ok = width >= 1.0 if function == "LINEAR" else width > 0.0
        if math.isfinite(center) and math.isfinite(width) and width_ok:
            kind: VOIKind = f"window:{function}"  # type: ignore[assignment]
            return _window(values, center, width, function), kind
        logger.warning(
            "%s: invalid window (center %s, width %s, %s); using the full range instead",
            p,
            center,
            width,
            function,
        )
    return _full_range(values), "full_range"


def _window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """Apply a DICOM window (PS3.3 C.11.2.1.2 / C.11.2.1.3) with output range [0, 1].

    Args:
        values: Modality values (any real dtype; computed in float64).
        center: Window Center.
        width: Window Width (>= 1 for LINEAR, > 0 otherwise).
        function: VOI LUT Function: ``"LINEAR"``, ``"LINEAR_EXACT"`` or ``"SIGMOID"``.

    Returns:
        float64 array in [0, 1].
    """
    x = np.asarray(values, dtype=np.float64)
    if function == "SIGMOID":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR":
        c, w = center - 0.5, width - 1.0
    elif function == "LINEAR_EXACT":
        c, w = center, width
    else:
        raise ValueError(f"unknown VOI LUT function {function!r}")
    low, high = c - w / 2.0, c + w / 2.0
    if w == 0.0:  # LINEAR with width 1: a hard threshold
        return np.where(x > high, 1.0, 0.0)
    out = (x - c) / w + 0.5
    out[x <= low] = 0.0
    out[x > high] = 1.0
    return out


def _full_range(values: np.ndarray) -> np.ndarray:
    """Linear min-max to [0, 1] when no VOI is given; a constant image becomes zeros."""
    lo, hi = float(values.min()), float(values.max())
    if hi > lo:
        return (values - lo) / (hi - lo)
    return np.zeros_like(values, dtype=np.float64)


def _pixel_spacing(ds: Dataset) -> tuple[tuple[float, float] | None, str | None]:
    """Imager Pixel Spacing (detector plane, what projection X-ray declares) else Pixel Spacing.

    Vendors write ``0.000`` or garbage when uncalibrated; such values become None rather than a
    wrong millimetre scale.
    """
    for keyword in ("ImagerPixelSpacing", "PixelSpacing"):
        value = ds.get(keyword)
        if value is None or isinstance(value, str | bytes) or not isinstance(value, Sequence):
            continue
        try:
            pair = (float(value[0]), float(value[1]))
        except (IndexError, TypeError, ValueError):
            continue
        if all(math.isfinite(v) and v > 0 for v in pair):
            return pair, keyword
    return None, None


def _opt_str(value: Any) -> str | None:
    """Stripped string or None for missing/empty DICOM values."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _opt_code(value: Any) -> str | None:
    """A well-formed code string (CS: A-Z, 0-9, space, _; <= 16) or None.

    Anything else is dropped rather than carried into ImageMeta (which reaches reports): in a
    damaged file it may be a neighbour's bytes, a patient's name among them.
    """
    text = _opt_str(value)
    if text is None or not _CODE_STRING.fullmatch(text.upper()):
        return None
    return text


def _opt_long(value: Any) -> str | None:
    """A well-formed long string (LO: <= 64 characters, no control characters) or None."""
    text = _opt_str(value)
    return text if text is not None and _LONG_STRING.fullmatch(text) else None


def _opt_int(value: Any) -> int | None:
    """Integer or None for missing/empty/garbled DICOM values."""
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Pillow (PNG, TIFF, JPEG, ...)


def _scaled(pixels: np.ndarray, full_scale: float) -> np.ndarray:
    """``pixels / full_scale`` as float32, computed in place in float32.

    Bit-identical to dividing in float64 and rounding (integers up to 65535 are exact in
    float32 and IEEE division rounds correctly), at a quarter of the peak memory: a 79 KB PNG
    declaring 9000 x 9000 zero pixels peaked at 1.2 GB through float64 temporaries.
    """
    out = pixels.astype(np.float32)
    out /= np.float32(full_scale)
    return out


def _read_pillow(p: Path) -> tuple[np.ndarray, ImageMeta] | None:
    """Read a greyscale image with Pillow; None when Pillow does not recognise the file."""
    with _open(p) as fh:
        return _read_pillow_file(p, fh)


def _read_pillow_file(p: Path, fh: _BoundedReader) -> tuple[np.ndarray, ImageMeta] | None:
    """:func:`_read_pillow` on an open file (read through the bounded reader)."""
    try:
        # We enforce our own MAX_PIXELS below; Pillow's bomb warning would only be noise.
        with _warnings_as_masked_logs(p):
            img = Image.open(fh)
    except UnidentifiedImageError:
        return None
    except Image.DecompressionBombError as exc:
        raise DataError(
            f"{p}: image too large ({redact(str(exc))})",
            hint="Refused as a possible decompression bomb.",
        ) from exc
    except MemoryError:
        raise
    except Exception as exc:  # Pillow raises OSError/SyntaxError/ValueError/struct.error...
        raise DataError(
            f"{p}: corrupt image header ({type(exc).__name__}: {redact(str(exc))})",
            hint="The file is damaged; re-export it.",
        ) from exc
    with img:
        fmt = (img.format or "unknown").lower()
        cols, rows = img.size
        _check_size(p, rows, cols)
        n_frames = int(getattr(img, "n_frames", 1) or 1)
        if n_frames > 1:
            raise DataError(
                f"{p}: multi-page or animated {fmt.upper()} ({n_frames} frames) is refused",
                hint="Save the one radiograph to classify as a single-page file.",
            )
        mode = img.mode
        if mode in _PIL_COLOUR_MODES:
            raise DataError(
                f"{p}: colour image (Pillow mode {mode}) is refused", hint=_GREYSCALE_HINT
            )
        if mode not in _PIL_GREY_MODES:
            raise DataError(
                f"{p}: unsupported pixel mode {mode!r}",
                hint="Save as 8- or 16-bit unsigned greyscale (or 32-bit float TIFF).",
            )
        try:
            img.load()
            # EXIF Orientation (phone/camera JPEGs): hand out the picture as it is displayed.
            pixels = np.array(ImageOps.exif_transpose(img))
        except MemoryError:
            raise
        except Exception as exc:  # truncated data: OSError, SyntaxError, ValueError, zlib...
            raise DataError(
                f"{p}: cannot decode image data, truncated or corrupt file "
                f"({type(exc).__name__}: {redact(str(exc))})",
                hint="The transfer was interrupted or the file is damaged; re-export it.",
            ) from exc

    bits_stored, bits_allocated = _PIL_GREY_MODES[mode]
    if pixels.ndim != 2:
        raise DataError(f"{p}: expected a 2-D greyscale image, got shape {pixels.shape}")
    voi: VOIKind = "bit_depth"
    if mode == "F":
        out = pixels.astype(np.float32)
        _check_finite(p, out, "in the float image")
        voi = "none"
    elif mode == "1":
        out = pixels.astype(np.float32)
    elif mode == "I":
        lo, hi = int(pixels.min()), int(pixels.max())
        if lo < 0 or hi > 65535:
            raise DataError(
                f"{p}: 32-bit integer image with values {lo}..{hi} outside 0..65535 is refused",
                hint="Save as unsigned 16-bit greyscale.",
            )
        out = _scaled(pixels, 65535.0)
    else:  # "L" and the "I;16" family: full scale of the container
        out = _scaled(pixels, 255.0 if mode == "L" else 65535.0)

    meta = ImageMeta(
        source_format=fmt,
        rows=int(out.shape[0]),
        cols=int(out.shape[1]),
        photometric="MONOCHROME2",
        bits_stored=bits_stored,
        bits_allocated=bits_allocated,
        pixel_spacing_mm=None,
        spacing_source=None,
        modality=None,
        view_position=None,
        body_part=None,
        manufacturer=None,
        transfer_syntax=None,
        modality_lut="none",
        voi=voi,
        inverted=False,
    )
    return np.ascontiguousarray(out, dtype=np.float32), meta
