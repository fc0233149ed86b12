"""Accuracy of every reference bundle on a larger independent set: is a failed test-split gate
the quantisation, or the split's power?

The test split of the reference dataset has 306 films (134 fresh): its paired ΔAUC CI is about
±0.009 wide, so against a margin of 0.01 a bundle passes only if it loses almost nothing (the
gate asks the CI's *lower* bound to stay above -0.01). A bundle losing a true 0.004 fails such a
split about as often as not. This script generates a further synthetic set from another seed
(the same generator settings as the reference dataset: fast mode, difficulty 0; its patients
were never seen by training, calibration, threshold choice or tuning), scores every bundle and
the PyTorch FP32 checkpoint on all of its films, and applies the same gate
(``edgevcf.metrics.gate_for`` at each bundle's own tolerance). No latency here; that is
``bench_reference.py``.

The generator numbers patients from P00000 in every seed, so the set's patient ids are prefixed
with its seed (they are other patients; the bundles' disjointness check then compares like with
like).

    .venv/bin/python benchmarks/confirm_reference.py                      # 2,000 patients, seed 7
    .venv/bin/python benchmarks/confirm_reference.py --archs mobilenet_v3_large --patients 1000

Data goes to ``~/.cache/edgevcf/reference/confirm-p<N>-s<seed>/``; results to
``benchmarks/results/<machine>-confirm.{md,json}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from edgevcf.machine import machine_label

# Only light imports at module level: spawned workers re-import this file.


def _rows() -> list[tuple[str, str | None, str, dict[str, Any]]]:
    """bench_reference.py's rows (the ``+bf16`` ones only where the CPU has BF16)."""
    import bench_reference as br

    rows = list(br.ROWS)
    if not br.has_bf16():
        rows = [r for r in rows if r[3].get("inference_precision") != "bf16"]
    return rows


