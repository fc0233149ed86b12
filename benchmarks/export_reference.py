"""Export the reference checkpoints to every target runnable here and tabulate what came out.

Per backbone x target: file size (deployed artefact and the FP32 ONNX), AUC FP32 -> deployed on
the tuning (val) split with the paired DeLong ΔAUC and its 95 % CI, decision flip rate at the
bundled threshold, the profile's gate, how much of the network computes in integers, and the
export time. Accuracy on the untouched test split is `edgevcf bench`'s job.

    .venv/bin/python benchmarks/train_reference.py            # the checkpoints (once)
    .venv/bin/python benchmarks/export_reference.py           # all backbones with a checkpoint
    .venv/bin/python benchmarks/export_reference.py --archs mobilenet_v3_large --targets jetson
    .venv/bin/python benchmarks/export_reference.py --ray --cell-cpus 2   # cells as Ray tasks

With ``--ray [auto|ADDRESS]`` each (backbone, target) cell is a Ray task holding ``--cell-cpus``
CPUs (nodes must see the checkpoints, data and ``--root`` at the same paths); a cell that fails is
reported and the others finish. ``--compare ROOT_A ROOT_B`` says, cell by cell, whether two runs'
bundles are the same: the same model id, or (where the manifest records something measured, such
as a latency) the same model files. ``--checkpoint``/``--data`` export another model than the
reference ones (e.g. the demo's).

Bundles go to ``~/.cache/edgevcf/reference/bundles/`` (not to git); results to
``benchmarks/results/<machine>-export.{md,json}`` (rows of earlier runs are kept unless re-run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

from edgevcf.bundle import Bundle
from edgevcf.dataset import cache_root
from edgevcf.export import export_bundle
from edgevcf.machine import machine_label
from edgevcf.models import STUDY_BACKBONES
from edgevcf.profiles import load_profile
from edgevcf.report import gate_cell, operating_point_cell
from edgevcf.targets import get_target

# (label, profile, precision override)
TARGETS: dict[str, tuple[str, str | None]] = {
    "onnx-cpu-fp32": ("onnx-cpu", None),
    "onnx-cpu-int8": ("onnx-cpu", "int8"),
    "jetson-int8": ("jetson-orin-nano", None),
    "jetson-fp16": ("jetson-orin-nano-fp16", None),
    "openvino-fp32": ("intel-cpu", "fp32"),
    "openvino-int8": ("intel-cpu", None),
    "openvino-int8-aa": ("intel-cpu-aa", None),
    "openvino-bf16": ("intel-cpu-bf16", None),
    "openvino-qat": ("intel-cpu-qat", None),
    "openvino-auto": ("intel-cpu-auto", None),
    "mobile-int8": ("mobile-arm", None),
}


def _row(arch: str, label: str, bundle: Bundle, seconds: float | None) -> dict[str, Any]:
    """One table row, read back from the bundle's own manifest (what was shipped)."""
    m = bundle.manifest
    facts = m.get("target_facts", {})
    census = facts.get("integer_check", {})
    arts = m["metrics"]["artifacts"]
    default = arts[m["default_artifact"]]
    return {
        "arch": arch,
        "target": label,
        "profile": m["profile"]["name"],
        "precision": m["precision"],
        "size_bytes": sum((bundle.path / f).stat().st_size for f in bundle.artifact().files()),
        "fp32_onnx_bytes": m["metrics"]["fp32_onnx_bytes"],
        "fp32_auc": (m["metrics"]["fp32_auc"] or {}).get("auc"),
        "auc": (default["auc"] or {}).get("auc"),
        "delta_auc": default["paired"],
        "flip_rate": default["flips"]["flip_rate"]["value"],
        "gate_passed": default["gate"]["passed"],
        # measured by this run; a bundle records it no more (older ones did)
        "export_seconds": seconds if seconds is not None else m.get("export_seconds"),
        "n_tuning": m["metrics"]["n"],
        "integer_check": census,
        "other_artifacts": {
            k: {"auc": (v["auc"] or {}).get("auc"), "flip_rate": v["flips"]["flip_rate"]["value"]}
            for k, v in arts.items()
            if k != m["default_artifact"]
        },
        "notes": m.get("notes", []),
        "nncf": facts.get("nncf"),
        "gate": default["gate"],
        "mixed_precision": facts.get("mixed_precision"),
        "precision_search": facts.get("precision_search"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--archs", nargs="+", default=None, help="default: those with a checkpoint")
    ap.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    ap.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="export at this input size instead of the checkpoint's (rows and bundles are "
        "then labelled ARCH@SIZE; the network was trained at its own size)",
    )
    ap.add_argument(
        "--no-fallback",
        action="store_true",
        help="plain INT8 even when it fails the gate (for latency-only rows, e.g. ARCH@SIZE)",
    )
    ap.add_argument("--root", type=Path, default=cache_root() / "reference")
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument(
        "--from-bundles",
        action="store_true",
        help="re-tabulate the bundles already exported (no export)",
    )
    ap.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        default=None,
        metavar="ADDRESS",
        help="run the cells as Ray tasks (auto: a running cluster, else local)",
    )
    ap.add_argument("--cell-cpus", type=float, default=2, help="CPUs per cell on Ray")
    ap.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="export this checkpoint instead (with --data; --archs names its row)",
    )
    ap.add_argument("--data", type=Path, default=None, help="the checkpoint's data manifest")
    ap.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("ROOT_A", "ROOT_B"),
        help="compare two runs' bundles (their --root folders) and stop",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    if args.compare:
        print("\n".join(compare(*args.compare)))
        return
    data = args.data or next((args.root).glob("synth-*/manifest.csv"), None)
    if data is None:
        raise SystemExit(f"no reference dataset under {args.root}: run train_reference.py")
    archs = args.archs or [
        a for a in STUDY_BACKBONES if (args.root / "runs" / a / "model.safetensors").is_file()
    ]
    cells = []
    for arch in archs:
        ckpt = args.checkpoint or args.root / "runs" / arch / "model.safetensors"
        for label in args.targets:
            row_arch = f"{arch}@{args.input_size}" if args.input_size else arch
            cells.append((arch, row_arch, label, ckpt, args.root / "bundles" / row_arch / label))
    if args.ray is not None and not args.from_bundles:
        rows = _on_ray(cells, data, args)
    else:
        rows = []
        for _arch, row_arch, label, ckpt, out in cells:
            if not args.from_bundles:
                seconds: float | None = export_cell(ckpt, label, data, out, args.input_size,
                                                    args.no_fallback, row_arch)  # fmt: skip
            elif not (out / "manifest.json").is_file():
                continue
            else:
                seconds = None
            rows.append(_row(row_arch, label, Bundle.load(out), seconds))
            write([rows[-1]], args)  # after each row: a crash later loses nothing


