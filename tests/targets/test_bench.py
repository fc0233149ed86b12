"""`edgevcf bench` on real bundles: latency statistics, paired accuracy, gates, reports, and the
refusal to evaluate on patients the export saw. (No speed is asserted: timing lives in
benchmarks/, not in tests.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgevcf.bench import BenchConfig, bench, gates
from edgevcf.cli import cli
from edgevcf.errors import CalibrationError
from edgevcf.report import write_bench

pytestmark = [pytest.mark.requires_onnxruntime, pytest.mark.requires_torch]


@pytest.fixture(scope="module")
def report(export_bundle: Any, tiny_export: Any) -> dict[str, Any]:
    _, fp32 = export_bundle("onnx-cpu")
    _, int8 = export_bundle("onnx-cpu", "int8")
    return bench(
        [fp32.path, int8.path],
        data=tiny_export.manifest,
        baseline=tiny_export.checkpoint,
        cfg=BenchConfig(iterations=200, warmup=5, batch_sizes=(1, 4), quick=True),
    )


def test_latency_statistics(report: dict[str, Any]) -> None:
    for e in report["bundles"]:
        lat = e["latency"]
        b1 = lat["batch1"]
        assert b1["n"] >= 200
        assert b1["min_ms"] <= b1["median_ms"] <= b1["p90_ms"] <= b1["p99_ms"]
        # SingleStream as MLPerf reports it: the queries and their duration with the minimums
        assert b1["queries"] == b1["n"] >= b1["min_queries"] == 200
        assert b1["mode"] == "quick" and b1["min_duration_s"] == 0
        assert b1["duration_s"] == pytest.approx(b1["mean_ms"] * b1["n"] / 1e3)
        assert set(lat["throughput"]) == {"1", "4"}
        assert lat["throughput"]["4"]["batched"]  # onnx-cpu exports a dynamic batch
        best = max(lat["throughput"].items(), key=lambda kv: kv[1]["images_per_s"])
        assert lat["offline"]["batch"] == int(best[0])
        assert lat["offline"]["images_per_s"] == best[1]["images_per_s"]
        assert lat["cold_start_ms"] > 0 and lat["peak_rss_mb"] > 0
        assert lat["preprocess"]["n"] == 20 and lat["end_to_end"]["median_ms"] > 0
        assert lat["floor"]["n"] == 20 and "frombuffer" in lat["floor"]["method"]
        assert 0 < lat["floor"]["median_ms"] < lat["preprocess"]["median_ms"]
        assert lat["dicom_shape"][0] > 2000  # a full-size film, not a thumbnail
        assert lat["versions"]["onnxruntime"]
    assert "cpu_count" in report["machine"] and report["mode"] == "quick"


def test_paired_accuracy_against_the_baseline(report: dict[str, Any]) -> None:
    acc = report["accuracy"]
    assert acc["split"] == "test" and acc["n"] > 0
    assert "PyTorch eager" in acc["baseline"]["name"]
    fp32, int8 = acc["bundles"]
    # The FP32 ONNX bundle reproduces PyTorch: same AUC, no flipped decision.
    assert fp32["paired_vs_baseline"]["diff"] == pytest.approx(0.0, abs=1e-9)
    assert fp32["flips"]["flips"] == 0
    assert int8["paired_vs_baseline"]["ci_low"] <= int8["paired_vs_baseline"]["ci_high"]
    assert isinstance(int8["non_inferior"], bool)
    assert set(acc["roc"]) == {fp32["bundle"], int8["bundle"], "baseline"}
    g = {x["bundle"]: x for x in report["gates"]}
    assert g[fp32["bundle"]]["auc_non_inferior"] is True
    assert report["passed"] == all(x["passed"] is not False for x in report["gates"])


def test_reports_written(report: dict[str, Any], tmp_path: Path) -> None:
    paths = write_bench(report, tmp_path)
    assert json.loads(paths["json"].read_text())["schema_version"] == 1
    md = paths["markdown"].read_text()
    assert "| bundle | engine |" in md and "## Gates" in md and "ΔAUC" in md
    assert "**quick** mode" in md and "offline img/s (best batch)" in md
    assert "| floor: file read + one pass over the pixels |" in md and "end to end / model" in md
    assert "Engines and threads per row:" in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("split", ["val", "train"])
def test_refuses_patients_the_export_saw(export_bundle: Any, tiny_export: Any, split: str) -> None:
    """val tuned the bundle and train calibrated it: neither may confirm it."""
    _, int8 = export_bundle("onnx-cpu", "int8")
    with pytest.raises(CalibrationError, match="shares patients"):
        bench(
            [int8.path],
            data=tiny_export.manifest,
            cfg=BenchConfig(split=split, latency=False),
        )


def test_gates_logic() -> None:
    rep = {
        "bundles": [
            {"bundle": "a", "latency_budget_ms": 10.0, "latency": {"batch1": {"median_ms": 12}}},
            {"bundle": "b", "latency_budget_ms": 10.0, "latency": {"batch1": {"median_ms": 5}}},
            {"bundle": "c", "latency_budget_ms": 10.0},
        ],
        "accuracy": {
            "bundles": [
                {"bundle": "a", "non_inferior": True, "flip_ok": True},
                {"bundle": "b", "non_inferior": False, "flip_ok": True},
            ]
        },
    }
    g = {x["bundle"]: x for x in gates(rep)}
    assert (g["a"]["latency_ok"], g["a"]["passed"]) == (False, False)
    assert (g["b"]["auc_non_inferior"], g["b"]["passed"]) == (False, False)
    assert g["c"]["passed"] is None


def test_cli_json_and_exit_code(export_bundle: Any, tiny_export: Any, tmp_path: Path) -> None:
    _, fp32 = export_bundle("onnx-cpu")
    res = CliRunner().invoke(
        cli,
        ["--quiet", "bench", str(fp32.path), "--data", str(tiny_export.manifest),
         "--baseline", str(tiny_export.checkpoint), "--no-latency", "--json",
         "--out", str(tmp_path / "out")],
    )  # fmt: skip
    assert res.exit_code in (0, 4), res.output
    rep = json.loads(res.stdout)
    assert (res.exit_code == 4) == (rep["passed"] is False)
    assert (tmp_path / "out" / "bench.md").is_file()


def test_interleaved_rounds(export_bundle: Any, tiny_export: Any) -> None:
    """--rounds 2: the bundle and the PyTorch baseline on live workers, batch-1 latency in two
    interleaved rounds; the usual fields stay and the per-round medians are added."""
    _, fp32 = export_bundle("onnx-cpu")
    res = CliRunner().invoke(
        cli,
        ["--quiet", "bench", str(fp32.path), "--baseline", str(tiny_export.checkpoint),
         "--rounds", "2", "--iterations", "200", "--quick", "--json"],
    )  # fmt: skip
    assert res.exit_code in (0, 4), res.output
    rep = json.loads(res.stdout)
    lat = rep["bundles"][0]["latency"]
    b1 = lat["batch1"]
    assert b1["n"] == b1["queries"] == 400 and len(b1["round_medians_ms"]) == 2
    assert b1["min_queries"] == 400 and rep["mode"] == "quick"
    assert b1["min_ms"] <= min(b1["round_medians_ms"]) <= max(b1["round_medians_ms"])
    assert {"median_ms", "p90_ms", "p99_ms", "mean_ms"} <= set(b1)
    assert lat["cold_start_ms"] > 0 and lat["load_ms"] > 0 and lat["peak_rss_mb"] > 0
    assert lat["throughput"] and lat["versions"]["onnxruntime"]
    assert lat["preprocess"]["n"] == 20 and lat["end_to_end_ratio"] > 0 and lat["dicom_shape"]
    base = rep["baseline_latency"]
    assert base["runtime"] == "pytorch-eager" and len(base["batch1"]["round_medians_ms"]) == 2
    from edgevcf.report import bench_markdown

    assert "2 interleaved rounds" in bench_markdown(rep)


def test_unreadable_images_are_counted_and_listed(
    export_bundle: Any, tiny_export: Any, tmp_path: Path
) -> None:
    from edgevcf.data.manifest import Manifest, Study

    _, fp32 = export_bundle("onnx-cpu")
    m = Manifest.load(tiny_export.manifest)
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"DICM" * 10)
    studies = [
        Study(str(s.resolve(m.root)), s.patient_id, s.label, s.split, s.extra) for s in m.studies
    ]
    path = Manifest([*studies, Study(str(bad), "NEW-PATIENT", 1, "test")], tmp_path).save(
        tmp_path / "m.csv"
    )
    rep = bench([fp32.path], data=path, cfg=BenchConfig(latency=False))
    assert rep["accuracy"]["skipped"][0]["file"] == "broken.dcm"
    assert rep["accuracy"]["n"] == len(m.by_split("test").studies)
    from edgevcf.report import bench_markdown

    assert "broken.dcm" in bench_markdown(rep)


def test_peak_rss_is_the_child_own() -> None:
    """A child spawned by a big parent reports its own peak, not the parent's."""
    import numpy as np

    from edgevcf.latency import peak_rss_mb

    big = np.ones(400_000_000 // 8)  # the parent now peaks above 400 MB
    big[::4096] = 2.0
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(1) as pool:
        child = pool.apply(peak_rss_mb)
    assert child < 300 < peak_rss_mb()
