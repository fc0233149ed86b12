"""Shadow mode with real peers: dcmtk's storescu as the modality, storescp as the PACS. The
candidate scores every film after the served bundle, in the same worker processes; the PACS
receives the served bundle's SRs and nothing else; the journal, /metrics and the status page
carry the comparison."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from peers import Pacs, config, free_port, running, storescu, wait_for


def _get(svc: Any, path: str) -> str:
    host, port = svc.addresses.http
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as r:
        return str(r.read().decode())


def test_the_candidate_is_compared_and_never_reaches_the_pacs(
    serve_bundle: Path, export_bundle: Any, films: list[Path], pacs: Pacs, tmp_path: Path
) -> None:
    _, candidate = export_bundle("onnx-cpu", "int8")
    cfg = config(tmp_path, destinations=[{"ae_title": "PACS", "host": "127.0.0.1",
                                          "port": pacs.port}],
                 shadow={"bundle": str(candidate.path)})  # fmt: skip
    sent = films[:4]
    with running(serve_bundle, cfg) as svc:
        primary_id = svc.bundle.id
        assert storescu(svc.addresses.dicom[1], *sent).returncode == 0
        wait_for(lambda: svc.journal.counts()["forwarded"] == len(sent))
        wait_for(lambda: len(svc.journal.shadow_results()) == len(sent))
        metrics = _get(svc, "/metrics")
        status = json.loads(_get(svc, "/status.json"))
        page = _get(svc, "/")
        rows = svc.journal.shadow_results()
        wait_for(lambda: not any(Path(cfg.storage.spool, "films").iterdir()))  # then released
    assert {r["candidate"] for r in rows} == {candidate.id}
    assert all(r["result"]["model_id"] == candidate.id for r in rows)
    assert all(r["primary"]["model_id"] == primary_id for r in rows)
    reports = pacs.reports()
    assert len(reports) == len(sent)  # the served bundle's SRs, nothing from the candidate
    text = "".join(str(ds) for ds in reports)
    assert primary_id[:48] in text and candidate.id[:48] not in text
    sh = status["shadow"]
    assert sh["candidate"] == candidate.id and sh["films"] + sh["unpaired"] == len(sent)
    assert "edgevcf_serve_shadow_scored_total{status=" in metrics
    assert f"edgevcf_serve_shadow_score_seconds_count {len(sent)}" in metrics
    if sh["films"]:
        assert "edgevcf_serve_shadow_agreement" in metrics and 0 <= sh["agreement"]["value"] <= 1
    assert 'id="shadow"' in page
    _report(Path(cfg.storage.journal), sent, candidate.id, tmp_path)


def _report(journal: Path, sent: list[Path], candidate_id: str, tmp_path: Path) -> None:
    """``edgevcf shadow report`` on the node's journal, with labels keyed by SOP Instance UID
    (hashed with the journal's salt on the way in): every film is matched, the comparison
    is the node's, and four films are far from the promotion rule (exit code 4)."""
    import pydicom
    from click.testing import CliRunner

    from edgevcf.cli import cli

    labels = tmp_path / "truth.csv"
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in sent]
    labels.write_text("sop_instance_uid,label\n" + "".join(
        f"{u},{i % 2}\n" for i, u in enumerate(uids)))  # fmt: skip
    args = ["--journal", str(journal), "--labels", str(labels), "--out", str(tmp_path / "r")]
    res = CliRunner().invoke(cli, ["-q", "shadow", "report", *args])
    assert res.exit_code == 4, res.output
    r = json.loads((tmp_path / "r" / "shadow.json").read_text())
    assert r["candidate"] == candidate_id and r["films"] == len(sent)
    assert r["labelled"]["label_rows"] == len(sent)
    assert r["labelled"]["films"] == r["label_free"]["films"]  # every decided film matched
    assert not r["promote"] and any(not c["passed"] for c in r["checks"])
    for uid in uids:  # no clear identifier in what the report writes
        assert uid not in (tmp_path / "r" / "shadow.json").read_text()


def test_the_candidates_srs_go_to_the_qa_node_only_marked_not_for_clinical_use(
    serve_bundle: Path, export_bundle: Any, films: list[Path], pacs: Pacs, tmp_path: Path
) -> None:
    qa = Pacs("QA", free_port(), tmp_path / "qa").start()
    try:
        _, candidate = export_bundle("onnx-cpu", "int8")
        dest = [{"ae_title": "PACS", "host": "127.0.0.1", "port": pacs.port}]
        shadow = {"bundle": str(candidate.path), "qa_ae_title": "QA", "qa_host": "127.0.0.1",
                  "qa_port": qa.port}  # fmt: skip
        with running(serve_bundle, config(tmp_path, destinations=dest, shadow=shadow)) as svc:
            assert storescu(svc.addresses.dicom[1], *films[:2]).returncode == 0
            wait_for(lambda: len(pacs.reports()) == 2 and len(qa.reports()) == 2)
        clinical, marked = pacs.reports(), qa.reports()
    finally:
        qa.stop()
    assert all("NOT FOR CLINICAL USE" in ds.SeriesDescription for ds in marked)
    assert all("NOT FOR CLINICAL USE" in ds.ContentSequence[0].TextValue for ds in marked)
    assert all(candidate.id[:48] in str(ds) for ds in marked)
    assert not any("NOT FOR CLINICAL USE" in str(ds) for ds in clinical)
    assert {ds.SOPInstanceUID for ds in marked}.isdisjoint({ds.SOPInstanceUID for ds in clinical})
    import shutil
    import subprocess

    if shutil.which("dsrdump"):  # dcmtk reads the marked SR as a valid structured report
        one = next(p for p in sorted((tmp_path / "qa").iterdir()) if p.is_file())
        dump = subprocess.run(["dsrdump", str(one)], capture_output=True, text=True)
        assert dump.returncode == 0 and "NOT FOR CLINICAL USE" in dump.stdout, dump.stderr
    with pytest.raises(Exception, match="must not be a clinical destination"):
        config(tmp_path, destinations=dest,
               shadow={**shadow, "qa_host": "127.0.0.1", "qa_port": pacs.port})  # fmt: skip


def test_an_untrusted_candidate_is_refused(serve_bundle: Path, tmp_path: Path) -> None:
    """The candidate passes the same trust rules as the served bundle: a candidate signed by
    no trusted key does not start the node."""
    import shutil

    from edgevcf.errors import EdgeVCFError
    from edgevcf.signing import new_key, sign_bundle

    signed = tmp_path / "signed"
    shutil.copytree(serve_bundle, signed)
    _, pub, _ = new_key(tmp_path / "site")
    sign_bundle(signed, tmp_path / "site")
    cfg = config(tmp_path, trust={"keys": [str(pub)]}, shadow={"bundle": str(serve_bundle)})
    with pytest.raises(EdgeVCFError), running(signed, cfg):
        pass
