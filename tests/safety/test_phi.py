"""No patient data leaves where it should not (issue 7, section 3).

DICOM files whose identifying fields hold distinctive strings go through the real command line
(``predict`` in both output formats, ``verify``, ``data check``, ``bench`` with accuracy and with
end-to-end DICOM timing, ``evaluate``), good and refused ones together, with logging at DEBUG.
Everything the runs print and write (stdout, stderr, reports, the preprocessing and OpenVINO
caches) is searched for those strings. Manifests may carry patient IDs (the ones here are
neutral); reports carry counts and salted hashes only. Files are named neutrally: a path a user
chooses is not patient data from the DICOM.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import random
import struct
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from edgevcf import deps
from edgevcf.data.io import read_image
from edgevcf.errors import DataError
from edgevcf.testing.fuzz_mutators import mutate

PHI: dict[str, str] = {
    "PatientName": "PHIFAMILYQX^PHIGIVENZW",
    "PatientID": "PID-7731-QX",
    "PatientBirthDate": "19230517",
    "AccessionNumber": "ACC99173QX",
    "OtherPatientIDs": "OPID-55821-QX",
    "InstitutionName": "PHI INSTITUTE QWERTY",
    "ReferringPhysicianName": "REFDOCQX^ZYXW",
    "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.77731991",
}
#: What is searched for: every value, each name component, the date as ISO.
NEEDLES: tuple[str, ...] = (
    *(v for v in PHI.values() if "^" not in v),
    "PHIFAMILYQX", "PHIGIVENZW", "REFDOCQX", "ZYXW", "1923-05-17", "INSTITUTE QWERTY",
)  # fmt: skip


def _with_phi(ds: pydicom.Dataset) -> bytes:
    for k, v in PHI.items():
        setattr(ds, k, v)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _swallowing(data: bytes) -> bytes:
    """Modality's length stretched over the patient module: the file still parses, and
    Modality's value now holds the patient's name and ID (what a damaged header can do)."""
    at = data.find(b"\x08\x00\x60\x00CS")
    end = data.find(PHI["PatientID"].encode()) + len(PHI["PatientID"])
    end += end % 2  # values are padded to even length
    assert 0 < at < end
    new_len = end - (at + 8)
    return data[: at + 6] + struct.pack("<H", new_len) + data[at + 8 :]


@pytest.fixture(scope="module")
def phi_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Eight synthetic DICOM films with identities filled in, their damaged and refused
    variants, and a test-split manifest over them (neutral patient ids)."""
    if not deps.available("scipy"):
        pytest.skip("needs scipy for the synthetic films")
    from edgevcf import progress
    from edgevcf.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("phi")
    was = progress.enabled()
    progress.set_enabled(False)
    try:
        res = generate(root / "synth", 8, cfg=SynthConfig.fast(), seed=21, fmt="dicom",
                       workers=1, preview=False)  # fmt: skip
    finally:
        progress.set_enabled(was)
    images = root / "in"
    images.mkdir()
    films = []
    for k, src in enumerate(sorted((res.out_dir / "images").glob("*.dcm"))):
        path = images / f"film{k}.dcm"
        path.write_bytes(_with_phi(pydicom.dcmread(src)))
        films.append(path)
    good = films[0].read_bytes()
    (images / "study.dcm").write_bytes(good)
    (images / "swallowed.dcm").write_bytes(_swallowing(good))
    (images / "corrupt.dcm").write_bytes(good[: len(good) // 2])  # truncated pixel data
    colour = pydicom.dcmread(films[1])
    rgb = np.repeat(colour.pixel_array[..., None], 3, axis=2).astype(np.uint8)
    colour.SamplesPerPixel, colour.PhotometricInterpretation = 3, "RGB"
    colour.BitsAllocated, colour.BitsStored, colour.HighBit, colour.PlanarConfiguration = 8, 8, 7, 0
    colour.PixelData = rgb.tobytes()
    (images / "unsupported.dcm").write_bytes(_with_phi(colour))
    rows = [
        {"path": str(p), "patient_id": f"case-{k:02d}", "label": k % 2, "split": "test"}
        for k, p in enumerate(
            [*films, images / "swallowed.dcm", images / "corrupt.dcm", images / "unsupported.dcm"]
        )
    ]
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for p in images.iterdir():  # the inputs really carry the identities
        assert PHI["PatientID"].encode() in p.read_bytes()
    return {"dir": images, "manifest": manifest}


def _leaks(text: str) -> list[str]:
    low = text.lower()
    return [n for n in NEEDLES if n.lower() in low]


def _file_leaks(root: Path) -> dict[str, list[str]]:
    found = {}
    for p in root.rglob("*"):
        if p.is_file():
            hits = _leaks(p.read_bytes().decode("latin-1"))
            if hits:
                found[str(p.relative_to(root))] = hits
    return found


def test_reader_never_quotes_patient_data(phi_data: dict[str, Any]) -> None:
    """The swallowed name does not reach ImageMeta; refusals and logs do not quote it."""
    img, meta = read_image(phi_data["dir"] / "swallowed.dcm")
    assert img.size > 0
    assert meta.modality is None  # its value is the patient module now: dropped
    assert not _leaks(json.dumps(meta.to_dict()))
    for name in ("corrupt.dcm", "unsupported.dcm"):
        with pytest.raises(DataError) as err:
            read_image(phi_data["dir"] / name)
        assert not _leaks(f"{err.value.message} {err.value.hint}")


def test_mutated_phi_dicom_messages_logs_and_warnings(
    phi_data: dict[str, Any], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """300 damaged variants of the identified film (the fuzzer's mutators): no error message,
    hint, log record (pydicom's included, at DEBUG), warning or ImageMeta quotes patient data."""
    base = (phi_data["dir"] / "study.dcm").read_bytes()
    path = tmp_path / "input.dcm"
    outcomes: dict[str, int] = {}
    leaks = []
    for i in range(300):
        data, ops = mutate("dicom", base, random.Random(f"phi:{i}"))
        path.write_bytes(data)
        caplog.clear()
        with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                _, meta = read_image(path)
                texts = [json.dumps(meta.to_dict())]
                outcomes["ok"] = outcomes.get("ok", 0) + 1
            except DataError as exc:
                texts = [exc.message, exc.hint or ""]
                outcomes["refused"] = outcomes.get("refused", 0) + 1
        texts += [r.getMessage() for r in caplog.records] + [str(w.message) for w in caught]
        hits = _leaks("\n".join(texts))
        if hits:
            leaks.append((i, ops, hits))
    assert outcomes.get("ok", 0) > 30 and outcomes.get("refused", 0) > 30, outcomes
    assert not leaks, leaks[:5]


def _cli(*args: str, cache: Path, debug: bool = True) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child; ``--debug``: DEBUG logs, and errors as tracebacks (exit 1)."""
    import os

    env = {**os.environ, "EDGEVCF_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "edgevcf", *(["--debug"] if debug else []), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def _check(runs: dict[str, tuple[Any, tuple[int, ...]]], *folders: Path) -> None:
    """Exit codes as expected, and no needle in any output or written file."""
    problems = []
    for name, (res, codes) in runs.items():
        if res.returncode not in codes:
            problems.append(f"{name}: exit {res.returncode}: {res.stderr[-1500:]}")
        hits = _leaks(res.stdout + res.stderr)
        if hits:
            problems.append(f"{name}: {hits} in its output")
    for folder in folders:
        problems += [f"{folder.name}/{f}: {hits}" for f, hits in _file_leaks(folder).items()]
    assert not problems, "\n".join(problems)


@pytest.mark.requires_onnxruntime
def test_command_line_outputs_carry_no_patient_data(
    phi_data: dict[str, Any], export_bundle: Any, tmp_path: Path
) -> None:
    """predict (table; JSON with --debug: DEBUG logs and tracebacks), data check, and bench
    accuracy with refused files in the split."""
    _, bundle = export_bundle("onnx-cpu")
    d, manifest = phi_data["dir"], str(phi_data["manifest"])
    cache, out = tmp_path / "cache", tmp_path / "out"
    inputs = [str(d / n) for n in ("study.dcm", "swallowed.dcm", "corrupt.dcm", "unsupported.dcm")]
    b = str(bundle.path)
    runs = {
        "predict": (_cli("predict", b, *inputs, cache=cache, debug=False), (5,)),
        "predict --debug --json": (_cli("predict", b, *inputs, "--json", cache=cache), (1,)),
        "data check": (_cli("data", "check", manifest, cache=cache), (0, 1)),
        "bench --data": (
            _cli("bench", b, "--data", manifest, "--no-latency", "--json", "--out",
                 str(out / "bench-acc"), cache=cache),
            (0, 4),
        ),
    }  # fmt: skip
    _check(runs, out, cache)

    # the runs really saw the files: scores, refusals with their reasons, reports with counts
    lines = [json.loads(x) for x in runs["predict --debug --json"][0].stdout.splitlines()]
    assert lines[0]["status"] == "ok" and lines[0]["probability"] is not None
    refused = {Path(x["source"]).name: x["reason"] for x in lines if x["status"] != "ok"}
    assert "truncated" in refused["corrupt.dcm"] and "colour" in refused["unsupported.dcm"]
    assert "Traceback" in runs["predict --debug --json"][0].stderr  # --debug: tracebacks
    assert "Error: " in runs["predict"][0].stderr and "corrupt.dcm" in runs["predict"][0].stdout
    acc = json.loads((out / "bench-acc" / "bench.json").read_text())["accuracy"]
    assert {s["file"] for s in acc["skipped"]} >= {"corrupt.dcm", "unsupported.dcm"}


@pytest.mark.slow
@pytest.mark.requires_onnxruntime
@pytest.mark.requires_torch
def test_bench_latency_and_evaluate_carry_no_patient_data(
    phi_data: dict[str, Any], export_bundle: Any, tiny_export: Any, tmp_path: Path
) -> None:
    """verify; bench timing DICOM -> decision on the identified film; evaluate with refused
    files in the split."""
    _, bundle = export_bundle("onnx-cpu")
    d, manifest = phi_data["dir"], str(phi_data["manifest"])
    cache, out = tmp_path / "cache", tmp_path / "out"
    runs = {
        "verify": (_cli("verify", str(bundle.path), cache=cache), (0,)),
        "bench --dicom": (
            _cli("bench", str(bundle.path), "--dicom", str(d / "study.dcm"), "--iterations",
                 "200", "--quick", "--json", "--out", str(out / "bench-lat"), cache=cache),
            (0, 4),
        ),
        "evaluate": (
            _cli("evaluate", str(tiny_export.checkpoint), "--data", manifest, "--split", "test",
                 "--out", str(out / "eval"), cache=cache),
            (0,),
        ),
    }  # fmt: skip
    _check(runs, out, cache)
    lat = json.loads((out / "bench-lat" / "bench.json").read_text())["bundles"][0]["latency"]
    assert lat["end_to_end"]["n"] > 0
    assert json.loads((out / "eval" / "metrics.json").read_text())["skipped"] >= 2
