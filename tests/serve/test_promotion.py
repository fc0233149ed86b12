"""Promotion records: signed, evidence-bound, rolled back by a new record; a node serving a
deployment takes the newest valid record at start and on SIGHUP, and skips a forged one."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from peers import BIN, free_port

from edgevcf.errors import ConfigError, DataError
from edgevcf.signing import Trust, new_key
from edgevcf.watch.promotion import current, promote


def _report(candidate: str, ok: bool) -> dict[str, Any]:
    return {"candidate": candidate, "promote": ok,
            "checks": [{"check": "films", "passed": ok, "detail": "x"}]}  # fmt: skip


def test_records_need_evidence_verify_and_roll_back(
    serve_bundle: Path, export_bundle: Any, tmp_path: Path
) -> None:
    _, int8 = export_bundle("onnx-cpu", "int8")
    key, pub, kid = new_key(tmp_path / "qa")
    trust = Trust.load([pub])
    dep = tmp_path / "deploy"
    promote(dep, serve_bundle, key, by="QA", note="initial")  # the first needs no report
    with pytest.raises(ConfigError, match="needs evidence"):
        promote(dep, int8.path, key, by="QA")
    with pytest.raises(ConfigError, match="does not hold"):
        promote(dep, int8.path, key, by="QA", report=_report(int8.id, False))
    with pytest.raises(ConfigError, match="not this bundle"):
        promote(dep, int8.path, key, by="QA", report=_report("someone-else", True))
    promote(dep, int8.path, key, by="QA", report=_report(int8.id, True))
    path, rec, skipped = current(dep, trust)
    assert path == Path(int8.path).resolve() and rec["sequence"] == 2 and not skipped
    assert rec["signer_key_id"] == kid and rec["evidence"]["kind"] == "shadow report"
    assert rec["replaces"]["id"] != int8.id
    promote(dep, None, key, by="QA", rollback=True, note="back")
    path, rec, _ = current(dep, trust)
    assert path == Path(serve_bundle).resolve() and rec["evidence"]["kind"] == "rollback"
    # a forged record (edited after signing) is skipped, said, never obeyed
    forged = dep / "promotions" / "000004.json"
    doc = json.loads((dep / "promotions" / "000002.json").read_text())
    doc["record"]["sequence"] = 4
    forged.write_text(json.dumps(doc))
    path, rec, skipped = current(dep, trust)
    assert rec["sequence"] == 3 and any("000004.json" in s and "verify" in s for s in skipped)
    # another site's key is not trusted here
    _, other_pub, _ = new_key(tmp_path / "other")
    with pytest.raises(DataError, match="no valid promotion record"):
        current(dep, Trust.load([other_pub]))


def test_serve_a_deployment_and_take_a_promotion_on_sighup(
    serve_bundle: Path, export_bundle: Any, tmp_path: Path
) -> None:
    from edgevcf.bundle import Bundle
    from edgevcf.signing import sign_bundle

    _, int8 = export_bundle("onnx-cpu", "int8")
    key, pub, _ = new_key(tmp_path / "qa")
    dep = tmp_path / "deploy"
    first, second = tmp_path / "first", tmp_path / "second"
    for src, dst in ((serve_bundle, first), (int8.path, second)):  # a cart runs signed bundles
        shutil.copytree(src, dst)
        sign_bundle(dst, key)
    second_id = Bundle.load(second).id
    promote(dep, first, key, by="QA")
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(BIN / "edgevcf"), "serve", "--deployment", str(dep), "--trust", str(pub),
             "--port", str(free_port()), "--http-port", "0", "--allow", "CART@127.0.0.1",
             "--spool", str(tmp_path / "spool"), "--journal", str(tmp_path / "j.sqlite"),
             "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        _wait(log, "edgevcf serve:", proc)
        assert "record 1 by QA (initial deployment)" in log.read_text()
        promote(dep, second, key, by="QA", report=_report(second_id, True))
        proc.send_signal(signal.SIGHUP)
        _wait(log, f"model {second_id[:12]}", proc)
        assert "record 2 by QA (shadow report)" in log.read_text()
        assert proc.poll() is None  # still serving
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0, log.read_text()[-2000:]


def _wait(log: Path, text: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in the node's output: {log.read_text()[-2000:]}")
