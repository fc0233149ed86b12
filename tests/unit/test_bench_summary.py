"""The bench's summary in words: what passed, how fast (ratios from the same run), what missed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgevcf.report import bench_summary, films_to_decide, inconclusive_hint

TOL = {"max_auc_drop": 0.01, "max_flip_rate": 0.02}


def _bundle(name: str, target: str, precision: str, ms: float, note: str = "") -> dict[str, Any]:
    lat: dict[str, Any] = {"runtime": "rt", "batch1": {"median_ms": ms}}
    if note:
        lat["note"] = note
    return {"bundle": name, "target": target, "precision": precision, "latency": lat,
            "latency_budget_ms": 1.0}  # fmt: skip


def _row(name: str, diff: float, low: float, flips: int) -> dict[str, Any]:
    return {
        "bundle": name,
        "tolerance": TOL,
        "paired_vs_baseline": {"diff": diff, "ci_low": low, "ci_high": diff + 0.005},
        "flips": {"flips": flips, "n": 400, "flip_rate": {"value": flips / 400}},
    }


def _report() -> dict[str, Any]:
    bundles = [
        _bundle("b/onnx-fp32", "onnx", "fp32", 0.5),
        _bundle("b/ov-int8", "openvino", "int8", 0.4),
        _bundle("b/ort-int8", "onnx", "int8", 0.8),
        _bundle("b/jetson", "jetson", "int8", 2.0, note="ORT stand-in"),
        _bundle("b/slow-int8", "mobile", "int8", 1.5),
    ]
    gates = [
        {"bundle": "b/onnx-fp32", "auc_non_inferior": True, "flip_rate_ok": True,
         "latency_ok": True, "passed": True},
        {"bundle": "b/ov-int8", "auc_non_inferior": False, "flip_rate_ok": False,
         "latency_ok": True, "passed": False},
        {"bundle": "b/ort-int8", "auc_non_inferior": True, "flip_rate_ok": True,
         "latency_ok": True, "passed": True},
        {"bundle": "b/jetson", "auc_non_inferior": True, "flip_rate_ok": True,
         "latency_ok": None, "passed": True},
        {"bundle": "b/slow-int8", "auc_non_inferior": True, "flip_rate_ok": True,
         "latency_ok": False, "passed": False},
    ]  # fmt: skip
    rows = [
        _row("b/onnx-fp32", 0.0, 0.0, 0),
        _row("b/ov-int8", -0.0048, -0.0103, 9),
        _row("b/ort-int8", -0.0005, -0.0036, 4),
        _row("b/jetson", -0.0002, -0.003, 2),
        _row("b/slow-int8", 0.0, -0.002, 1),
    ]
    return {
        "bundles": bundles,
        "gates": gates,
        "baseline_latency": {"batch1": {"median_ms": 3.0}},
        "accuracy": {
            "split": "test", "n": 400, "n_pos": 180, "patients": 300, "bundles": rows,
            "baseline": {"auc": {"auc": 0.91, "ci_low": 0.88, "ci_high": 0.94}},
        },
    }  # fmt: skip


def test_summary_names_the_fastest_passing_bundle_and_every_miss() -> None:
    text = "\n".join(bench_summary(_report()))
    assert "400 images of 300 patients" in text
    assert "AUC 0.910 (95 % CI 0.880-0.940)" in text
    # the stand-in's latency is no claim: the fastest passing one with a real latency is FP32
    assert "Fastest bundle that passed every gate: onnx-fp32" in text
    assert "6.0x PyTorch eager FP32 (3.00 ms)" in text
    assert "Fastest INT8 bundle that passed: ort-int8, 0.80 ms" in text
    assert "slower than onnx-fp32 (0.62x)" in text
    assert "4 of 400 decisions flipped (1.0 %; limit 2.0 %)" in text
    assert (
        "Missed: ov-int8: ΔAUC -0.0048, CI lower bound -0.0103 is below the -0.01 "
        "non-inferiority margin; 9 of 400 decisions flipped (2.2 %, limit 2.0 %)." in text
    )
    assert "Missed: slow-int8: median latency 1.50 ms over its 1 ms budget." in text
    assert "Note: jetson: ORT stand-in." in text


def test_an_int8_winner_is_compared_with_ort_fp32() -> None:
    r = _report()
    r["gates"][1].update(auc_non_inferior=True, flip_rate_ok=True, passed=True)
    text = "\n".join(bench_summary(r))
    assert "passed every gate: ov-int8 (int8 on rt), 0.40 ms per image: " in text
    assert "7.5x PyTorch eager FP32 (3.00 ms) and 1.25x ONNX Runtime FP32 (0.50 ms)" in text
    assert "Fastest INT8" not in text  # the winner is INT8 already
    assert "Missed: ov-int8" not in text


def test_nothing_passing_is_said() -> None:
    r = _report()
    for g in r["gates"]:
        g["passed"] = False
    assert "No bundle passed every gate with a latency measured here." in bench_summary(r)


def test_benchmark_results_are_written_as_a_pair(tmp_path: Path) -> None:
    """``STEM.md`` and ``STEM.json`` together (the JSON last), for the scripts in benchmarks/."""
    import json

    from edgevcf.report import write_results

    paths = write_results(tmp_path / "results" / "m-e2e", {"a": 1.5}, "# table\n")
    assert paths["markdown"].read_text() == "# table\n"
    assert json.loads(paths["json"].read_text()) == {"a": 1.5}
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["m-e2e.json", "m-e2e.md"]


def test_a_miss_inside_the_margin_is_called_inconclusive_with_the_films_that_would_decide() -> None:
    r = _report()
    r["accuracy"]["bundles"][1]["gate"] = {
        "films_needed": {"auc": 1900},
        "failed": ["auc", "flips"],
    }
    text = "\n".join(bench_summary(r))
    assert (
        "Missed: ov-int8: ΔAUC -0.0048, CI lower bound -0.0103 is below the -0.01 "
        "non-inferiority margin (inconclusive: the point estimate is inside the margin; about "
        "1,900 films of this mix would show non-inferiority at this Δ)" in text
    )
    assert inconclusive_hint(r) is None  # the flip rate failed too: not inconclusive alone
    r["accuracy"]["bundles"][1]["gate"]["failed"] = ["auc"]
    assert inconclusive_hint(r) == (
        "inconclusive, not shown worse (the CI spans the margin): ov-int8 would need a split of "
        "about 1,900 films"
    )
    assert inconclusive_hint(_report()) is None
    assert (
        films_to_decide(
            {"failed": ["auc", "sensitivity"], "films_needed": {"auc": 9, "sensitivity": 12}}
        )
        == 12
    )
    assert films_to_decide({"failed": [], "films_needed": {}}) is None
