"""Disk full and interrupted runs leave nothing that looks complete (issue 7, section 4).

Real failures, not mocks: the disk filling up is the kernel's file-size limit (``RLIMIT_FSIZE``:
a write past it fails with EFBIG, as on a full disk it fails with ENOSPC), an interruption is
``SIGKILL`` (no clean-up can run). After each: the destination is absent or not a loadable
bundle, and a report is absent or complete and valid JSON; the error is a clean ``Error:`` with
its own exit code (13), not a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from fs_limits import file_size_limit

from edgevcf.bundle import Bundle
from edgevcf.errors import BundleError, OutputError

pytestmark = [
    pytest.mark.requires_onnxruntime,
    pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and signals as on Linux"),
]

_LIMITED_CLI = textwrap.dedent(
    """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    from edgevcf.cli import main
    main(sys.argv[2:])
    """
)


def _cli_with_file_limit(
    limit: int, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``edgevcf ARGS`` in a child whose files may not grow past ``limit`` bytes."""
    return subprocess.run(
        [sys.executable, "-c", _LIMITED_CLI, str(limit), "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def _export_args(tiny: Any, out: Path, target: str = "onnx-cpu") -> list[str]:
    return ["export", "--target", target, "--checkpoint", str(tiny.checkpoint),
            "--calib", str(tiny.manifest), "--out", str(out)]  # fmt: skip


def _assert_no_bundle(parent: Path, name: str) -> None:
    """Nothing at the destination; what SIGKILL left beside it (no clean-up can run) is a
    hidden staging folder, which Bundle.load refuses unless every file of it is complete (a kill
    between the manifest and the rename leaves a whole bundle under the staging name)."""
    assert not (parent / name).exists()
    for left in parent.iterdir():
        assert left.name.startswith(".b.partial-"), f"leftover {left}"
        try:
            loaded = Bundle.load(left)
        except BundleError:
            continue
        assert (left / "manifest.json").is_file() and loaded.manifest["files"]


# ------------------------------------------------------------------ export: disk full
@pytest.mark.parametrize(
    "limit",
    [1 << 20, pytest.param(64 << 10, marks=pytest.mark.slow)],
    ids=["1MiB", "64KiB"],
)
def test_export_with_the_disk_full_leaves_nothing(
    tiny_export: Any, tmp_path: Path, limit: int
) -> None:
    res = _cli_with_file_limit(limit, *_export_args(tiny_export, tmp_path / "b"))
    assert res.returncode == OutputError.exit_code, res.stderr[-2000:]
    assert "Error: cannot write" in res.stderr and "File too large" in res.stderr
    assert "hint: free disk space" in res.stderr
    assert "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == []  # staging folder removed too


# ------------------------------------------------------------------ export: killed
def _kill_export_when(tiny: Any, parent: Path, ready: str, timeout_s: float = 240) -> bool:
    """Start an export, SIGKILL it when its staging folder holds ``ready`` (a glob); whether
    the kill happened before the export finished."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgevcf", "--quiet", *_export_args(tiny, parent / "b")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout_s
    pattern = f".b.partial-*/{ready}" if ready else ".b.partial-*"
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if any(parent.glob(pattern)):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
        code = proc.wait(timeout=60)
    return code == -signal.SIGKILL


@pytest.mark.parametrize(
    "ready",
    [
        pytest.param("*.onnx", marks=pytest.mark.slow),
        pytest.param("", marks=pytest.mark.slow),  # staging folder just made
        pytest.param("golden.npz", marks=pytest.mark.slow),
        pytest.param("manifest.json", marks=pytest.mark.slow),  # the instant before the rename
    ],
    ids=["model-written", "staging-made", "golden-written", "manifest-written"],
)
def test_export_killed_midway_leaves_no_bundle_at_the_destination(
    tiny_export: Any, tmp_path: Path, ready: str
) -> None:
    killed = _kill_export_when(tiny_export, tmp_path, ready)
    if not killed or (tmp_path / "b").exists():
        # finished (or killed just after the rename, which follows the manifest within
        # microseconds): then the destination is the complete bundle
        Bundle.load(tmp_path / "b")
        return
    _assert_no_bundle(tmp_path, "b")


@pytest.mark.slow
def test_export_after_a_killed_one_succeeds(tiny_export: Any, tmp_path: Path) -> None:
    """A leftover staging folder (SIGKILL allows no clean-up) does not block the next export."""
    if not _kill_export_when(tiny_export, tmp_path, "*.onnx"):
        pytest.skip("the export finished before it could be killed")
    res = subprocess.run(
        [sys.executable, "-m", "edgevcf", "--quiet", *_export_args(tiny_export, tmp_path / "b")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    Bundle.load(tmp_path / "b")


# ------------------------------------------------------------------ reports: disk full
@pytest.fixture(scope="module")
def bench_report(export_bundle: Any, tiny_export: Any) -> dict[str, Any]:
    """A real bench report (accuracy of the onnx-cpu bundle on the test split)."""
    from edgevcf.bench import BenchConfig, bench

    _, bundle = export_bundle("onnx-cpu")
    return bench([bundle.path], data=tiny_export.manifest, cfg=BenchConfig(latency=False))


def _report_state(out: Path, names: tuple[str, ...]) -> set[str]:
    """Files in ``out``; the JSON, when present, must parse."""
    present = {p.name for p in out.iterdir()}
    json_name = next(n for n in names if n.endswith(".json"))
    if json_name in present:
        json.loads((out / json_name).read_text())
    return present


def test_bench_report_with_the_disk_full_is_absent(
    bench_report: dict[str, Any], tmp_path: Path
) -> None:
    from edgevcf.report import write_bench

    out = tmp_path / "bench"
    write_bench(bench_report, out)  # a complete earlier run: must not survive a failed one
    names = ("bench.json", "bench.md", "bench.png")
    assert _report_state(out, names) == set(names)
    with file_size_limit(4096), pytest.raises(OutputError, match="File too large") as err:
        write_bench(bench_report, out)
    assert "free disk space" in (err.value.hint or "")
    assert _report_state(out, names) == set()


def test_bench_report_failing_at_its_last_file_leaves_none(
    bench_report: dict[str, Any], tmp_path: Path
) -> None:
    """The JSON is written last; when it fails, the PNG and Markdown of the run go too."""
    from edgevcf.report import write_bench

    out = tmp_path / "bench"
    out.mkdir()
    (out / "bench.json.part").mkdir()  # a real failing write: the temporary name is taken
    with pytest.raises(IsADirectoryError):
        write_bench(bench_report, out)
    assert _report_state(out, ("bench.json", "bench.md", "bench.png")) == {"bench.json.part"}


@pytest.mark.requires_torch
def test_evaluation_report_with_the_disk_full_is_absent(tiny_export: Any, tmp_path: Path) -> None:
    from edgevcf.evaluate import evaluate
    from edgevcf.report import write_evaluation

    res = evaluate(tiny_export.checkpoint, tiny_export.manifest, split="test")
    out = tmp_path / "eval"
    write_evaluation(res, out)
    names = ("metrics.json", "report.md", "roc.png")
    assert _report_state(out, names) == set(names)
    with file_size_limit(4096), pytest.raises(OutputError, match="File too large"):
        write_evaluation(res, out)
    assert _report_state(out, names) == set()


def test_bench_cli_with_the_disk_full(export_bundle: Any, tiny_export: Any, tmp_path: Path) -> None:
    """The preprocessing cache cannot be written either: a warning, then the report fails."""
    _, bundle = export_bundle("onnx-cpu")
    out, cache = tmp_path / "bench", tmp_path / "cache"
    res = _cli_with_file_limit(
        8192, "bench", str(bundle.path), "--data", str(tiny_export.manifest), "--no-latency",
        "--out", str(out), env={"EDGEVCF_CACHE": str(cache)},
    )  # fmt: skip
    assert res.returncode == OutputError.exit_code, res.stderr[-2000:]
    assert "cannot write the preprocessing cache" in res.stderr  # a warning: the run goes on
    assert "Error: cannot write the bench report" in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists() or list(out.iterdir()) == []
    assert [p for p in cache.rglob("*") if p.is_file()] == []  # no partial cache file


def test_damaged_preprocessing_cache_is_recomputed(
    tiny_export: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A truncated cache file (a BadZipFile, which escaped before) is ignored and rebuilt."""
    import logging

    import numpy as np

    from edgevcf.data.manifest import Manifest
    from edgevcf.data.preprocess import Preprocess
    from edgevcf.dataset import load_split

    m, spec = Manifest.load(tiny_export.manifest), Preprocess(input_size=32)
    first = load_split(m, "test", spec, cache_dir=tmp_path)
    (cached,) = tmp_path.glob("*.npz")
    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="edgevcf.dataset"):
        again = load_split(m, "test", spec, cache_dir=tmp_path)
    assert "ignoring damaged cache" in caplog.text
    np.testing.assert_array_equal(again.units, first.units)
    assert load_split(m, "test", spec, cache_dir=tmp_path).units.shape == first.units.shape


@pytest.mark.slow
def test_bench_killed_during_latency_leaves_no_report(export_bundle: Any, tmp_path: Path) -> None:
    """SIGTERM while the latency child runs: no report, and the child does not outlive it."""
    _, bundle = export_bundle("onnx-cpu")
    out = tmp_path / "bench"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgevcf", "--quiet", "bench", str(bundle.path),
         "--iterations", "100000", "--quick", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(8)  # well into the timed runs of the spawned child
    children = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert not out.exists() or list(out.iterdir()) == []
    time.sleep(1)
    assert not [c for c in children if _alive(c)], "latency child left running"


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    kids = [int(c) for c in text.split()]
    return kids + [g for k in kids for g in _children(k)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0


def test_spool_disk_full_leaves_nothing_and_recovers(tmp_path: Path) -> None:
    from edgevcf.serve.spool import Spool

    s = Spool(tmp_path / "spool", reserve_mb=0)
    with file_size_limit(4096), pytest.raises(OutputError, match="cannot store a film"):
        s.put("ab" * 32, b"x" * 100_000)
    assert list((tmp_path / "spool").iterdir()) == []  # no half file under any name
    assert s.put("ab" * 32, b"x" * 100_000).stat().st_size == 100_000  # space is back