def export_cell(
    ckpt: Path,
    label: str,
    data: Path,
    out: Path,
    input_size: int | None,
    no_fallback: bool,
    row_arch: str,
) -> float:
    """Export one (backbone, target) cell; the export's seconds."""
    name, precision = TARGETS[label]
    prof = load_profile(name).with_overrides(precision=precision, input_size=input_size)
    if no_fallback:
        prof = dataclasses.replace(
            prof, quantize=dataclasses.replace(prof.quantize, accuracy_fallback=False)
        )
    t = time.perf_counter()
    res = export_bundle(get_target(prof.target), ckpt, prof, data, out, force=True)
    print(
        f"{row_arch} {label}: {res.size_bytes / 1e6:.2f} MB, AUC {res.fp32_auc} -> "
        f"{res.auc}, flips {res.flip_rate:.3f}, gate {res.gate_passed}, "
        f"{time.perf_counter() - t:.0f} s",
        flush=True,
    )
    return round(res.seconds, 1)


def _on_ray(cells: list[tuple[Any, ...]], data: Path, args: argparse.Namespace) -> list[Any]:
    """Every cell as a Ray task with ``--cell-cpus`` CPUs (its engines and torch get as many
    threads); rows as cells finish; a failed cell is reported, the others go on."""
    from edgevcf.scale import connect

    ray = connect(args.ray)

    def cell(*a: Any) -> float:
        import torch

        torch.set_num_threads(max(1, int(args.cell_cpus)))
        return export_cell(*a)

    task = ray.remote(num_cpus=args.cell_cpus, max_retries=0)(cell)
    t0 = time.perf_counter()
    pending = {
        task.remote(ckpt, label, data, out, args.input_size, args.no_fallback, row_arch): (
            row_arch, label, out)
        for _, row_arch, label, ckpt, out in cells
    }  # fmt: skip
    rows, failed = [], []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        row_arch, label, out = pending.pop(done[0])
        try:
            seconds = ray.get(done[0])
        except Exception as exc:  # a failed cell: reported, the others finish
            cause = getattr(exc, "cause", None) or exc  # a RayTaskError wraps the cell's own
            failed.append(f"{row_arch} {label}: {type(cause).__name__}: {str(cause)[:300]}")
            print(f"FAILED {failed[-1]}", flush=True)
            continue
        rows.append(_row(row_arch, label, Bundle.load(out), seconds))
        write([rows[-1]], args)
    print(f"{len(rows)} cell(s) in {time.perf_counter() - t0:.0f} s on Ray"
          + (f"; {len(failed)} failed" if failed else ""), flush=True)  # fmt: skip
    return rows


