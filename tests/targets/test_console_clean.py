"""A user's console holds edgevcf's steps, progress, warnings and results — no toolchain chatter.

ONNX Runtime's quantiser, NNCF, litert-torch (TensorFlow/absl, JAX) and torch print through
Python logging, warnings and straight to file descriptors 1 and 2. Run as a user runs them (a
child process with real file descriptors), ``edgevcf export`` and ``edgevcf demo`` must show
none of it, and keep it in their log file instead; ``--verbose`` shows it again.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgevcf import deps

pytestmark = [pytest.mark.requires_onnxruntime, pytest.mark.requires_torch]

# What the toolchains were seen printing (absl/glog "I0000 00:00:..." lines, TensorFlow's oneDNN
# and XNNPACK notices, torch's CUDA probe, JAX's lowering and libtpu lines, ORT's quantiser, any
# Python logging record or warning of a logger that is not edgevcf's).
CHATTER = re.compile(
    r"^[IWEF]\d{4} \d\d:\d\d:\d\d|oneDNN custom operations|XNNPACK|No CUDA runtime|JAX lowering"
    r"|libtpu|absl::|Converting models with optimization style|TensorFlow|"
    r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)[: ](?!edgevcf)|\w+Warning: ",
    re.MULTILINE,
)


def _edgevcf(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.run(
        [sys.executable, "-m", "edgevcf", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,  # the session's cache (EDGEVCF_CACHE): the bench's sample DICOM is shared
    )


def _chatter(text: str) -> list[str]:
    return [line for line in text.splitlines() if CHATTER.search(line)]


@pytest.mark.requires_litert
def test_export_console_is_clean_and_the_log_has_the_rest(tiny_export: Any, tmp_path: Path) -> None:
    if deps.missing("litert_torch"):
        pytest.skip("needs litert-torch for the .tflite (the noisiest toolchain)")
    out = tmp_path / "bundles"
    proc = _edgevcf(
        "export", "--target", "mobile,onnx-cpu", "--precision", "int8",
        "--checkpoint", str(tiny_export.checkpoint), "--calib", str(tiny_export.manifest),
        "--samples", "32", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode in (0, 4), proc.stderr[-3000:]  # 4: a tiny model may miss its gate
    console = proc.stdout + proc.stderr
    assert _chatter(console) == []
    assert "| mobile-arm | int8 |" in proc.stdout  # the result is still there
    log = (out / "edgevcf.log").read_text()
    assert _chatter(log)  # the chatter went somewhere a developer can read it


def test_demo_console_is_clean(tmp_path: Path) -> None:
    if deps.missing("scipy", "openvino", "nncf"):
        pytest.skip("needs scipy, openvino and nncf")
    out = tmp_path / "demo"
    proc = _edgevcf("demo", "--quick", "--patients", "40", "--epochs", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _chatter(proc.stdout + proc.stderr) == []
    assert "What this run showed:" in proc.stdout
    assert "quick smoke run" in proc.stdout  # the quick run says its numbers are not the claim
    assert (out / "edgevcf.log").is_file()
