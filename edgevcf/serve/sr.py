"""One film's result as a DICOM Structured Report, in the film's own study.

Why a plain **Comprehensive SR** (pydicom only) and not highdicom's TID 1500 measurement report:
the result is one qualitative finding with two numbers, which every PACS stores and every SR
viewer renders as a readable tree; TID 1500 is built for measurement groups on image regions,
and would bring highdicom (and its image codecs) onto the cart for content a reader sees the
same way. What IHE AI Results asks of the *producer* is kept in full: the Contributing Equipment
Sequence names the algorithm (manufacturer, model name = backbone, software versions, device UID
derived from the model id), and the report holds the bundle's id and the signer's key id.

Content tree (CONTAINER "Diagnostic imaging report", LOINC 18748-4):

* CODE  "Fresh vertebral compression fracture" = Present / Absent (SNOMED CT 52101004 /
  2667000), or Undetermined (373068000) when the quality gate refused the film,
* NUM   "Probability of fresh fracture" (UCUM ``1``) and NUM "Operating threshold",
* TEXT  "Reason not assessable" (the quality gate's reason), when not assessed,
* TEXT  "Algorithm" (backbone, precision, runtime), UIDREF "Algorithm device UID",
  TEXT "Model bundle id" (sha256 of its manifest), TEXT "Signer key id" (or "unsigned"),
* IMAGE the source film (relationship CONTAINS; also in Current Requested Procedure Evidence).

The patient, study and (for reconciliation) accession attributes are copied from the film; the
SR gets its own series. Codes of edgevcf's own (the finding's concept names) use the private
coding scheme ``99EDGEVCF``, declared in the Coding Scheme Identification Sequence.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from edgevcf import __version__

COMPREHENSIVE_SR = UID("1.2.840.10008.5.1.4.1.1.88.33")
PRIVATE_SCHEME = "99EDGEVCF"
MANUFACTURER = "edgevcf"
#: Copied from the film when present (Patient, General Study and Patient Study modules).
COPIED = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
    "AccessionNumber", "StudyDescription", "PatientAge",
)  # fmt: skip
#: Type 2 attributes of those modules: present (empty) even when the film lacks them.
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "ReferringPhysicianName", "StudyID", "AccessionNumber")  # fmt: skip


@dataclass(frozen=True)
class ModelIdentity:
    """Who produced the result: what the report and its Contributing Equipment name."""

    model_id: str  # the bundle id (sha256 of its manifest)
    backbone: str
    precision: str
    runtime: str
    signer_key_id: str | None = None
    site_calibration: str | None = None  # a re-thresholded site bundle names it

    @property
    def device_uid(self) -> str:
        """A UID of the model: 2.25 (UUID-derived) from the first 128 bits of its id."""
        return derived_uid(self.model_id)


def derived_uid(*parts: str) -> str:
    """A UID under 2.25 from the first 128 bits of SHA-256 over ``parts``.

    The same inputs always give the same UID: the SR of one film by one model keeps its SOP
    Instance UID when it is made again after a crash or sent again, so a PACS stores it once.
    """
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return "2.25." + str(int(digest[:32], 16))


@dataclass(frozen=True)
class Finding:
    """The result for one film (from :class:`edgevcf.runtime.Prediction`)."""

    assessed: bool
    fresh: bool | None
    probability: float | None
    threshold: float
    reason: str = ""

    @classmethod
    def from_prediction(cls, p: Any) -> Finding:
        """From a :class:`edgevcf.runtime.Prediction`."""
        ok = p.status == "ok" and p.probability is not None
        return cls(ok, p.decision if ok else None, p.probability, p.threshold, p.reason)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


CONCEPTS = {
    "report": _code("18748-4", "LN", "Diagnostic imaging report"),
    "finding": _code("fresh-vcf", PRIVATE_SCHEME, "Fresh vertebral compression fracture"),
    "probability": _code("p-fresh", PRIVATE_SCHEME, "Probability of fresh fracture"),
    "threshold": _code("threshold", PRIVATE_SCHEME, "Operating threshold"),
    "reason": _code("na-reason", PRIVATE_SCHEME, "Reason not assessable"),
    "algorithm": _code("algorithm", PRIVATE_SCHEME, "Algorithm"),
    "device_uid": _code("device-uid", PRIVATE_SCHEME, "Algorithm device UID"),
    "bundle": _code("bundle-id", PRIVATE_SCHEME, "Model bundle id"),
    "signer": _code("signer-key-id", PRIVATE_SCHEME, "Signer key id"),
    "site": _code("site-calibration", PRIVATE_SCHEME, "Site calibration"),
    "source": _code("121233", "DCM", "Source image"),
    "use": _code("not-clinical", PRIVATE_SCHEME, "Intended use of this report"),
}
PRESENT = _code("52101004", "SCT", "Present")
ABSENT = _code("2667000", "SCT", "Absent")
UNDETERMINED = _code("373068000", "SCT", "Undetermined")
PROCESSING = _code("109102", "DCM", "Processing Equipment")
UNITLESS = _code("1", "UCUM", "no units")


def _item(value_type: str, concept: str, relationship: str = "CONTAINS") -> Dataset:
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = value_type
    item.ConceptNameCodeSequence = Sequence([CONCEPTS[concept]])
    return item


def _text(concept: str, text: str) -> Dataset:
    item = _item("TEXT", concept)
    item.TextValue = text[:1024]
    return item


def _num(concept: str, value: float) -> Dataset:
    item = _item("NUM", concept)
    mv = Dataset()
    mv.NumericValue = f"{value:.6g}"
    mv.MeasurementUnitsCodeSequence = Sequence([UNITLESS])
    item.MeasuredValueSequence = Sequence([mv])
    return item


def _copy_patient_and_study(film: Dataset, sr: Dataset) -> None:
    for keyword in COPIED:
        if keyword in film:
            setattr(sr, keyword, film.data_element(keyword).value)  # type: ignore[union-attr]
        elif keyword in TYPE2:
            setattr(sr, keyword, "")


def result_sr(
    film: Dataset,
    finding: Finding,
    model: ModelIdentity,
    *,
    when: _dt.datetime | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    instance_number: int = 1,
) -> Dataset:
    """The Structured Report of ``finding`` on ``film`` (see the module docstring).

    Args:
        film: The received film's data set (its header is enough).
        finding: The result.
        model: The producing model.
        when: Content date/time (default: now, local time).
        series_uid: The SR series (default: a new UID; a service keeps one per study).
        sop_uid: The SR's SOP Instance UID (default: a new UID; a service derives it from the
            film and the model, see :func:`derived_uid`).
        instance_number: Instance Number within that series.

    Returns:
        A complete data set with its File Meta Information, ready for ``save_as``.
    """
    when = when or _dt.datetime.now()
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    uid = UID(sop_uid) if sop_uid else generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = COMPREHENSIVE_SR
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr = Dataset()
    sr.file_meta = meta
    sr.SOPClassUID, sr.SOPInstanceUID = COMPREHENSIVE_SR, uid
    sr.InstanceCreationDate, sr.InstanceCreationTime = date, time
    _copy_patient_and_study(film, sr)
    # SR Document Series and General Equipment
    sr.Modality = "SR"
    sr.SeriesInstanceUID = series_uid or generate_uid()
    sr.SeriesNumber = 990
    sr.SeriesDescription = "edgevcf fresh VCF result"
    sr.ReferencedPerformedProcedureStepSequence = Sequence()
    sr.Manufacturer = MANUFACTURER
    sr.SoftwareVersions = __version__
    # Contributing Equipment: who produced the content (IHE AI Results)
    eq = Dataset()
    eq.PurposeOfReferenceCodeSequence = Sequence([PROCESSING])
    eq.Manufacturer = MANUFACTURER
    eq.ManufacturerModelName = model.backbone[:64]
    eq.SoftwareVersions = [f"edgevcf {__version__}", f"bundle {model.model_id[:48]}"]
    eq.DeviceUID = model.device_uid
    eq.ContributionDateTime = when.strftime("%Y%m%d%H%M%S")
    eq.ContributionDescription = f"{model.backbone} {model.precision} on {model.runtime}"[:64]
    sr.ContributingEquipmentSequence = Sequence([eq])
    # SR Document General
    sr.InstanceNumber = instance_number
    sr.CompletionFlag = "COMPLETE"
    sr.VerificationFlag = "UNVERIFIED"
    sr.ContentDate, sr.ContentTime = date, time
    sr.PerformedProcedureCodeSequence = Sequence()
    sr.CurrentRequestedProcedureEvidenceSequence = Sequence([_evidence(film)])
    scheme = Dataset()
    scheme.CodingSchemeDesignator = PRIVATE_SCHEME
    scheme.CodingSchemeName = "edgevcf result concepts"
    scheme.CodingSchemeResponsibleOrganization = MANUFACTURER
    sr.CodingSchemeIdentificationSequence = Sequence([scheme])
    # SR Document Content: the root container and its items
    sr.ValueType = "CONTAINER"
    sr.ConceptNameCodeSequence = Sequence([CONCEPTS["report"]])
    sr.ContinuityOfContent = "SEPARATE"
    sr.ContentSequence = Sequence(_content(film, finding, model))
    content = Dataset()
    content.ContentSequence = sr.ContentSequence
    if "SpecificCharacterSet" in film and _ascii(content):
        sr.SpecificCharacterSet = film.SpecificCharacterSet  # names in the film's repertoire
    elif not _ascii(sr):
        # our own texts (a reader's reason, say) may hold what the film's repertoire lacks:
        # UTF-8 holds the film's names and ours alike
        sr.SpecificCharacterSet = "ISO_IR 192"
    return sr


def mark_not_for_clinical_use(sr: Dataset) -> Dataset:
    """A shadow candidate's SR, said plainly in the series, the title and the first item: not
    for clinical use (it goes to a QA destination only, never to a clinical one)."""
    sr.SeriesNumber = 991
    sr.SeriesDescription = "NOT FOR CLINICAL USE - edgevcf shadow candidate"
    sr.ContentSequence.insert(
        0, _text("use", "NOT FOR CLINICAL USE: a candidate model scored in shadow for "
                            "quality assurance; the clinical result is the served model's SR")
    )  # fmt: skip
    return sr


def _ascii(ds: Dataset) -> bool:
    """Whether every text value of ``ds`` (nested too) is plain ASCII."""
    for elem in ds.iterall():
        values = elem.value if isinstance(elem.value, list | tuple) else [elem.value]
        for v in values:
            if isinstance(v, str) and not v.isascii():
                return False
            if v.__class__.__name__ == "PersonName" and not str(v).isascii():
                return False
    return True


def _evidence(film: Dataset) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = film.SOPClassUID
    ref.ReferencedSOPInstanceUID = film.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = film.SeriesInstanceUID
    series.ReferencedSOPSequence = Sequence([ref])
    study = Dataset()
    study.StudyInstanceUID = film.StudyInstanceUID
    study.ReferencedSeriesSequence = Sequence([series])
    return study


def _content(film: Dataset, f: Finding, model: ModelIdentity) -> list[Dataset]:
    finding = _item("CODE", "finding")
    value = (PRESENT if f.fresh else ABSENT) if f.assessed else UNDETERMINED
    finding.ConceptCodeSequence = Sequence([value])
    items = [finding]
    if f.assessed and f.probability is not None:
        items.append(_num("probability", f.probability))
    items.append(_num("threshold", f.threshold))
    if not f.assessed:
        items.append(_text("reason", f.reason or "not assessable"))
    items.append(_text("algorithm", f"{model.backbone}, {model.precision} on {model.runtime}"))
    uid = _item("UIDREF", "device_uid")
    uid.UID = model.device_uid
    items.append(uid)
    items.append(_text("bundle", model.model_id))
    items.append(_text("signer", model.signer_key_id or "unsigned"))
    if model.site_calibration:
        items.append(_text("site", model.site_calibration[:1024]))
    image = _item("IMAGE", "source")
    ref = Dataset()
    ref.ReferencedSOPClassUID = film.SOPClassUID
    ref.ReferencedSOPInstanceUID = film.SOPInstanceUID
    image.ReferencedSOPSequence = Sequence([ref])
    items.append(image)
    return items


__all__ = ["COMPREHENSIVE_SR", "Finding", "ModelIdentity", "derived_uid", "result_sr"]
