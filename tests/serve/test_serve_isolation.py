"""Scoring in supervised worker processes (issue 25): a film that hangs its worker and one that
kills it (``os.abort()``) each end as a quarantined "undetermined" SR while the node carries
on, also across ``kill -9`` restarts of the node; ``/healthz`` says when scoring stalls;
SIGTERM stops the node in bounded time whatever a worker is doing.

The faults come from the worker's test-only hooks (``EDGEVCF_TEST_HOOKS=1``, a film whose
Image Comments read ``edgevcf-test:hang`` or ``edgevcf-test:abort``); films, modality (dcmtk's
``storescu``) and PACS (``storescp``) are real.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pydicom
import pytest
from peers import (
    BIN,
    Pacs,
    config,
    echoscu,
    free_port,
    marked,
    need,
    node_config,
    running,
    source_uid,
    storescu,
)  # fmt: skip
from peers import wait_for as wait

from edgevcf.serve.workers import ABORT, HANG, HOOKS_ENV

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="signals as on Linux")


def _sr_text(sr: pydicom.Dataset) -> str:
    """Every text value of an SR's content tree, joined (to find the stated reason)."""
    out: list[str] = []

    def walk(items: Any) -> None:
        for item in items:
            if "TextValue" in item:
                out.append(str(item.TextValue))
            if "ConceptCodeSequence" in item:
                out.append(str(item.ConceptCodeSequence[0].CodeMeaning))
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(sr.ContentSequence)
    return " | ".join(out)


def _healthz(svc: Any) -> tuple[int, dict[str, Any]]:
    host, port = svc.addresses.http
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize(("fault", "kind"), [(HANG, "timeout"), (ABORT, "died")],
                         ids=["hang", "abort"])  # fmt: skip
def test_a_film_that_hangs_or_kills_its_worker_ends_quarantined_and_the_node_carries_on(
    serve_bundle: Path,
    films: list[Path],
    pacs: Pacs,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    kind: str,
) -> None:
    monkeypatch.setenv(HOOKS_ENV, "1")  # the workers inherit it
    bad = marked(films[0], tmp_path / "bad.dcm", "1.2.826.0.1.77.1", fault)
    dest = [{"ae_title": "PACS", "host": "127.0.0.1", "port": pacs.port}]
    cfg = config(
        tmp_path,
        destinations=dest,
        scoring={"workers": 2, "film_timeout_s": 2.0, "max_tries": 2, "stall_s": 30.0},
    )
    with running(serve_bundle, cfg) as svc:  # fmt: skip
        port = svc.addresses.dicom[1]
        assert storescu(port, bad).returncode == 0
        assert storescu(port, *films[1:4]).returncode == 0  # the others are scored meanwhile
        wait(lambda: svc.journal.counts()["forwarded"] == 4, timeout=90)
        assert svc.metrics.count("worker_restarts_total") == 2  # two tries, two replacements
        assert f'worker_restarts_total{{reason="{kind}"}} 2' in svc.metrics.text()
        (q,) = svc.journal.quarantined()
        assert q.tries == 2 and q.state == "forwarded"
        assert Path(q.spool).parent.name == "quarantine" and Path(q.spool).is_file()
        assert _healthz(svc)[0] == 200  # the node carries on
        assert storescu(port, films[4]).returncode == 0
        wait(lambda: svc.journal.counts()["forwarded"] == 5, timeout=60)
        assert svc.status()["quarantined"] == 1
    by_film = {source_uid(r): r for r in pacs.reports()}
    assert len(by_film) == 5
    text = _sr_text(by_film["1.2.826.0.1.77.1"])
    assert "quarantined" in text
    assert ("did not finish within 2 s" if kind == "timeout" else "worker died") in text
    others = [by_film[str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)]
              for f in films[1:5]]  # fmt: skip
    assert all("quarantined" not in _sr_text(r) for r in others)


def test_healthz_fails_with_the_reason_while_scoring_stalls(
    serve_bundle: Path, films: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOOKS_ENV, "1")
    bad = marked(films[0], tmp_path / "bad.dcm", "1.2.826.0.1.77.2", HANG)
    cfg = config(tmp_path, scoring={"workers": 1, "film_timeout_s": 1.5, "max_tries": 3,
                                    "stall_s": 2.0})  # fmt: skip
    with running(serve_bundle, cfg) as svc:
        assert _healthz(svc)[0] == 200  # idle is not stalled
        assert storescu(svc.addresses.dicom[1], bad).returncode == 0
        _, body = wait(lambda: (h := _healthz(svc))[0] == 503 and h, timeout=30, every=0.1)
        assert body["status"] == "failing" and "no scoring progress" in body["reason"]
        wait(lambda: svc.journal.count_quarantined() == 1, timeout=30)
        assert _healthz(svc)[0] == 200  # the quarantine was progress: healthy again


