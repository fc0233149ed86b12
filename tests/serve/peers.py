"""Helpers of the ``edgevcf serve`` tests (imported by name: pytest puts this folder on
sys.path): real peers (dcmtk's storescu/storescp/echoscu), a checked config, a node started
in-process. Tests needing dcmtk skip with the install hint where it is missing (``.ci/run``
installs it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest

DCMTK_HINT = "needs dcmtk (Debian: apt-get update && apt-get install -y dcmtk)"
BIN = Path(sys.executable).parent


def need(*tools: str) -> None:
    """Skip unless the dcmtk (or other) programs are on PATH."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{DCMTK_HINT} (missing {', '.join(missing)})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float = 60.0, every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy (then return it) or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout:.0f} s")


@dataclass
class Pacs:
    """dcmtk's storescp, receiving the SRs into ``folder``."""

    ae_title: str
    port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Pacs:
        need("storescp")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["storescp", "-aet", self.ae_title, "-od", str(self.folder), "+xa", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: _listening(self.port), timeout=20)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def reports(self) -> list[pydicom.Dataset]:
        """Every SR received so far (complete files only)."""
        out = []
        for p in sorted(self.folder.iterdir()):
            try:
                out.append(pydicom.dcmread(p))
            except Exception:  # a file storescp is still writing
                continue
        return out


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def source_uid(sr: pydicom.Dataset) -> str:
    """The film an SR is about (its Current Requested Procedure Evidence)."""
    ev = sr.CurrentRequestedProcedureEvidenceSequence[0]
    return str(ev.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID)


def config(tmp: Path, **tables: Any) -> Any:
    """A checked ServeConfig for a node under ``tmp`` (port 0 = any free port)."""
    from edgevcf.serve.config import parse_serve_config

    data: dict[str, Any] = {
        "listen": {"ae_title": "EDGEVCF", "port": 0},
        "allowed": [{"ae_title": "CART", "host": "127.0.0.1"}],
        "storage": {"spool": str(tmp / "spool"), "journal": str(tmp / "journal.sqlite"),
                    "reserve_mb": 0},
        "forward": {"retry_initial_s": 0.2, "retry_max_s": 1.0},
        "http": {"port": free_port()},
        "scoring": {"workers": 2},
    }  # fmt: skip
    for k, v in tables.items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    return parse_serve_config(data, "test")


@contextmanager
def running(bundle: Path, cfg: Any) -> Iterator[Any]:
    """A Service started in this process, stopped at the end."""
    from edgevcf.serve.service import Service

    svc = Service(bundle, cfg)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def storescu(port: int, *files: Path, aet: str = "CART", aec: str = "EDGEVCF",
             extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """dcmtk's storescu sending ``files`` over one association."""
    need("storescu")
    return subprocess.run(
        ["storescu", *extra, "-aet", aet, "-aec", aec, "127.0.0.1", str(port),
         *map(str, files)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def echoscu(port: int, aet: str = "CART", aec: str = "EDGEVCF",
            extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:  # fmt: skip
    need("echoscu")
    return subprocess.run(
        ["echoscu", *extra, "-aet", aet, "-aec", aec, "127.0.0.1", str(port)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def marked(src: Path, dest: Path, uid: str, comment: str = "") -> Path:
    """A copy of ``src`` under a new SOP Instance UID, its Image Comments set to ``comment``."""
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
    if comment:
        ds.ImageComments = comment
    ds.save_as(dest)
    return dest


def node_config(tmp: Path, bundle: Path | None, pacs_port: int, port: int, **scoring: Any) -> Path:
    """``tmp/serve.toml`` for a node run as ``edgevcf serve --config`` (the bundle in [model]
    unless None), sending to a PACS on ``pacs_port``; ``scoring`` fills [scoring]."""
    f = tmp / "serve.toml"
    table = "\n".join(f"{k} = {v}" for k, v in scoring.items())
    model = f'[model]\nbundle = "{bundle}"' if bundle else ""
    f.write_text(f"""
{model}
[listen]
port = {port}
[storage]
reserve_mb = 0
[http]
port = 0
[forward]
retry_initial_s = 0.2
retry_max_s = 1.0
[scoring]
{table}
[[allowed]]
ae_title = "CART"
host = "127.0.0.1"
[[destinations]]
ae_title = "PACS"
host = "127.0.0.1"
port = {pacs_port}
""")
    return f
