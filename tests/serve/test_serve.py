"""``edgevcf serve`` against real DICOM programs nobody here wrote: dcmtk's ``echoscu`` and
``storescu`` as the modality, ``storescp`` as the PACS, ``dsrdump`` and dicom3tools'
``dciodvfy`` reading every SR that arrives."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pydicom
import pytest
from peers import Pacs, config, echoscu, free_port, need, running, source_uid, storescu, wait_for

from edgevcf.serve.journal import uid_key


def _metrics(svc: Any) -> str:
    host, port = svc.addresses.http
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def _sent_uids(files: list[Path]) -> set[str]:
    return {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}


def test_echo_and_association_control(serve_bundle: Path, tmp_path: Path) -> None:
    cfg = config(tmp_path, allowed=[{"ae_title": "CART", "host": "127.0.0.1"},
                                    {"ae_title": "ELSEWHERE", "host": "10.9.9.9"}])  # fmt: skip
    with running(serve_bundle, cfg) as svc:
        port = svc.addresses.dicom[1]
        assert echoscu(port).returncode == 0
        unknown = echoscu(port, aet="INTRUDER")
        assert unknown.returncode != 0
        assert "Calling AE Title Not Recognized" in unknown.stderr
        # an allowed AE title from a host it is not allowed from
        assert "Calling AE Title Not Recognized" in echoscu(port, aet="ELSEWHERE").stderr
        assert "Called AE Title Not Recognized" in echoscu(port, aec="SOMEONE").stderr
        assert echoscu(port).returncode == 0  # and the node still answers
        text = _metrics(svc)
        assert 'edgevcf_serve_associations_rejected_total{reason="not_allowed"} 2' in text
    log = Path(cfg.storage.spool) / "results.jsonl"
    assert not log.exists() or log.read_text() == ""


def test_films_in_one_valid_sr_each_at_the_pacs(
    serve_bundle: Path, films: list[Path], pacs: Pacs, tmp_path: Path
) -> None:
    need("dsrdump")
    cfg = config(tmp_path, destinations=[{"ae_title": "PACS", "host": "127.0.0.1",
                                          "port": pacs.port}])  # fmt: skip
    with running(serve_bundle, cfg) as svc:
        port = svc.addresses.dicom[1]
        half = len(films) // 2
        # two modalities' associations at once, several films each
        procs = [threading.Thread(target=storescu, args=(port, *chunk))
                 for chunk in (films[:half], films[half:])]  # fmt: skip
        for t in procs:
            t.start()
        for t in procs:
            t.join()
        sent = _sent_uids(films)
        wait_for(lambda: len(pacs.reports()) >= len(sent), timeout=120)
        # a film sent again gets success and no second result
        assert storescu(port, films[0]).returncode == 0
        wait_for(lambda: svc.journal.counts()["forwarded"] == len(sent))
        assert svc.metrics.count("duplicates_total") == 1
        status = svc.status()
    reports = pacs.reports()
    assert sorted(source_uid(r) for r in reports) == sorted(sent)  # one each, none twice
    for sr_file in pacs.folder.iterdir():
        dump = subprocess.run(["dsrdump", str(sr_file)], capture_output=True, text=True)
        assert dump.returncode == 0 and dump.stderr == "", dump.stderr
        assert "Fresh vertebral compression fracture" in dump.stdout
    for sr, film in zip(sorted(reports, key=source_uid),
                        sorted((pydicom.dcmread(f, stop_before_pixels=True) for f in films),
                               key=lambda d: str(d.SOPInstanceUID)), strict=True):  # fmt: skip
        assert sr.StudyInstanceUID == film.StudyInstanceUID  # in the film's own study
        assert sr.PatientID == film.PatientID and sr.PatientName == film.PatientName
        eq = sr.ContributingEquipmentSequence[0]
        assert eq.ManufacturerModelName == "mobilenet_v3_small"
        assert status["model_id"][:48] in eq.SoftwareVersions[1]
    # the spool is emptied after forwarding; the result log holds hashed UIDs only
    assert list(Path(cfg.storage.spool, "films").iterdir()) == []
    assert list(Path(cfg.storage.spool, "results").iterdir()) == []
    lines = [
        json.loads(x) for x in Path(cfg.storage.spool, "results.jsonl").read_text().splitlines()
    ]
    assert sorted(x["uid_sha256"] for x in lines) == sorted(uid_key(u) for u in sent)
    text = Path(cfg.storage.spool, "results.jsonl").read_text()
    for film in films:
        ds = pydicom.dcmread(film, stop_before_pixels=True)
        assert str(ds.SOPInstanceUID) not in text and str(ds.PatientID) not in text


def test_every_sr_validates(serve_bundle: Path, films: list[Path], pacs: Pacs,
                            tmp_path: Path) -> None:  # fmt: skip
    """dicom3tools' IOD checker finds no error (type 1/1C/2 attributes, values) in the SR."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("needs dicom3tools (Debian: apt-get install -y dicom3tools)")
    cfg = config(tmp_path, destinations=[{"ae_title": "PACS", "host": "127.0.0.1",
                                          "port": pacs.port}])  # fmt: skip
    with running(serve_bundle, cfg) as svc:
        assert storescu(svc.addresses.dicom[1], *films[:3]).returncode == 0
        wait_for(lambda: len(pacs.reports()) >= 3)
    for sr_file in pacs.folder.iterdir():
        out = subprocess.run(["dciodvfy", str(sr_file)], capture_output=True, text=True)
        errors = [x for x in (out.stdout + out.stderr).splitlines() if x.startswith("Error")]
        assert errors == [], errors