def compare(a: Path, b: Path) -> list[str]:
    """Cell by cell: the same model id, else the same model files (a manifest that records a
    measured latency differs in that alone), else different."""
    from edgevcf.hashing import sha256_file

    lines = ["| cell | model id | model files |", "|---|---|---|"]
    for man in sorted(a.glob("bundles/*/*/manifest.json")):
        rel = man.parent.relative_to(a)
        other = b / rel
        if not (other / "manifest.json").is_file():
            lines.append(f"| {rel} | missing in {b} | |")
            continue
        x, y = Bundle.load(man.parent), Bundle.load(other)
        files = sorted({f for art in x.artifacts.values() for f in art.files()})
        differ = [
            f for f in files
            if not (other / f).is_file() or sha256_file(man.parent / f) != sha256_file(other / f)
        ]  # fmt: skip
        lines.append(f"| {rel.parent.name} {rel.name} | {'same' if x.id == y.id else 'differs'} "
                     f"| {'differ: ' + ', '.join(differ) if differ else 'same'} "
                     f"({len(files)}) |")  # fmt: skip
    return lines


def _merge(rows: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return rows
    new = {(r["arch"], r["target"]) for r in rows}
    old = [r for r in json.loads(path.read_text())["rows"] if (r["arch"], r["target"]) not in new]
    order = {a: i for i, a in enumerate(STUDY_BACKBONES)}
    torder = {t: i for i, t in enumerate(TARGETS)}

    def key(r: dict[str, Any]) -> tuple[int, str, int]:
        base, _, size = r["arch"].partition("@")
        return (order.get(base, 9), size, torder.get(r["target"], 99))

    return sorted(old + rows, key=key)


def write(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Markdown table + JSON, merged with rows of earlier runs."""
    base = args.results / f"{machine_label()}-export"
    rows = _merge(rows, base.with_suffix(".json"))
    lines = [
        f"# Export of the reference models ({machine_label()}, {platform.processor() or ''})",
        "",
        "AUC on the tuning (val) split, FP32 = PyTorch eager; ΔAUC = paired DeLong, deployed - "
        "FP32, 95 % CI; Δsens / Δspec = paired differences at the bundled threshold, points, "
        "with the CI lower bound; flips at the bundled threshold; gate = ΔAUC CI low > -0.01, "
        "Δsens and Δspec CI low > -5 points, flip rate not shown above 2 % (failed criteria "
        "named). int ops = compute ops running in integers / all compute ops (ORT "
        "static Q/DQ coverage, OpenVINO FakeQuantize-fed convolutions, LiteRT tensor types).",
        "",
        "| backbone | target | size MB (FP32 ONNX) | AUC FP32 -> deployed | ΔAUC (95 % CI) "
        "| Δsens / Δspec pt (CI low) | flip % | gate | int ops | export s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    tried: list[str] = []
    for r in rows:
        d = r["delta_auc"]
        delta = f"{d['diff']:+.4f} ({d['ci_low']:+.4f}, {d['ci_high']:+.4f})" if d else "n/a"
        auc = (
            f"{r['fp32_auc']:.3f} -> {r['auc']:.3f}"
            if r["fp32_auc"] is not None and r["auc"] is not None
            else "n/a"
        )
        ints = "; ".join(
            f"{k} {v['integer_ops']}/{v['integer_ops'] + v['float_ops']}"
            for k, v in (r.get("integer_check") or {}).items()
        )
        gate = gate_cell(r["gate_passed"], r.get("gate"))
        point = operating_point_cell(r.get("gate"))
        mixed = r.get("mixed_precision") or {}
        if mixed.get("tried"):
            tried.append(
                f"- {r['arch']} {r['target']}: INT8 failed "
                f"({', '.join(mixed.get('answered', []))}); "
                f"float blocks tried {[t['float_blocks'][-1] for t in mixed['tried']]}, "
                + (f"kept {mixed['float_blocks']}" if mixed["float_blocks"] else "none passed")
            )
        search = r.get("precision_search") or {}
        if search:
            tried.append(f"- {r['arch']} {r['target']}: --precision auto chose {search['why']}")
        lines.append(
            f"| {r['arch']} | {r['target']} | {r['size_bytes'] / 1e6:.2f} "
            f"({r['fp32_onnx_bytes'] / 1e6:.2f}) | {auc} | {delta} | {point} | "
            f"{100 * r['flip_rate']:.1f} | {gate} | {ints or '-'} | "
            f"{'-' if r['export_seconds'] is None else format(r['export_seconds'], '.0f')} |"
        )
        for k, v in r["other_artifacts"].items():
            if v["auc"] is not None:
                lines.append(
                    f"| | ↳ {k} | | {r['fp32_auc']:.3f} -> {v['auc']:.3f} | | | "
                    f"{100 * v['flip_rate']:.1f} | | | |"
                )
    if tried:
        lines += [
            "",
            "What the fallbacks and the precision search tried (tuning split):",
            "",
            *tried,
        ]
    args.results.mkdir(parents=True, exist_ok=True)
    base.with_suffix(".md").write_text("\n".join(lines) + "\n")
    base.with_suffix(".json").write_text(
        json.dumps(
            {"machine": {"name": machine_label(), "platform": platform.platform()}, "rows": rows},
            indent=2,
            default=str,
        )
        + "\n"
    )
    print("\n".join(lines[-1:]))


if __name__ == "__main__":
    main()