def confirmation_set(root: Path, patients: int, seed: int) -> Path:
    """The independent set (generated once, reused when its settings match), every film in
    split ``test``, patient ids prefixed with the seed."""
    from edgevcf.data.synth import SynthConfig, generate

    out = root / f"confirm-p{patients}-s{seed}"
    marked = out / "manifest.confirm.csv"
    cfg = SynthConfig.fast(difficulty=0.0)
    rec = out / "synth_config.json"
    fresh = not (
        rec.is_file()
        and marked.is_file()
        and json.loads(rec.read_text()).get("config") == json.loads(json.dumps(cfg.to_dict()))
        and json.loads(rec.read_text()).get("patients") == patients
    )
    if fresh:
        src = generate(out, patients, seed=seed, cfg=cfg, workers=os.cpu_count() or 1).manifest
        with open(src, newline="") as f:
            reader = csv.DictReader(f)
            fields = list(reader.fieldnames or [])
            rows = list(reader)
        for r in rows:
            r["patient_id"] = f"s{seed}-{r['patient_id']}"
            r["split"] = "test"
        with open(marked, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
    return marked


def confirm_arch(arch: str, root: Path, data: Path, threads: int) -> dict[str, Any]:
    """Every bundle of one backbone and the PyTorch baseline on the whole set, gated."""
    import bench_reference as br

    from edgevcf import metrics
    from edgevcf.latency import BundleRow, Row, TorchRow, Worker

    ckpt = root / "runs" / arch / "model.safetensors"
    rows = [r for r in _rows() if r[1] is None or (root / "bundles" / arch / r[1]).is_dir()]
    out: dict[str, Any] = {"arch": arch, "rows": {}}
    with tempfile.TemporaryDirectory(prefix="edgevcf-confirm-") as td, ExitStack() as stack:
        dirs = sorted({root / "bundles" / arch / r[1] for r in rows if r[1]})
        x_path, labels, ref = br.split_inputs(dirs, data, Path(td))
        probs = {}
        for label, folder, backend, options in rows:
            spec: Row
            if folder is None:
                spec = TorchRow(ckpt, dirs[0], threads=threads)
            else:
                spec = BundleRow(root / "bundles" / arch / folder, backend, dict(options), threads)
            print(f"  {arch}: {label}", flush=True)
            w = stack.enter_context(Worker(label, spec))
            probs[label] = w.probs(str(x_path))
            w.close()
    base = probs[br.BASELINE]
    thr = ref.threshold
    tol = ref.manifest["profile"]["tolerance"]
    for label, p in probs.items():
        row: dict[str, Any] = {"auc": metrics.auc_ci(labels, p).to_dict()}
        if label != br.BASELINE:
            g = metrics.gate_for(tol, labels, base, p, thr)
            row["paired"] = g.paired.to_dict() if g.paired else None
            row["gate"] = bool(g.passed)
            row["gate_detail"] = g.to_dict()
            row["flip_rate"] = g.flips.flip_rate.value
        out["rows"][label] = row
    out["n"] = len(labels)
    out["n_pos"] = int(labels.sum())
    out["threshold"] = thr
    return out


def _test_split_gates(results: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The test-split gates of the latest bench_reference run, for the side-by-side column."""
    path = results / f"{machine_label()}.json"
    if not path.is_file():
        return {}
    runs = json.loads(path.read_text()).get("runs") or []
    if not runs:
        return {}
    from bench_reference import with_films_needed

    return {
        (arch, label): {**row, "gate_detail": with_films_needed(row, a)}
        for arch, a in runs[0]["archs"].items()
        for label, row in a["rows"].items()
        if "gate_detail" in row
    }


def markdown(result: dict[str, Any]) -> str:
    from edgevcf.report import gate_cell, operating_point_cell

    def ci(d: dict[str, Any]) -> str:
        return f"{d['diff']:+.4f} ({d['ci_low']:+.4f}, {d['ci_high']:+.4f})"

    lines = [
        f"# Accuracy on an independent set: {result['machine']}",
        "",
        f"{result['patients']} further synthetic patients (seed {result['seed']}, the reference "
        f"dataset's generator settings; never seen by training, calibration, threshold choice or "
        f"tuning), every film scored by the PyTorch FP32 checkpoint and each bundle "
        f"({result['created']}). ΔAUC = paired DeLong, bundle - PyTorch, 95 % CI; Δsens / Δspec "
        "= paired differences at the bundled threshold, points, CI lower bound; gate as the "
        "export's (ΔAUC CI low > -0.01, Δsens and Δspec CI low > -5 points, flip rate not shown "
        "above 2 %). `test split` = the same bundle's gate on the reference test split (306 "
        "films) in the latest `bench_reference.py` run, for comparison.",
    ]
    tests = {tuple(k.split("|", 1)): v for k, v in result.get("test_split", {}).items()}
    for arch, a in result["archs"].items():
        lines += [
            "",
            f"## {arch} (n = {a['n']}, {a['n_pos']} fresh)",
            "",
            "| row | AUC (95 % CI) | ΔAUC (95 % CI) | Δsens / Δspec pt (CI low) | flip % | gate "
            "| test split: ΔAUC (95 % CI), gate |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, r in a["rows"].items():
            auc = r["auc"]
            cell = f"{auc['auc']:.3f} ({auc['ci_low']:.3f}-{auc['ci_high']:.3f})"
            if "gate_detail" not in r:
                lines.append(f"| {label} | {cell} | - | - | - | ref | - |")
                continue
            g = r["gate_detail"]
            t = tests.get((arch, label))
            tcell = (
                f"{ci(t['paired'])}, {gate_cell(t['gate'], t['gate_detail'])}"
                if t and t.get("paired")
                else "-"
            )
            lines.append(
                f"| {label} | {cell} | {ci(r['paired'])} | {operating_point_cell(g)} | "
                f"{100 * r['flip_rate']:.1f} | {gate_cell(r['gate'], g)} | {tcell} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--archs", nargs="+", default=None, help="default: every folder under bundles/")
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7, help="the set's seed (the reference's is 0)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--from-json", action="store_true", help="only re-write the .md from the .json")
    args = ap.parse_args()
    stem = args.results / f"{machine_label()}-confirm"
    if args.from_json:
        stem.with_suffix(".md").write_text(
            markdown(json.loads(stem.with_suffix(".json").read_text()))
        )
        return
    if args.seed == 0:
        raise SystemExit("--seed 0 is the reference dataset's own seed: pick another")

    from edgevcf import progress
    from edgevcf.dataset import cache_root

    progress.set_enabled(False)
    root = args.root or cache_root() / "reference"
    archs = args.archs or sorted(
        p.name for p in (root / "bundles").iterdir() if p.is_dir() and "@" not in p.name
    )
    t = time.perf_counter()
    data = confirmation_set(root, args.patients, args.seed)
    print(f"independent set: {data} ({time.perf_counter() - t:.0f} s)", flush=True)
    result: dict[str, Any] = {
        "machine": machine_label(),
        "patients": args.patients,
        "seed": args.seed,
        "data": str(data),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "archs": {},
        "test_split": {f"{a}|{r}": v for (a, r), v in _test_split_gates(args.results).items()},
    }
    from bench_reference import save_json

    for arch in archs:
        t = time.perf_counter()
        result["archs"][arch] = confirm_arch(arch, root, data, args.threads)
        result["archs"][arch]["seconds"] = time.perf_counter() - t
        save_json(stem, result)
        stem.with_suffix(".md").write_text(markdown(result))
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
