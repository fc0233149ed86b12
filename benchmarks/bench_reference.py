"""The full benchmark table: three study backbones x every runtime, measured side by side.

Rows per backbone: PyTorch eager FP32 (what a user would otherwise run), onnx-cpu FP32 / INT8,
OpenVINO FP32 / BF16 / INT8 / INT8 accuracy-aware, mobile ONNX INT8, mobile .tflite INT8 and the
jetson Q/DQ model in ONNX Runtime (a CPU stand-in for the TensorRT engine: its accuracy is the
engine's, its latency is not a Jetson's). BF16 is the ``intel-cpu-bf16`` bundle (the FP32 IR
compiled in bf16, exported only on a CPU with BF16), ``openvino-auto`` the bundle
``--precision auto`` chose on this machine (its manifest records every candidate), and the
``+bf16`` rows the INT8 IRs compiled with the float remainder in BF16 (rows only where the CPU
has BF16).

How it measures, and why (the harness is ``edgevcf.latency``, as for ``edgevcf bench --rounds``):
- every row runs in its own process (its own runtime, thread pool and peak memory), all alive
  at once; latency is taken in *interleaved rounds* (each round times every row in a shuffled
  order), so a slow phase of the machine hits all rows alike and the speed-up ratios — measured in
  the same run — stay honest on a noisy 2-core VM. The table gives the median over all rounds and
  the spread of the per-round medians;
- batch-1 latency on a real preprocessed radiograph (the bundle's golden input), p99 from the same
  samples, throughput at batch 8, cold start (bundle load incl. checksum verification -> first
  result), end to end on a full-size 16-bit DICOM (read, preprocess, infer, decide);
- accuracy on the untouched test split against PyTorch eager FP32 on the same cases: AUC with
  DeLong CI, paired ΔAUC with CI, decision flips at the bundled threshold, and the profile's gate
  (``edgevcf.metrics.gate_for``: ΔAUC, Δsensitivity and Δspecificity non-inferior, the flip rate
  not shown above its limit).

    .venv/bin/python benchmarks/bench_reference.py                 # all backbones, 2 repeats
    .venv/bin/python benchmarks/bench_reference.py --archs mobilenet_v3_large@384 --repeats 1

Bundles come from ``benchmarks/export_reference.py`` (ARCH@SIZE rows from its --input-size);
results go to ``benchmarks/results/<machine>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from edgevcf.latency import BundleRow, Row, TorchRow, Worker, interleaved_latency
from edgevcf.machine import machine_label
from edgevcf.report import gate_cell, operating_point_cell

# Only light imports at module level: spawned workers re-import this file.

# (label, bundle folder under bundles/<arch>/, backend or artefact, extra backend options)
ROWS: list[tuple[str, str | None, str, dict[str, Any]]] = [
    ("pytorch-fp32", None, "torch", {}),
    ("onnx-cpu-fp32", "onnx-cpu-fp32", "auto", {}),
    ("onnx-cpu-int8", "onnx-cpu-int8", "auto", {}),
    ("openvino-fp32", "openvino-fp32", "auto", {}),
    ("openvino-bf16", "openvino-bf16", "auto", {}),
    ("openvino-int8", "openvino-int8", "auto", {}),
    ("openvino-int8-aa", "openvino-int8-aa", "auto", {}),
    ("openvino-qat", "openvino-qat", "auto", {}),
    ("openvino-auto", "openvino-auto", "auto", {}),
    # the INT8 IRs with what NNCF left float computed in BF16 (OpenVINO's own default on AMX
    # Xeons; our bundles pin f32): a compile setting the export did not validate, so the test
    # split's gate below is its only judge
    ("openvino-int8+bf16", "openvino-int8", "auto", {"inference_precision": "bf16"}),
    ("openvino-int8-aa+bf16", "openvino-int8-aa", "auto", {"inference_precision": "bf16"}),
    ("openvino-qat+bf16", "openvino-qat", "auto", {"inference_precision": "bf16"}),
    ("mobile-onnx-int8", "mobile-int8", "model", {}),
    ("mobile-tflite-int8", "mobile-int8", "tflite", {}),
    ("jetson-qdq-int8 (ORT stand-in)", "jetson-int8", "auto", {}),
]
BASELINE = "pytorch-fp32"
NAIVE = "onnx-cpu-fp32"


# ------------------------------------------------------------------ one backbone
def has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes BF16 here (else a ``+bf16`` row is its f32 twin)."""
    try:
        from edgevcf.targets.openvino import cpu_capabilities

        return "BF16" in cpu_capabilities()
    except Exception:  # no OpenVINO: its rows are missing anyway
        return False


