"""Write a rendered radiograph as 16-bit PNG or as a DX/CR DICOM object, byte-reproducibly.

The DICOM objects are what a site's PACS would hand us: 12 bits stored in 16, a modality LUT
(rescale) and a VOI window, MONOCHROME1 for the CR-style site (so readers must invert), Imager
Pixel Spacing in the detector plane and the magnification estimate. UIDs and dates are derived
from the seed, so the same seed gives byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pydicom.uid import UID

    from edgevcf.data.synth.anatomy import Patient, View
    from edgevcf.data.synth.render import Rendered

_SOP_CLASS = {
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
}


def quantise(display: np.ndarray, bits: int) -> np.ndarray:
    """[0, 1] display values -> unsigned integers with ``bits`` bits (round half up)."""
    top = (1 << bits) - 1
    return np.floor(np.clip(display, 0.0, 1.0) * top + 0.5).astype(np.uint16)


def write_png(path: Path, rendered: Rendered, bits: int) -> None:
    """16-bit greyscale PNG of the display image; ``bits`` of precision, bit-replicated to 16."""
    from PIL import Image

    q = quantise(rendered.display, bits).astype(np.uint32)
    v16 = (
        ((q << (16 - bits)) | (q >> max(0, 2 * bits - 16))).astype(np.uint16)
        if bits < 16
        else q.astype(np.uint16)
    )
    Image.fromarray(v16).save(path, format="PNG", compress_level=1)


def _uid(*parts: object) -> UID:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["edgevcf-synth", *(str(p) for p in parts)])


def write_dicom(
    path: Path,
    rendered: Rendered,
    patient: Patient,
    view: View,
    *,
    seed: int,
    image: int,
    bits: int,
    kvp: float | None = None,
    mas: float | None = None,
) -> None:
    """A valid DX (MONOCHROME2) or CR (MONOCHROME1, rescaled) object that pydicom reads back."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

    site = patient.site
    top = (1 << bits) - 1
    stored = quantise(rendered.display, bits)
    if site.photometric == "MONOCHROME1":  # high stored value = dark
        stored = (top - stored).astype(np.uint16)
    r0, c0, r1, c1 = rendered.field_box
    modality_vals = (
        stored[r0:r1, c0:c1].astype(np.float64) * site.rescale_slope + site.rescale_intercept
    )
    lo, hi = np.percentile(modality_vals, [0.5, 99.5])
    width = max(float(hi - lo), 2.0)
    centre = float(lo + hi) / 2.0

    rng = np.random.default_rng([seed, patient.index, image + 1, 99])
    year, month, day = (int(rng.integers(a, b)) for a, b in ((2013, 2025), (1, 13), (1, 29)))
    study_date = f"{year}{month:02d}{day:02d}"
    sop_class = UID(_SOP_CLASS[site.modality])
    study_uid = _uid(seed, patient.patient_id, "study", image)
    series_uid = _uid(seed, patient.patient_id, "series", image)
    sop_uid = _uid(seed, patient.patient_id, "sop", image)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "EDGEVCF_SYNTH"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = f"SYN{seed % 1000:03d}{patient.index:06d}{image}"
    ds.Modality = site.modality
    ds.Manufacturer = site.manufacturer
    ds.ManufacturerModelName = site.model
    ds.InstitutionName = site.institution or site.name
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "SPINE THORACOLUMBAR LAT (SYNTHETIC)"
    # Synthetic identities: they exist so that PHI-scrubbing can be tested on real DICOM fields.
    ds.PatientName = f"SYNTH^{patient.patient_id}"
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = f"{int(study_date[:4]) - patient.age_years}0101"
    ds.PatientSex = patient.sex
    ds.PatientAge = f"{patient.age_years:03d}Y"
    ds.BodyPartExamined = "SPINE"
    if kvp is not None:
        ds.KVP = f"{kvp:g}"
    if mas is not None:
        ds.Exposure = max(1, round(mas))  # IS, mAs
        ds.ExposureInuAs = round(mas * 1000)
    ds.ViewPosition = "RL" if view.face_right else "LL"
    ds.PatientOrientation = ["P", "F"] if view.face_right else ["A", "F"]
    ds.EstimatedRadiographicMagnificationFactor = f"{view.magnification:.4f}"
    ds.DistanceSourceToDetector = "1150"
    ds.DistanceSourceToPatient = f"{1150 / view.magnification:.1f}"
    ds.ImagerPixelSpacing = [f"{rendered.pixel_mm:.6g}", f"{rendered.pixel_mm:.6g}"]
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = image + 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = site.photometric
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = f"{site.rescale_intercept:g}"
    ds.RescaleSlope = f"{site.rescale_slope:g}"
    ds.RescaleType = "US"
    ds.WindowCenter = f"{centre:.2f}"
    ds.WindowWidth = f"{width:.2f}"
    ds.VOILUTFunction = "LINEAR"
    ds.PresentationLUTShape = "INVERSE" if site.photometric == "MONOCHROME1" else "IDENTITY"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    if site.modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.DetectorType = "SCINTILLATOR"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = -1 if site.photometric == "MONOCHROME1" else 1
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
