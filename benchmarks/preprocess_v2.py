"""Preprocessing version 2 against version 1: what the network sees, what it decides, how fast.

Version 2 box-reduces a large film in its stored values before the Modality LUT and VOI (the
first step of the antialiased resize, moved ahead of the grey-scale pipeline). Where the
pipeline is linear nothing changes but float rounding; where a window clips, the mean of
clipped values is not the clip of the mean. This measures the consequence on trained models:
each checkpoint (trained with version 1) scores every film of a full-resolution DICOM set read
both ways; reported are the paired ΔAUC (v2 - v1, DeLong, 95 % CI), the decision flips at the
checkpoint's threshold, the difference of the unit images, and read + preprocess time per film.

    python benchmarks/preprocess_v2.py \\
        --data ~/.cache/edgevcf/v2eval/full-p160-s2026/manifest.csv \\
        --checkpoints ~/.cache/edgevcf/exp/runs/l192e8/model.safetensors ...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _units(spec: Any, paths: list[Path]) -> tuple[np.ndarray, list[float]]:
    """Unit images of ``paths`` read and preprocessed as ``spec`` does; ms per film."""
    units, ms = [], []
    for p in paths:
        t = time.perf_counter()
        img, _ = spec.read(p)
        units.append(spec.to_unit(img))
        ms.append((time.perf_counter() - t) * 1e3)
    return np.stack(units), ms


def main() -> None:
    from edgevcf import metrics
    from edgevcf.data.manifest import Manifest
    from edgevcf.machine import machine_info, machine_label
    from edgevcf.models import load_checkpoint, predict

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="manifest of full-resolution films")
    ap.add_argument("--checkpoints", type=Path, nargs="+", required=True)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--name", help="results file stem (default: <machine>-preprocess-v2)")
    a = ap.parse_args()
    m = Manifest.load(a.data)
    studies = list(m.studies)
    paths = [s.resolve(m.root) for s in studies]
    labels = np.array([s.label for s in studies], dtype=bool)
    rows = []
    for ckpt in a.checkpoints:
        model, meta = load_checkpoint(ckpt)
        v1 = dataclasses.replace(meta.preprocess, version=1)
        v2 = dataclasses.replace(meta.preprocess, version=2)
        u1, ms1 = _units(v1, paths)
        u2, ms2 = _units(v2, paths)
        p1, p2 = predict(model, u1, v1), predict(model, u2, v2)
        g = metrics.accuracy_gate(labels, p1, p2, meta.threshold, 0.01, 0.02)
        diff = np.abs(u1.astype(np.float64) - u2)
        rows.append(
            {
                "checkpoint": str(ckpt),
                "arch": meta.arch,
                "input_size": v1.input_size,
                "crop_to_field": v1.crop_to_field,
                "threshold": meta.threshold,
                "auc_v1": metrics.auc_ci(labels, p1).to_dict(),
                "auc_v2": metrics.auc_ci(labels, p2).to_dict(),
                "paired_v2_minus_v1": g.paired.to_dict() if g.paired else None,
                "flips": g.flips.to_dict(),
                "gate_passed": g.passed,
                "max_abs_prob_diff": float(np.abs(p1 - p2).max()),
                "unit_abs_diff": {
                    "mean": float(diff.mean()),
                    "p99": float(np.percentile(diff, 99)),
                    "max": float(diff.max()),
                },
                "read_preprocess_ms": {"v1": float(np.median(ms1)), "v2": float(np.median(ms2))},
            }
        )
        print(json.dumps(rows[-1]["paired_v2_minus_v1"]), rows[-1]["read_preprocess_ms"])
    info = machine_info()
    report = {"machine": info, "data": str(a.data), "films": len(paths),
              "positives": int(labels.sum()), "rows": rows}  # fmt: skip
    from edgevcf.report import write_results

    text = markdown(report)
    write_results(a.results / (a.name or f"{machine_label(info)}-preprocess-v2"), report, text)
    print(text)


def markdown(report: dict[str, Any]) -> str:
    """The table: per checkpoint, AUC both ways, the paired difference, flips, input change."""
    from edgevcf.machine import machine_label

    lines = [
        f"# Preprocessing version 2 vs 1: {machine_label(report['machine'])}",
        "",
        f"{report['films']} full-resolution DICOM films ({report['positives']} fresh), "
        f"`{Path(report['data']).parent.name}`; each checkpoint (trained with version 1) scores "
        "every film read both ways, PyTorch FP32. ΔAUC = v2 - v1, paired DeLong, 95 % CI; flips "
        "at the checkpoint's threshold; |Δunit| = the unit images' absolute difference.",
        "",
        "| checkpoint | arch | AUC v1 | AUC v2 | ΔAUC (95 % CI) | flips | max |Δp| "
        "| |Δunit| mean / p99 / max | read + preprocess ms v1 -> v2 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        d = r["paired_v2_minus_v1"] or {}
        f = r["flips"]
        u = r["unit_abs_diff"]
        lines.append(
            f"| {Path(r['checkpoint']).parent.name} | {r['arch']} ({r['input_size']} px) | "
            f"{r['auc_v1']['auc']:.4f} | {r['auc_v2']['auc']:.4f} | "
            f"{d.get('diff', float('nan')):+.4f} ({d.get('ci_low', float('nan')):+.4f} to "
            f"{d.get('ci_high', float('nan')):+.4f}) | {f['flips']} / {f['n']} | "
            f"{r['max_abs_prob_diff']:.4f} | {u['mean']:.4f} / {u['p99']:.4f} / {u['max']:.3f} | "
            f"{r['read_preprocess_ms']['v1']:.1f} -> {r['read_preprocess_ms']['v2']:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
