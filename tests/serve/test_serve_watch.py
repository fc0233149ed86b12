"""Watching the node: /healthz, /metrics in Prometheus' text format, the status page as a real
headless browser (Debian's chromium) renders it — and no patient data on any of them, nor in
the log."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pydicom
import pytest
from peers import Pacs, config, running, storescu, wait_for

from edgevcf.serve.journal import uid_key

#: One sample line of the text format: name, optional labels, a number.
SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_]+="[^"]*"(,[a-zA-Z_]+="[^"]*")*\})? '
                    r"[-+]?([0-9.]+(e[-+]?[0-9]+)?|Inf|NaN)$")  # fmt: skip


def _get(svc: Any, path: str) -> tuple[int, str]:
    host, port = svc.addresses.http
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    pytest.skip("needs a headless browser (Debian: apt-get install -y chromium)")


def _phi(films: list[Path]) -> list[str]:
    """What must never appear: names, IDs, clear UIDs of the films sent."""
    out = []
    for f in films:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        out += [str(ds.PatientName), str(ds.PatientID), str(ds.SOPInstanceUID),
                str(ds.StudyInstanceUID)]  # fmt: skip
    return [x for x in out if x]


def test_health_metrics_and_status_page_in_a_browser(
    serve_bundle: Path, films: list[Path], pacs: Pacs, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    browser = _chromium()
    caplog.set_level(logging.DEBUG)
    cfg = config(tmp_path, destinations=[{"ae_title": "PACS", "host": "127.0.0.1",
                                          "port": pacs.port}])  # fmt: skip
    with running(serve_bundle, cfg) as svc:
        code, body = _get(svc, "/healthz")
        assert code == 200 and json.loads(body)["status"] == "ok"
        assert storescu(svc.addresses.dicom[1], *films[:3]).returncode == 0
        wait_for(lambda: svc.journal.counts()["forwarded"] == 3)
        code, metrics = _get(svc, "/metrics")
        assert code == 200
        samples = [x for x in metrics.splitlines() if x and not x.startswith("#")]
        assert all(SAMPLE.match(x) for x in samples), [x for x in samples if not SAMPLE.match(x)]
        assert "edgevcf_serve_received_total 3" in samples
        assert 'edgevcf_serve_jobs{state="forwarded"} 3' in samples
        assert "edgevcf_serve_result_seconds_count 3" in samples
        assert 'edgevcf_serve_forwarded_total{destination="PACS"} 3' in samples
        # the drift watch is in its burn-in: the three films wait in the open period
        assert "edgevcf_serve_watch_ready 0" in samples
        assert "edgevcf_serve_watch_open_films 3" in samples
        assert 'edgevcf_serve_watch_alarm_active{signal="positive_rate"} 0' in samples
        host, port = svc.addresses.http
        dom = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
             f"http://{host}:{port}/"],
            capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
        shot = tmp_path / "status.png"
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
             "--window-size=1000,800", f"http://{host}:{port}/"],
            capture_output=True, timeout=120,
        )  # fmt: skip
        status = json.loads(_get(svc, "/status.json")[1])
    assert "<h1>edgevcf serve: EDGEVCF</h1>" in dom
    assert 'id="signals"' in dom and "burn-in: 0 of 28 periods" in dom
    assert status["model_id"] in dom
    for f in films[:3]:
        key = uid_key(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID))
        assert key[:16] in dom
    assert re.search(r"<td>(fresh|not fresh|-)</td>", dom)
    assert shot.is_file() and shot.stat().st_size > 5000  # a page was drawn
    seen = dom + metrics + json.dumps(status) + caplog.text
    seen += Path(cfg.storage.spool, "results.jsonl").read_text()
    leaked = [x for x in _phi(films[:3]) if x in seen]
    assert leaked == []


def test_healthz_fails_when_a_part_has_died(serve_bundle: Path, tmp_path: Path) -> None:
    with running(serve_bundle, config(tmp_path)) as svc:
        assert _get(svc, "/healthz")[0] == 200
        svc.outbox.stop()  # the outbox thread ends: the node can no longer deliver
        code, body = _get(svc, "/healthz")
        assert code == 503 and json.loads(body)["status"] == "failing"
        assert _get(svc, "/nothing")[0] == 404
