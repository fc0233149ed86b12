"""What ``edgevcf bench`` reports, decided without timing anything: the SingleStream minimums
(full vs quick, totals over rounds), the Offline best batch, the floor under end to end, the
PNG's bars as the table states them, and the README's schema naming the fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgevcf.bench import (
    FULL_MIN_DURATION_S,
    FULL_MIN_QUERIES,
    MIN_ITERATIONS,
    offline,
    single_stream_plan,
)
from edgevcf.latency import interleaved_latency, more_queries, pixel_floor, timed_latency
from edgevcf.report import bench_markdown, latency_bars

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ SingleStream minimums
def test_full_mode_asks_mlperf_minimums() -> None:
    p = single_stream_plan(quick=False, iterations=200)
    assert (p.mode, p.min_queries, p.min_duration_s) == ("full", 1024, 60.0)
    assert (FULL_MIN_QUERIES, FULL_MIN_DURATION_S) == (1024, 60.0)


def test_quick_mode_asks_200_queries_and_no_duration() -> None:
    p = single_stream_plan(quick=True, iterations=None)
    assert (p.mode, p.per_round, p.min_queries, p.min_duration_s) == ("quick", 200, 200, 0.0)
    assert MIN_ITERATIONS == 200


def test_iterations_is_a_floor_per_round_in_both_modes() -> None:
    assert single_stream_plan(True, 500).per_round == 500
    assert single_stream_plan(False, 5000).per_round == 5000  # above 1,024: the user's
    assert single_stream_plan(True, 50).per_round == 200  # never below 200


@pytest.mark.parametrize("rounds", [1, 2, 3, 4, 10])
def test_full_minimums_are_totals_over_rounds(rounds: int) -> None:
    p = single_stream_plan(False, 200, rounds)
    assert p.min_queries >= 1024 and p.per_round >= 200
    assert p.per_round_s * rounds == pytest.approx(60.0)
    assert p.min_queries == p.per_round * rounds


def test_rounds_below_one_are_refused() -> None:
    from edgevcf.errors import ConfigError

    with pytest.raises(ConfigError):
        single_stream_plan(False, 200, 0)


def test_more_queries_meets_both_minimums_whichever_comes_later() -> None:
    assert more_queries([], 200) == 200
    assert more_queries([1.0] * 200, 200) == 0  # quick: the count alone
    assert more_queries([1.0] * 200, 1024, 0.0) == 824  # short of the count
    # 1,024 queries of 1 ms are 1 s: the duration comes later; chunks of at most chunk_s
    assert more_queries([1.0] * 1024, 1024, 60.0) == 10_000
    assert more_queries([1.0] * 1024, 1024, 60.0, chunk_s=100.0) == 61_925  # 5 % past 60 s
    # 1,024 queries of 100 ms are 102 s: the count comes later, and the duration is met
    assert more_queries([100.0] * 1024, 1024, 60.0) == 0
    assert more_queries([100.0] * 500, 1024, 60.0) == 524
    assert more_queries([], 0, 60.0) == 1  # something to estimate from


class _FakeWorker:
    """A worker whose every batch-1 run takes ``ms``: the rules are tested, not the clock."""

    def __init__(self, label: str, ms: float) -> None:
        self.label, self.ms, self.calls, self.warmed = label, ms, 0, 0

    def latency(self, n: int, warmup: int = 0) -> list[float]:
        self.calls += 1
        self.warmed += warmup
        return [self.ms] * n


def test_timed_latency_runs_until_count_and_duration() -> None:
    w: Any = _FakeWorker("a", 2.0)
    ms = timed_latency(w, 1024, 60.0, warmup=7)
    assert len(ms) >= 1024 and sum(ms) / 1e3 >= 60.0
    assert sum(ms) / 1e3 < 60.0 * 1.06  # aimed just past the minimum, not far beyond
    assert w.warmed == 7
    slow: Any = _FakeWorker("b", 80.0)
    assert len(timed_latency(slow, 1024, 60.0)) == 1024 and slow.calls == 1


def test_interleaved_rounds_meet_the_duration_round_by_round() -> None:
    fast: Any = _FakeWorker("fast", 1.0)
    slow: Any = _FakeWorker("slow", 50.0)
    out = interleaved_latency([fast, slow], 4, 256, min_round_s={"fast": 15.0, "slow": 15.0})
    for label in ("fast", "slow"):
        rounds = out[label].rounds
        assert len(rounds) == 4
        assert all(len(r) >= 256 and sum(r) / 1e3 >= 15.0 for r in rounds)
        assert sum(out[label].samples) / 1e3 >= 60.0 and len(out[label].samples) >= 1024


# ------------------------------------------------------------------ Offline
def test_offline_is_the_best_batch_measured() -> None:
    thr = {
        "1": {"images_per_s": 300.0, "batched": True},
        "8": {"images_per_s": 520.0, "batched": True},
        "32": {"images_per_s": 480.0, "batched": False},
    }
    assert offline(thr) == {"batch": 8, "images_per_s": 520.0, "batched": True}
    assert offline({}) is None


# ------------------------------------------------------------------ the floor
def test_floor_reads_the_bytes_and_passes_over_the_pixels_once(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset

    px = (np.arange(64 * 48, dtype=np.uint16) % 4096).reshape(64, 48)
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 64, 48, 16, 12, 11
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = px.tobytes()
    ds.save_as(tmp_path / "film.dcm", enforce_file_format=True)
    call, method = pixel_floor(tmp_path / "film.dcm")
    assert "frombuffer" in method and call() == px.max()
    ds.compress(pydicom.uid.RLELossless)
    ds.save_as(tmp_path / "rle.dcm", enforce_file_format=True)
    call, method = pixel_floor(tmp_path / "rle.dcm")
    assert "decoder (RLE Lossless)" in method and call() == px.max()


def test_floor_of_a_non_dicom_image_is_its_decoder(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.full((8, 8), 77, dtype=np.uint8)).save(tmp_path / "x.png")
    call, method = pixel_floor(tmp_path / "x.png")
    assert "Pillow" in method and call() == 77


# ------------------------------------------------------------------ reports
def _lat(ms: float, note: str = "", e2e: bool = True) -> dict[str, Any]:
    b1 = {"median_ms": ms, "p90_ms": ms, "p99_ms": 1.5 * ms, "min_ms": ms, "mean_ms": ms,
          "n": 200, "queries": 200, "duration_s": ms / 5, "mode": "quick"}  # fmt: skip
    lat: dict[str, Any] = {
        "runtime": "onnxruntime", "precision": "int8", "threads": 2, "batch1": b1,
        "versions": {"onnxruntime": "9.9"}, "throughput": {"1": {"images_per_s": 1e3 / ms,
        "batched": True}}, "offline": {"batch": 1, "images_per_s": 1e3 / ms, "batched": True},
        "cold_start_ms": 50.0, "peak_rss_mb": 100.0,
    }  # fmt: skip
    if e2e:
        lat["floor"] = {"median_ms": 0.4, "method": "read_bytes + np.frombuffer(pixel data) + max"}
        lat["preprocess"] = {"median_ms": 30.0}
        lat["end_to_end"] = {"median_ms": 33.0 + ms}
        lat["end_to_end_ratio"] = (33.0 + ms) / ms
    if note:
        lat["note"] = note
    return lat


def _report() -> dict[str, Any]:
    bundles = [
        {"bundle": "b/ov-int8", "latency": _lat(1.0), "size_bytes": 1e6},
        {"bundle": "b/jetson-int8", "latency": _lat(3.0, note="ORT stand-in"), "size_bytes": 1e6},
        {"bundle": "b/not-measured", "size_bytes": 1e6},
    ]
    base = _lat(6.0, e2e=False)
    base.update(runtime="pytorch-eager", precision="fp32", versions={"torch": "2.9"})
    return {"machine": {"machine": "x86_64", "cpu_count": 2, "edgevcf": "0", "cpu_isa": ["avx2"]},
            "mode": "quick", "bundles": bundles, "baseline_latency": base, "gates": []}  # fmt: skip


def test_png_bars_mark_the_stand_in_and_add_baseline_and_end_to_end() -> None:
    bars = latency_bars(_report())
    assert [(b.label, b.kind) for b in bars] == [
        ("ov-int8", "measured"),
        ("jetson-int8 (stand-in)", "stand-in"),
        ("PyTorch eager FP32 (baseline)", "baseline"),
    ]
    assert bars[0].end_to_end_ms == 34.0 and bars[0].preprocess_ms == 30.0
    assert bars[2].end_to_end_ms is None and bars[2].median_ms == 6.0


def test_png_renders(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from PIL import Image

    from edgevcf.report import bench_png

    bench_png(_report(), tmp_path / "bench.png")
    with Image.open(tmp_path / "bench.png") as im:
        assert im.format == "PNG" and im.size[0] > 1000 and im.size[1] > 500


def test_markdown_states_the_mode_engines_and_the_floor_row_above() -> None:
    md = bench_markdown(_report())
    assert "SingleStream, **quick** mode" in md
    assert "ov-int8: onnxruntime 9.9, threads 2" in md and "torch 2.9" in md
    section = md[md.index("## From DICOM to decision") :].split("\n\n")[1]  # its table
    stages = [line.split("|")[1].strip() for line in section.splitlines()][2:]
    assert stages == [
        "floor: file read + one pass over the pixels",
        "read + preprocess",
        "model (batch-1 median)",
        "end to end (DICOM -> decision)",
        "end to end / model",
    ]
    assert "| 200 | 0.2 | 1.00 |" in md  # queries and duration beside the percentiles
    full = {**_report(), "mode": "full"}
    assert "SingleStream, **full** mode" in bench_markdown(full)


def test_readme_schema_names_the_new_fields() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `bundles[]` |"))
    for field in ("queries", "duration_s", "min_queries", "offline", "floor", "mode"):
        assert field in row, field
    assert "`--quick`" in text and "| `mode` |" in text
