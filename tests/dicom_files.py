"""Small, valid DICOM files for the tests (imported by name: pytest puts this folder on
sys.path, as for ``fs_limits``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


def small_dicom(path: Path, pixels: np.ndarray | None = None, **attrs: Any) -> Path:
    """A small, valid DX image (explicit VR little endian) with ``attrs`` set."""
    px = pixels if pixels is not None else (np.arange(64 * 48) % 4096).reshape(64, 48)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = px.shape
    bits = 32 if px.dtype.itemsize == 4 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits if bits == 32 else 12, bits - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter, ds.WindowWidth = "2048", "4096"
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.PixelData = px.astype("<u4" if bits == 32 else "<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