# ------------------------------------------------------------------ the node as a process
def _node(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    """``edgevcf serve --config`` (the bundle from [model]), its own process group."""
    return subprocess.Popen(
        [str(BIN / "edgevcf"), "serve", "--config", str(cfg)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, HOOKS_ENV: "1"},
    )  # fmt: skip


def _tries(journal: Path) -> int:
    with sqlite3.connect(journal, timeout=10) as db:
        row = db.execute("SELECT tries FROM jobs").fetchone()
    return int(row[0]) if row else 0


def test_sigterm_is_bounded_and_a_film_that_kills_the_node_cannot_loop(
    serve_bundle: Path, films: list[Path], tmp_path: Path
) -> None:
    """A film in flight in a hung worker: SIGTERM stops the node in bounded time and the try is
    not counted; ``kill -9`` of the node twice while the film is in flight counts two tries, so
    the next start quarantines it without scoring it again."""
    need("storescu", "storescp")
    pacs = Pacs("PACS", free_port(), tmp_path / "pacs").start()
    port = free_port()
    cfg = node_config(tmp_path, serve_bundle, pacs.port, port, workers=1, film_timeout_s=300,
                    max_tries=2, stall_s=600)  # fmt: skip
    journal, log = tmp_path / "journal.sqlite", tmp_path / "serve.log"
    bad = marked(films[0], tmp_path / "bad.dcm", "1.2.826.0.1.77.3", HANG)
    node = _node(cfg, log)
    try:
        wait(lambda: echoscu(port).returncode == 0, timeout=90, every=0.3)
        assert storescu(port, bad).returncode == 0
        wait(lambda: _tries(journal) == 1, timeout=30)
        t0 = time.monotonic()
        node.send_signal(signal.SIGTERM)  # the worker is asleep in the film
        assert node.wait(20) == 0
        assert time.monotonic() - t0 < 15
        assert _tries(journal) == 0  # abandoned by the node: not the film's fault
        for expected in (1, 2):  # the node dies twice while the film is in flight
            node = _node(cfg, log)
            wait(lambda n=expected: _tries(journal) == n, timeout=90)
            os.killpg(node.pid, signal.SIGKILL)
            node.wait(10)
        node = _node(cfg, log)  # tries used up: quarantined at once, never scored again
        (sr,) = wait(lambda: pacs.reports(), timeout=90)
        assert _tries(journal) == 2
    finally:
        with_timeout = node.poll() is None
        if with_timeout:
            node.send_signal(signal.SIGTERM)
            node.wait(30)
        pacs.stop()
    assert source_uid(sr) == "1.2.826.0.1.77.3" and "quarantined" in _sr_text(sr)
    assert len(list((tmp_path / "spool" / "quarantine").iterdir())) == 1
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize(
    ("profile", "backend", "isolation"),
    [("openvino", "openvino", "process"), ("openvino", "openvino", "thread"),
     ("mobile", "litert", "process")],
)  # fmt: skip
def test_every_engine_serves_the_scores_the_runtime_gives(
    export_bundle: Any, films: list[Path], pacs: Pacs, tmp_path: Path,
    profile: str, backend: str, isolation: str,
) -> None:  # fmt: skip
    """OpenVINO and LiteRT bundles too (the onnx-cpu one serves every other test), each film's
    result in the result log exactly what ``Predictor.predict`` gives in this process."""
    from edgevcf import deps
    from edgevcf.runtime import Predictor
    from edgevcf.serve.journal import uid_key

    if not deps.available(backend) or not deps.available("pynetdicom"):
        pytest.skip(f"needs {backend} and pynetdicom")
    _, bundle = export_bundle(profile)
    dest = [{"ae_title": "PACS", "host": "127.0.0.1", "port": pacs.port}]
    cfg = config(
        tmp_path,
        destinations=dest,
        scoring={"workers": 2, "backend": backend, "isolation": isolation},
    )
    with running(Path(bundle.path), cfg) as svc:  # fmt: skip
        assert svc.identity.runtime == backend
        assert storescu(svc.addresses.dicom[1], *films[:4]).returncode == 0
        wait(lambda: len(pacs.reports()) == 4, timeout=90)
    pred = Predictor.from_bundle(bundle.path, backend, threads=1)
    log = Path(cfg.storage.spool, "results.jsonl").read_text()
    lines = [json.loads(x) for x in log.splitlines()]
    got = {x["uid_sha256"]: (x["status"], x["probability"]) for x in lines}
    for f in films[:4]:
        p = pred.predict(f)
        key = uid_key(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID))
        assert got[key] == (p.status, p.probability)