def test_refused_with_dicom_statuses_and_the_node_stays_up(
    serve_bundle: Path, films: list[Path], tmp_path: Path
) -> None:
    from pynetdicom import AE, _config

    cfg = config(tmp_path)
    with running(serve_bundle, cfg) as svc:
        port = svc.addresses.dicom[1]
        # an SR is not an image this node accepts: no presentation context, storescu fails
        sr = tmp_path / "some.sr.dcm"
        from edgevcf.serve.sr import Finding, ModelIdentity, result_sr

        film = pydicom.dcmread(films[0], stop_before_pixels=True)
        result_sr(film, Finding(True, False, 0.1, 0.5), ModelIdentity("ab", "x", "y", "z")
                  ).save_as(sr, enforce_file_format=True)  # fmt: skip
        refused = storescu(port, sr)
        assert refused.returncode != 0
        # a malformed data set on the wire, and one without its study: failure statuses
        ae = AE(ae_title="CART")
        ae.add_requested_context(str(film.SOPClassUID))
        broken = tmp_path / "broken.dcm"
        data = films[0].read_bytes()
        good = pydicom.dcmread(films[0])
        broken.write_bytes(data[: len(data) // 3] + b"\xff\xfe\x00\xe0garbage" * 50)
        nostudy = tmp_path / "nostudy.dcm"
        good.SOPInstanceUID = "1.2.3.4.5.6.7"
        good.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7"
        del good.StudyInstanceUID
        good.save_as(nostudy)
        assoc = ae.associate("127.0.0.1", port, ae_title="EDGEVCF")
        assert assoc.is_established
        _config.STORE_SEND_CHUNKED_DATASET = True  # send the file's bytes as they are
        try:
            status = assoc.send_c_store(broken)
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = False
        if assoc.is_established:
            assert status.Status in (0xC000, 0xA900)
            assoc.release()
        assoc = ae.associate("127.0.0.1", port, ae_title="EDGEVCF")
        status = assoc.send_c_store(pydicom.dcmread(nostudy))
        assert status.Status == 0xA900
        assoc.release()
        assert echoscu(port).returncode == 0  # still up
        assert storescu(port, films[1]).returncode == 0  # and still storing
        wait_for(lambda: svc.journal.counts()["forwarded"] == 1)
        assert svc.metrics.count("refused_total") >= 1


def test_pacs_down_then_up_delays_results_and_loses_none(
    serve_bundle: Path, films: list[Path], tmp_path: Path
) -> None:
    pacs = Pacs("PACS", free_port(), tmp_path / "pacs")  # not started yet: down
    cfg = config(tmp_path, destinations=[{"ae_title": "PACS", "host": "127.0.0.1",
                                          "port": pacs.port}])  # fmt: skip
    with running(serve_bundle, cfg) as svc:
        assert storescu(svc.addresses.dicom[1], *films[:4]).returncode == 0
        wait_for(lambda: svc.journal.counts()["written"] == 4)
        wait_for(lambda: svc.metrics.count("forward_failures_total") >= 2, timeout=30)
        assert svc.journal.counts()["forwarded"] == 0
        pacs.start()
        try:
            wait_for(lambda: svc.journal.counts()["forwarded"] == 4, timeout=60)
            reports = pacs.reports()
        finally:
            pacs.stop()
    assert sorted(source_uid(r) for r in reports) == sorted(_sent_uids(films[:4]))


def test_a_restart_resumes_and_sends_nothing_twice(
    serve_bundle: Path, films: list[Path], pacs: Pacs, tmp_path: Path
) -> None:
    """Stopped with results still in the outbox (PACS down), started again: each arrives once."""
    dest = [{"ae_title": "PACS", "host": "127.0.0.1", "port": free_port()}]
    cfg = config(tmp_path, destinations=dest)
    with running(serve_bundle, cfg) as svc:
        assert storescu(svc.addresses.dicom[1], *films[:3]).returncode == 0
        wait_for(lambda: svc.journal.counts()["written"] == 3)
    cfg = config(tmp_path, destinations=[{**dest[0], "port": pacs.port}])
    with running(serve_bundle, cfg) as svc:
        wait_for(lambda: svc.journal.counts()["forwarded"] == 3)
        assert storescu(svc.addresses.dicom[1], films[0]).returncode == 0  # resend: no new job
        assert svc.journal.counts()["forwarded"] == 3
    assert sorted(source_uid(r) for r in pacs.reports()) == sorted(_sent_uids(films[:3]))


def test_a_data_set_over_the_limit_ends_its_association_only(
    serve_bundle: Path, films: list[Path], tmp_path: Path
) -> None:
    size_mb = films[0].stat().st_size / 1e6
    cfg = config(tmp_path, listen={"max_dataset_mb": size_mb / 4, "max_pdu": 16384})
    with running(serve_bundle, cfg) as svc:
        port = svc.addresses.dicom[1]
        assert storescu(port, films[0]).returncode != 0
        assert svc.journal.counts()["received"] == 0
        assert echoscu(port).returncode == 0  # the node goes on
        assert 'reason="too_large"' in _metrics(svc)


def test_a_film_that_cannot_be_decoded_gets_an_undetermined_sr_and_blocks_nobody(
    serve_bundle: Path, films: list[Path], pacs: Pacs, tmp_path: Path
) -> None:
    """Well-formed on the wire, undecodable pixels (a JPEG Lossless stream of junk): accepted,
    reported as not assessable with the reader's reason; the films after it are scored."""
    need("dsrdump")
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLosslessSV1

    ds = pydicom.dcmread(films[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.77.1"
    ds.PixelData = encapsulate([b"\xff\xd8" + bytes(range(256)) * 8 + b"\xff\xd9"])
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    broken = tmp_path / "junk.dcm"
    ds.save_as(broken, enforce_file_format=True)
    cfg = config(tmp_path, destinations=[{"ae_title": "PACS", "host": "127.0.0.1",
                                          "port": pacs.port}])  # fmt: skip
    with running(serve_bundle, cfg) as svc:
        port = svc.addresses.dicom[1]
        assert storescu(port, broken, extra=("-xs",)).returncode == 0
        assert storescu(port, *films[1:3]).returncode == 0
        wait_for(lambda: len(pacs.reports()) == 3)
        results = {j.key: j.result for j in svc.journal.recent(3)}
    bad = results[uid_key("1.2.826.0.1.77.1")]
    assert bad is not None and bad["status"] == "refused" and bad["probability"] is None
    assert sum(r is not None and r["status"] != "refused" for r in results.values()) == 2
    (sr_file,) = [p for p in pacs.folder.iterdir()
                  if source_uid(pydicom.dcmread(p)) == "1.2.826.0.1.77.1"]  # fmt: skip
    dump = subprocess.run(["dsrdump", str(sr_file)], capture_output=True, text=True).stdout
    assert '(373068000,SCT,"Undetermined")' in dump
    assert "Reason not assessable" in dump and str(tmp_path) not in dump  # no spool path


def test_retention_keeps_forwarded_films_until_it_ends(
    serve_bundle: Path, films: list[Path], tmp_path: Path
) -> None:
    cfg = config(tmp_path, storage={"retention_hours": 1.0})
    with running(serve_bundle, cfg) as svc:
        assert storescu(svc.addresses.dicom[1], films[0]).returncode == 0
        wait_for(lambda: svc.journal.counts()["forwarded"] == 1)
        assert len(list(svc.films.root.iterdir())) == 1  # kept for its hour
        svc._sweep()
        assert len(list(svc.films.root.iterdir())) == 1
    spool = Path(cfg.storage.spool, "films")
    assert oct(spool.stat().st_mode & 0o777) == "0o700"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in spool.iterdir())
