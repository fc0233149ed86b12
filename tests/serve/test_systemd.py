"""The node as a systemd service (issue 25): the shipped unit passes ``systemd-analyze verify``
without a warning, names no bundle, and the node speaks systemd's notify protocol — READY=1
once it listens, WATCHDOG=1 only while healthy (stopped while scoring stalls, resumed after),
STOPPING=1 at SIGTERM — read from a real notify socket as systemd would."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from peers import BIN, Pacs, echoscu, free_port, marked, node_config, storescu
from peers import wait_for as wait

from edgevcf.serve.workers import HANG, HOOKS_ENV

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "edgevcf-serve.service"

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="systemd is Linux's")


def test_the_unit_verifies_and_takes_its_bundle_from_the_config(tmp_path: Path) -> None:
    text = UNIT.read_text()
    (exec_start,) = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")]
    assert exec_start.split()[1:] == ["serve", "--config", "/etc/edgevcf/serve.toml"]
    for key in ("Type=notify", "WatchdogSec=", "Restart=always", "KillMode=mixed"):
        assert key in text
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("needs systemd-analyze (Debian: apt-get install -y systemd)")
    # the unit as installed, its ExecStart pointing at this venv's edgevcf (verify checks it)
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace("/opt/edgevcf/bin/edgevcf", str(BIN / "edgevcf")))
    done = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # unknown keys are only warnings: none here


def test_ready_watchdog_only_while_healthy_and_stopping(
    serve_bundle: Path, films: list[Path], tmp_path: Path
) -> None:
    pacs = Pacs("PACS", free_port(), tmp_path / "pacs").start()
    port = free_port()
    cfg = node_config(tmp_path, serve_bundle, pacs.port, port, workers=1, film_timeout_s=1.5,
                    max_tries=3, stall_s=2.0)  # fmt: skip
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "600000",
           HOOKS_ENV: "1"}  # fmt: skip
    node = subprocess.Popen([str(BIN / "edgevcf"), "serve", "--config", str(cfg)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    said: list[tuple[float, str]] = []

    def drain() -> list[str]:
        while True:
            try:
                said.append((time.monotonic(), sock.recv(4096).decode()))
            except TimeoutError:
                return [m for _, m in said]

    try:
        wait(lambda: any(m.startswith("READY=1") for m in drain()), timeout=90)
        assert echoscu(port).returncode == 0  # READY came once the port was open
        wait(lambda: drain().count("WATCHDOG=1") >= 3, timeout=10)
        bad = marked(films[0], tmp_path / "bad.dcm", "1.2.826.0.1.77.9", HANG)
        assert storescu(port, bad).returncode == 0
        wait(lambda: any("STATUS=unhealthy: no scoring progress" in m for m in drain()),
             timeout=30)  # fmt: skip
        t_unhealthy = next(t for t, m in said if m.startswith("STATUS=unhealthy"))
        wait(lambda: pacs.reports(), timeout=60)  # quarantined: progress again
        wait(lambda: drain()[-1] == "WATCHDOG=1", timeout=10)
        n_before = len(said)
        node.send_signal(signal.SIGTERM)
        assert node.wait(30) == 0
        drain()
    finally:
        if node.poll() is None:
            os.killpg(node.pid, signal.SIGKILL)
        sock.close()
        pacs.stop()
    assert "STOPPING=1" in [m for _, m in said[n_before:]]
    # while stalled nothing fed the watchdog for longer than its period: systemd would restart
    feeds = [t for t, m in said if m == "WATCHDOG=1"]
    gaps = [b - a for a, b in itertools.pairwise(feeds)]
    assert max(gaps) > 0.6
    assert any(a <= t_unhealthy <= b for a, b in itertools.pairwise(feeds))
    assert "Traceback" not in (node.stderr.read() if node.stderr else "")