def split_inputs(bundle_dirs: list[Path], data: Path, tmp: Path) -> tuple[Path, np.ndarray, Any]:
    """The test split in the bundles' graph form (one file, memory-mapped by every worker)."""
    from edgevcf.bench import check_disjoint
    from edgevcf.bundle import Bundle
    from edgevcf.data.manifest import Manifest
    from edgevcf.dataset import load_split

    bundles = [Bundle.load(d) for d in bundle_dirs]
    specs = {
        (b.preprocess.to_json(), b.manifest["input"]["kind"], *b.manifest["input"]["shape"][1:])
        for b in bundles
    }
    if len(specs) != 1:
        raise SystemExit("bundles of one backbone differ in preprocessing or input form")
    manifest = Manifest.load(data)
    split = load_split(manifest, "test", bundles[0].preprocess, desc="preprocess test")
    patients = sorted({s.patient_id for s in split.studies})
    for b in bundles:
        check_disjoint(b, patients, "test")
    x = bundles[0].input.prepare(split.units, bundles[0].preprocess)
    path = tmp / "test.npy"
    np.save(path, x)
    return path, split.labels, bundles[0]


def bench_arch(
    arch: str, root: Path, data: Path, dicom: Path | None, args: argparse.Namespace
) -> dict[str, Any]:
    """Every row of one backbone (``ARCH`` or ``ARCH@SIZE``): latency rounds, then accuracy."""
    from edgevcf import metrics

    base_arch = arch.partition("@")[0]
    ckpt = root / "runs" / base_arch / "model.safetensors"
    rows = [r for r in ROWS if r[1] is None or (root / "bundles" / arch / r[1]).is_dir()]
    if not has_bf16():
        rows = [r for r in rows if r[3].get("inference_precision") != "bf16"]
    if args.rows:
        rows = [r for r in rows if r[0] in args.rows or r[0] == BASELINE]
    missing = [r[0] for r in ROWS if r not in rows and (not args.rows or r[0] in args.rows)]
    out: dict[str, Any] = {"arch": arch, "rows": {}, "missing": missing}
    with tempfile.TemporaryDirectory(prefix="edgevcf-bench-") as td, ExitStack() as stack:
        tmp = Path(td)
        dirs = sorted({root / "bundles" / arch / r[1] for r in rows if r[1]})
        x_path, labels, ref = split_inputs(dirs, data, tmp)
        workers: dict[str, Worker] = {}
        for label, folder, backend, options in rows:
            spec: Row
            if folder is None:
                spec = TorchRow(ckpt, dirs[0], threads=args.threads)
            else:
                folder_path = root / "bundles" / arch / folder
                spec = BundleRow(folder_path, backend, dict(options), threads=args.threads)
            print(f"  {arch}: load {label}", flush=True)
            workers[label] = stack.enter_context(Worker(label, spec))
            out["rows"][label] = {"info": workers[label].info}
        samples = interleaved_latency(
            list(workers.values()),
            args.rounds,
            args.iterations,
            warmup=args.warmup,
            seed=args.seed,
            on_round=lambda r: print(f"  {arch}: latency round {r + 1}/{args.rounds}", flush=True),
        )
        for label, w in workers.items():
            out["rows"][label]["throughput"] = [
                w.throughput(args.batch, args.throughput_reps)["images_per_s"] for _ in range(2)
            ]
        if dicom is not None:
            for label, w in workers.items():
                out["rows"][label]["e2e"] = w.end_to_end(dicom, args.e2e)
        probs = {label: w.probs(x_path) for label, w in workers.items()}
        for label, w in workers.items():
            out["rows"][label]["peak_rss_mb"] = w.close()
    base = probs[BASELINE]
    thr = ref.threshold
    tol = ref.manifest["profile"]["tolerance"]
    for label, row in out["rows"].items():
        all_ms = samples[label].samples
        per_round = samples[label].round_medians_ms
        row["latency"] = {
            "median_ms": float(np.median(all_ms)),
            "p99_ms": float(np.percentile(all_ms, 99)),
            "round_medians_ms": per_round,
            "n": len(all_ms),
        }
        row["throughput_ips"] = max(row.pop("throughput"))
        if "e2e" in row:
            e = row.pop("e2e")
            row["floor_ms"] = float(np.median(e["floor"]))
            row["floor_method"] = e.get("floor_method")
            row["preprocess_ms"] = float(np.median(e["preprocess"]))
            row["end_to_end_ms"] = float(np.median(e["end_to_end"]))
            row["end_to_end_status"] = e["status"]
        p = probs[label]
        row["auc"] = metrics.auc_ci(labels, p).to_dict()
        row["at_threshold"] = metrics.binary_metrics(labels, p, thr).to_dict()
        if label != BASELINE:
            g = metrics.gate_for(tol, labels, base, p, thr)
            row["paired"] = g.paired.to_dict() if g.paired else None
            row["flip_rate"] = g.flips.flip_rate.value
            row["gate"] = bool(g.passed)
            row["gate_detail"] = g.to_dict()
    b_ms = out["rows"][BASELINE]["latency"]["median_ms"]
    n_ms = out["rows"].get(NAIVE, {}).get("latency", {}).get("median_ms")
    for row in out["rows"].values():
        ms = row["latency"]["median_ms"]
        row["speedup_vs_pytorch"] = b_ms / ms
        row["speedup_vs_onnx_fp32"] = n_ms / ms if n_ms else None
        # the same ratio within each round (rows timed side by side): its spread is the noise
        rb = out["rows"][BASELINE]["latency"]["round_medians_ms"]
        row["speedup_vs_pytorch_rounds"] = [
            b / m for b, m in zip(rb, row["latency"]["round_medians_ms"], strict=True)
        ]
    out["n_test"] = len(labels)
    out["n_pos"] = int(labels.sum())
    out["threshold"] = thr
    out["input_size"] = ref.preprocess.input_size
    return out


