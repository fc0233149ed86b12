"""``edgevcf score``: one row per film in whole parts, resumable, the runtime's own answers,
no identifier in clear."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
from click.testing import CliRunner

from edgevcf.cli import cli
from edgevcf.score import read_rows, score


def test_score_writes_one_row_per_film_and_resumes(export_bundle: Any, tmp_path: Path) -> None:
    from edgevcf.data.synth import SynthConfig, generate
    from edgevcf.runtime import Predictor

    _, bundle = export_bundle("onnx-cpu")
    data = generate(tmp_path / "films", 6, cfg=SynthConfig.fast(), seed=3, fmt="dicom",
                    workers=1, preview=False, val=0, test=0).manifest  # fmt: skip
    broken = tmp_path / "films" / "images" / "broken.dcm"
    broken.write_bytes(b"not a DICOM")
    folder = tmp_path / "films"
    out = tmp_path / "scores"
    r = score(bundle.path, folder, out, part_films=3, batch_size=3)
    films = sorted(p for p in folder.rglob("*.dcm"))
    assert r["films"] == len(films) and r["scored_now"] == len(films)
    rows = read_rows(out)
    assert len(rows) == len(films) and len({x["file_hash"] for x in rows}) == len(films)
    assert r["statuses"].get("refused") == 1  # the broken file: a row with its reason
    refused = next(x for x in rows if x["status"] == "refused")
    assert refused["reason"] and refused["probability"] in ("", None)
    # the runtime's own answers, same batch size
    preds = Predictor.from_bundle(bundle.path).predict_many([str(p) for p in films], batch_size=3)
    by_hash = {x["file_hash"]: x for x in rows}
    import hashlib

    for p, pr in zip(films, preds, strict=True):
        row = by_hash[hashlib.sha256(str(p.relative_to(folder)).encode()).hexdigest()]
        assert row["status"] == pr.status
        if pr.probability is not None:
            assert float(row["probability"]) == pr.probability  # CSV round-trips a float exactly
    # resume: a lost part is redone, nothing else; a second run adds nothing
    parts = sorted(out.glob("part-*"))
    parts[0].unlink()
    again = score(bundle.path, folder, out, part_films=3, batch_size=3)
    assert again["scored_now"] == 3 and len(read_rows(out)) == len(films)
    assert score(bundle.path, folder, out)["scored_now"] == 0
    # no identifier in clear
    text = repr(read_rows(out))  # the values, whether the parts are Parquet or CSV
    for p in films:
        if p == broken:
            continue
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        assert str(ds.SOPInstanceUID) not in text and str(ds.PatientID) not in text
    assert data.is_file()


def test_score_on_the_command_line_and_a_mistake(export_bundle: Any, tmp_path: Path) -> None:
    _, bundle = export_bundle("onnx-cpu")
    (tmp_path / "empty").mkdir()
    args = ["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(cli, ["-q", "score", str(bundle.path), *args])
    assert res.exit_code == 5 and "no *.dcm file" in res.output
