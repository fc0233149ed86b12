"""The result Structured Report: parsed by dcmtk's ``dsrdump`` (a reader nobody here wrote), in the
film's own study, naming the model that produced it."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from edgevcf.serve.sr import COMPREHENSIVE_SR, Finding, ModelIdentity, result_sr

MODEL = ModelIdentity("ab" * 32, "mobilenet_v3_small", "int8", "openvino", None)


def _film() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX for presentation
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P123"
    ds.PatientBirthDate = "19500101"
    ds.PatientSex = "F"
    ds.AccessionNumber = "ACC9"
    ds.StudyDate, ds.StudyTime = "20261201", "101500"
    return ds


def _save(sr: Dataset, path: Path) -> Path:
    sr.save_as(path, enforce_file_format=True)
    return path


def _dsrdump(path: Path) -> str:
    if shutil.which("dsrdump") is None:
        pytest.skip("needs dcmtk (Debian: apt-get update && apt-get install -y dcmtk)")
    proc = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # dcmtk warns about any structural problem
    return proc.stdout


@pytest.mark.parametrize(("fresh", "word"), [(True, "Present"), (False, "Absent")])
def test_sr_of_a_scored_film(tmp_path: Path, fresh: bool, word: str) -> None:
    film = _film()
    when = dt.datetime(2026, 12, 1, 10, 30, 0)
    sr = result_sr(film, Finding(True, fresh, 0.8123, 0.4567), MODEL, when=when)
    out = _dsrdump(_save(sr, tmp_path / "sr.dcm"))
    assert "Comprehensive SR Document" in out
    code = "52101004" if fresh else "2667000"
    assert f'"Fresh vertebral compression fracture")=({code},SCT,"{word}")' in out
    assert '"Probability of fresh fracture")="0.8123"' in out
    assert '"Operating threshold")="0.4567"' in out
    assert '"Source image")=(DX image,)' in out
    assert back_text(tmp_path / "sr.dcm", "Model bundle id") == MODEL.model_id
    back = pydicom.dcmread(tmp_path / "sr.dcm")
    # the film's study and patient, a series of its own
    for kw in ("StudyInstanceUID", "PatientID", "PatientName", "AccessionNumber", "StudyDate"):
        assert back.get(kw) == film.get(kw), kw
    assert back.SeriesInstanceUID != film.SeriesInstanceUID
    assert back.SOPClassUID == COMPREHENSIVE_SR and back.Modality == "SR"
    ev = back.CurrentRequestedProcedureEvidenceSequence[0]
    assert ev.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == (
        film.SOPInstanceUID
    )
    eq = back.ContributingEquipmentSequence[0]
    assert (eq.Manufacturer, eq.ManufacturerModelName) == ("edgevcf", "mobilenet_v3_small")
    assert eq.DeviceUID == MODEL.device_uid and eq.DeviceUID.startswith("2.25.")
    assert len(eq.DeviceUID) <= 64


def test_non_ascii_names_are_kept(tmp_path: Path) -> None:
    film = _film()
    film.SpecificCharacterSet = "ISO_IR 100"
    film.PatientName = "Müller^Jürgen"
    back = pydicom.dcmread(_save(result_sr(film, Finding(True, True, 0.9, 0.5), MODEL),
                                 tmp_path / "sr.dcm"))  # fmt: skip
    assert back.SpecificCharacterSet == "ISO_IR 100"
    assert str(back.PatientName) == "Müller^Jürgen"


def back_text(path: Path, concept: str) -> str:
    """The TEXT value of the content item named ``concept``."""
    for item in pydicom.dcmread(path).ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeMeaning == concept:
            return str(item.TextValue)
    raise AssertionError(f"no {concept!r} item")


def test_sr_of_a_refused_film_says_why(tmp_path: Path) -> None:
    reason = "does not look like a lateral spine film"
    p = SimpleNamespace(
        status="not_assessable", probability=None, decision=None, threshold=0.5, reason=reason
    )
    sr = result_sr(_film(), Finding.from_prediction(p), MODEL)
    out = _dsrdump(_save(sr, tmp_path / "sr.dcm"))
    assert '(373068000,SCT,"Undetermined")' in out
    assert '"Reason not assessable")="does not look' in out  # dsrdump shortens long texts
    assert back_text(tmp_path / "sr.dcm", "Reason not assessable") == reason
    assert "Probability of fresh fracture" not in out


def test_type2_attributes_present_when_the_film_lacks_them(tmp_path: Path) -> None:
    film = _film()
    for kw in ("PatientBirthDate", "PatientSex", "AccessionNumber"):
        delattr(film, kw)
    sr = result_sr(film, Finding(True, False, 0.1, 0.5), MODEL)
    back = pydicom.dcmread(_save(sr, tmp_path / "sr.dcm"))
    for kw in ("PatientBirthDate", "PatientSex", "AccessionNumber", "ReferringPhysicianName"):
        assert kw in back and back.data_element(kw).value in ("", None), kw
    _dsrdump(tmp_path / "sr.dcm")


def test_device_uid_is_stable_per_model() -> None:
    assert MODEL.device_uid == ModelIdentity("ab" * 32, "x", "fp32", "onnxruntime").device_uid
    assert MODEL.device_uid != ModelIdentity("cd" * 32, "x", "fp32", "onnxruntime").device_uid


def test_our_own_non_latin_text_switches_the_report_to_utf8(tmp_path: Path) -> None:
    """A reason with a character the film's repertoire lacks is kept (UTF-8), names too."""
    film = _film()
    film.SpecificCharacterSet = "ISO_IR 100"
    film.PatientName = "Müller^Jürgen"
    finding = Finding(False, None, None, 0.5, "pixel data cannot be decoded — not a JPEG stream")
    back = pydicom.dcmread(_save(result_sr(film, finding, MODEL), tmp_path / "sr.dcm"))
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert str(back.PatientName) == "Müller^Jürgen"
    assert "—" in back_text(tmp_path / "sr.dcm", "Reason not assessable")