# ------------------------------------------------------------------ report
def _fmt_ci(d: dict[str, Any]) -> str:
    return f"{d['diff']:+.4f} ({d['ci_low']:+.4f}, {d['ci_high']:+.4f})"


def with_films_needed(row: dict[str, Any], arch: dict[str, Any]) -> dict[str, Any] | None:
    """The row's gate, with ``films_needed`` re-derived when it was stored before the field."""
    from edgevcf.metrics import films_needed

    g = row.get("gate_detail")
    if not g or "films_needed" in g or not row.get("paired"):
        return g
    crit = {"auc": (row["paired"]["diff"], row["paired"]["ci_low"], g["max_auc_drop"])}
    for k in ("sensitivity", "specificity"):
        if g.get(k):
            crit[k] = (g[k]["diff"], g[k]["ci_low"], g[f"max_{k}_drop"])
    need = films_needed(g.get("failed", []), arch["n_pos"], arch["n_test"], crit)
    return {
        **g,
        "films_needed": need,
        "inconclusive": [k for k in g.get("failed", []) if k in need],
    }


def markdown(result: dict[str, Any]) -> str:
    """The table: one block per backbone, medians of each repeat and their spread."""
    runs = result["runs"]
    m = result["machine"]
    lines = [
        f"# Benchmark: {machine_label()} ({m.get('cpu', '?')}"
        + (f", CPU family {m['cpu_family']}" if "cpu_family" in m else "")
        + (f"; {' '.join(m['cpu_isa'])}" if m.get("cpu_isa") else "")
        + ")",
        "",
        f"{m['platform']}; Python {m['python']}; edgevcf {m['edgevcf']}; "
        f"{result['threads']} threads; batch 1 latency over {result['rounds']} interleaved rounds "
        f"x {result['iterations']} runs per row (after {result['warmup']} warm-up), throughput at "
        f"batch {result['batch']}; {len(runs)} repeat(s) of the whole run "
        f"({', '.join(r['created'] for r in runs)}).",
        "",
        "Median / p99: of run 1; `run 2` gives run 2's median and `spread` |run1 - run2| / mean. "
        "Speed-ups are ratios of medians measured in the same run (run 1; run 2 in brackets). "
        "Accuracy: the test split (never seen by training, threshold choice, calibration or "
        "tuning), against PyTorch eager FP32 on the same cases; gate = paired-ΔAUC CI lower "
        "bound > -0.01, paired Δsensitivity and Δspecificity CI lower bounds > -5 points at the "
        "bundled threshold (Δ pt and CI low in the table), and the flip rate not shown above 2 % "
        "(its CI low <= 2 %); a failed gate names the criteria (`inconclusive`: its point "
        "estimate is inside the margin, a larger split could decide it). End to end = full-size "
        "16-bit DICOM read + preprocess + infer + decide (median); ratio = end to end / batch-1 "
        "model median.",
    ]
    for arch in runs[0]["archs"]:
        a1 = runs[0]["archs"][arch]
        a2 = runs[1]["archs"].get(arch) if len(runs) > 1 else None
        lines += [
            "",
            f"## {arch} ({a1['input_size']} px; test n={a1['n_test']}, {a1['n_pos']} fresh)",
            "",
            *(
                [
                    f"The {arch.partition('@')[0]} checkpoint (trained at its own size) exported "
                    f"at {a1['input_size']} px: the latency shows how cost grows with resolution; "
                    "the accuracy is that of a network run at a size it was not trained for.",
                    "",
                ]
                if "@" in arch
                else []
            ),
            "| row | median ms | p99 ms | run 2 ms | spread | img/s @8 | x PyTorch | x ORT FP32 "
            "| MB | AUC (95 % CI) | ΔAUC (95 % CI) | Δsens / Δspec pt (CI low) | flip % | gate "
            "| cold ms | e2e ms (ratio) | RSS MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, r in a1["rows"].items():
            lat = r["latency"]
            r2 = a2["rows"].get(label) if a2 else None
            m2 = r2["latency"]["median_ms"] if r2 else None
            spread = (
                f"{abs(lat['median_ms'] - m2) / ((lat['median_ms'] + m2) / 2) * 100:.0f} %"
                if m2
                else "-"
            )
            sp = f"{r['speedup_vs_pytorch']:.2f}"
            if r2:
                sp += f" [{r2['speedup_vs_pytorch']:.2f}]"
            so = "-"
            if r.get("speedup_vs_onnx_fp32"):
                so = f"{r['speedup_vs_onnx_fp32']:.2f}"
                if r2 and r2.get("speedup_vs_onnx_fp32"):
                    so += f" [{r2['speedup_vs_onnx_fp32']:.2f}]"
            auc = r["auc"]
            size = r["info"].get("size_bytes")
            e2e = "-"
            if "end_to_end_ms" in r:
                e2e = f"{r['end_to_end_ms']:.1f} ({r['end_to_end_ms'] / lat['median_ms']:.1f}x)"
            detail = with_films_needed(r, a1)
            gate, point = gate_cell(r.get("gate"), detail, "ref"), operating_point_cell(detail)
            flips = f"{100 * r['flip_rate']:.1f}" if "flip_rate" in r else "-"
            lines.append(
                f"| {label} | {lat['median_ms']:.2f} | {lat['p99_ms']:.2f} | "
                f"{f'{m2:.2f}' if m2 else '-'} | {spread} | {r['throughput_ips']:.0f} | "
                f"{sp} | {so} | "
                f"{f'{size / 1e6:.2f}' if size else '-'} | "
                f"{auc['auc']:.3f} ({auc['ci_low']:.3f}-{auc['ci_high']:.3f}) | "
                f"{_fmt_ci(r['paired']) if 'paired' in r else '-'} | {point} | "
                f"{flips} | "
                f"{gate} | {r['info']['cold_start_ms']:.0f} | {e2e} | {r['peak_rss_mb']:.0f} |"
            )
        open_ = {
            label: need
            for label, r in a1["rows"].items()
            if (need := (with_films_needed(r, a1) or {}).get("films_needed"))
        }
        if open_:
            lines.append(
                "\nInconclusive on this split (the point estimate inside the margin), about the "
                "films of this mix that would decide it at the measured Δ: "
                + "; ".join(
                    f"{label} {', '.join(f'{k} {v:,}' for k, v in need.items())}"
                    for label, need in open_.items()
                )
                + "."
            )
        if a1["missing"]:
            lines.append(f"\nNot run (no bundle): {', '.join(a1['missing'])}.")
        if "preprocess_ms" in next(iter(a1["rows"].values())):
            pre = statistics.median(r["preprocess_ms"] for r in a1["rows"].values())
            if "floor_ms" in next(iter(a1["rows"].values())):
                floor = statistics.median(r["floor_ms"] for r in a1["rows"].values())
                how = next(iter(a1["rows"].values())).get("floor_method") or ""
                how = f": {how}" if how else ""
                lines.append(
                    f"\nFloor (file read + one pass over the pixels{how}): {floor:.1f} ms "
                    "(median over rows)."
                )
            lines.append(f"\nDICOM read + preprocess alone: {pre:.1f} ms (median over rows).")
            status = sorted(
                {s for r in a1["rows"].values() for s in r.get("end_to_end_status", [])}
            )
            if status:
                lines.append(f"End-to-end prediction status: {'; '.join(status)}.")
    return "\n".join(lines) + "\n"


def save_json(stem: Path, result: dict[str, Any]) -> None:
    """``stem.json``, its folder made."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1, default=float) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--archs", nargs="+", default=None, help="default: every folder under bundles/")
    ap.add_argument("--rows", nargs="+", default=None, help="only these rows (+ the baseline)")
    ap.add_argument("--repeats", type=int, default=2, help="whole runs, for the spread")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=60, help="timed runs per row per round")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--throughput-reps", type=int, default=15)
    ap.add_argument("--e2e", type=int, default=15, help="end-to-end DICOM runs per row (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--name", default=None, help="results file stem (default: the machine name)")
    ap.add_argument("--from-json", action="store_true", help="only re-write the .md from the .json")
    args = ap.parse_args()
    stem = args.results / (args.name or machine_label())
    if args.from_json:
        stem.with_suffix(".md").write_text(
            markdown(json.loads(stem.with_suffix(".json").read_text()))
        )
        return

    from edgevcf import progress
    from edgevcf.bench import sample_dicom
    from edgevcf.dataset import cache_root
    from edgevcf.machine import machine_info

    progress.set_enabled(False)
    root = args.root or cache_root() / "reference"
    data = next(root.glob("synth-*/manifest.csv"), None)
    if data is None:
        raise SystemExit(f"no reference dataset under {root}: run train_reference.py")
    archs = args.archs or sorted(
        (p.name for p in (root / "bundles").iterdir() if p.is_dir()),
        key=lambda a: ("@" in a, a),
    )
    dicom = sample_dicom() if args.e2e else None
    result: dict[str, Any] = {
        "machine": machine_info(),
        "threads": args.threads,
        "rounds": args.rounds,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "batch": args.batch,
        "dicom": str(dicom) if dicom else None,
        "runs": [],
    }
    for rep in range(args.repeats):
        run: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "archs": {}}
        result["runs"].append(run)
        for arch in archs:
            t = time.perf_counter()
            print(f"repeat {rep + 1}/{args.repeats}: {arch}", flush=True)
            run["archs"][arch] = bench_arch(arch, root, data, dicom, args)
            run["archs"][arch]["seconds"] = time.perf_counter() - t
            save_json(stem, result)  # after every backbone: a long run keeps what it measured
        stem.with_suffix(".md").write_text(markdown(result))
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
