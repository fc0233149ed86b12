"""Bring your own network, measured: each way in, to every target, beside the zoo backbone.

For one trained zoo checkpoint (default: the demo's MobileNetV3-Small and its data), the same
trained network is written as other teams' tools write it (:mod:`edgevcf.testing.foreign`:
a Keras-style ONNX — NHWC, softmax —, TorchScript — NHWC, two logits —, a ``torch.export``
``.pt2`` and a state dict with a replaced MLP head and a one-channel stem), and with ``--timm
NAME`` a timm backbone of the same family is *trained* on the same data with the same recipe
(``train --arch timm:NAME``) and brought in as a ``torch.save`` state dict. Each is imported
(``import-model`` with ``--check``: parity with the original on real films, threshold tuned on
val) and exported to every target; then ``edgevcf bench`` measures, per way in, on the
untouched **test** split: the deployed AUC against its own FP32 reference (paired DeLong ΔAUC
and its CI, the gate) and the batch-1 latency, beside the zoo bundle of the same target.

    .venv/bin/python benchmarks/byo.py                              # the demo's checkpoint
    .venv/bin/python benchmarks/byo.py --timm mobilenetv3_small_100 --epochs 16
    .venv/bin/python benchmarks/byo.py --ways onnx pt2 --targets mobile-int8

Work goes to ``~/.cache/edgevcf/byo/`` (not to git); results to
``benchmarks/results/<machine>-byo.{md,json}`` (rows of earlier runs are kept unless re-run).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from edgevcf.dataset import cache_root
from edgevcf.machine import machine_label

#: label -> (profile, precision override)
TARGETS: dict[str, tuple[str, str | None]] = {
    "onnx-cpu-int8": ("onnx-cpu", "int8"),
    "openvino-int8": ("intel-cpu", None),
    "jetson-int8": ("jetson-orin-nano", None),
    "mobile-int8": ("mobile-arm", None),
}
WAYS = ("zoo", "onnx", "torchscript", "pt2", "head", "timm")
WAY_WORDS = {
    "zoo": "zoo checkpoint (edgevcf train)",
    "onnx": "ONNX, Keras-style (NHWC, softmax)",
    "torchscript": "TorchScript (NHWC, two logits)",
    "pt2": "torch.export .pt2 (logit, batch 1)",
    "head": "state dict: MLP head + 1-channel stem",
    "timm": "timm state dict (trained here)",
}


def foreign_file(
    way: str, ckpt: Path, work: Path, args: argparse.Namespace
) -> tuple[Path, list[str]]:
    """The way's source file and the import-model arguments it needs."""
    from edgevcf.models import load_checkpoint
    from edgevcf.testing import foreign

    model, meta = load_checkpoint(ckpt)
    spec = meta.preprocess
    if way == "onnx":
        return foreign.keras_onnx(model, spec, work / "keras.onnx")[0], []
    if way == "torchscript":
        return foreign.torchscript(model, spec, work / "net.pt")[0], []
    if way == "pt2":
        return foreign.exported_program(model, spec, work / "prog.pt2", output="logit")[0], []
    if way == "head":
        src, toml = foreign.changed_head_state_dict(model, spec, "classifier", work / "mlp.pth")
        return src, ["--arch", meta.arch, "--spec", str(toml)]
    raise ValueError(way)


def timm_state_dict(
    args: argparse.Namespace, data: Path, work: Path
) -> tuple[Path, dict[str, Any]]:
    """Train ``timm:NAME`` with the demo's recipe and save its state dict as a timm user would."""
    import torch

    from edgevcf.models import load_checkpoint
    from edgevcf.train import TrainConfig, train

    run_dir = work / "train"
    ckpt = run_dir / "model.safetensors"
    t0 = time.perf_counter()
    if not ckpt.is_file():
        train(data, run_dir, TrainConfig(arch=f"timm:{args.timm}", epochs=args.epochs,
                                         input_size=args.input_size, seed=0))  # fmt: skip
    net, meta = load_checkpoint(ckpt)
    src = work / "timm.pth"
    torch.save({"state_dict": net.state_dict()}, src)
    (work / "timm.toml").write_text(f"[input]\nsize = {meta.preprocess.input_size}\n")
    return src, {"train_s": round(time.perf_counter() - t0, 1), "val": meta.metrics}


def import_way(way: str, src: Path, extra: list[str], data: Path, work: Path) -> dict[str, Any]:
    """``import-model --check`` through the CLI, as a user runs it."""
    from click.testing import CliRunner

    from edgevcf.cli import cli
    from edgevcf.intake.importer import SUFFIXES
    from edgevcf.intake.torch_program import sniff

    ref = work / ("ref" + SUFFIXES[sniff(src)][0])
    t0 = time.perf_counter()
    run = CliRunner().invoke(cli, ["import-model", str(src), *extra, "--check", str(data),
                                   "--out", str(ref)])  # fmt: skip
    if run.exit_code != 0:
        raise SystemExit(f"{way}: import failed:\n{run.output}")
    line = [ln for ln in run.output.splitlines() if ln.startswith("Wrote")][-1]
    return {"ref": str(ref), "import_s": round(time.perf_counter() - t0, 1),
            "parity": float(line.rsplit("matches the original to ", 1)[1].split()[0])}  # fmt: skip


def export_way(ref: Path, data: Path, out: Path, targets: list[str]) -> dict[str, Any]:
    from edgevcf.export import export_bundle
    from edgevcf.profiles import load_profile
    from edgevcf.targets import get_target

    rows = {}
    for label in targets:
        profile, precision = TARGETS[label]
        prof = load_profile(profile).with_overrides(precision=precision)
        dest = out / label
        t0 = time.perf_counter()
        try:
            res = export_bundle(get_target(prof.target), ref, prof, data, dest, force=True)
            rows[label] = {"bundle": str(dest), "export_s": round(time.perf_counter() - t0, 1),
                           "val_gate": res.gate_passed, "notes": res.notes}  # fmt: skip
        except Exception as exc:  # a failed way x target is a result, not a crash
            rows[label] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"    {label}: {rows[label].get('export_s', 'failed')} s", flush=True)
    return rows


def bench_way(ref: Path, bundles: dict[str, Any], data: Path, iterations: int) -> dict[str, Any]:
    """``edgevcf bench`` of the way's bundles on the test split, its reference as baseline."""
    from edgevcf.bench import BenchConfig, bench

    paths = {k: v["bundle"] for k, v in bundles.items() if "bundle" in v}
    if not paths:
        return {}
    cfg = BenchConfig(split="test", threads=2, iterations=iterations, quick=True)
    report = bench(list(paths.values()), data=data, baseline=ref, cfg=cfg)
    acc = {a["bundle"]: a for a in report.get("accuracy", {}).get("bundles", [])}
    gates = {g["bundle"]: g for g in report["gates"]}
    out = {"baseline_auc": report.get("accuracy", {}).get("baseline", {}).get("auc")}
    for entry in report["bundles"]:
        label = next(k for k, p in paths.items() if Path(p) == Path(entry["path"]))
        a = acc.get(entry["bundle"], {})
        paired = a.get("paired_vs_baseline") or {}
        out[label] = {
            "auc": a.get("auc"),
            "delta_auc": {k: paired.get(k) for k in ("diff", "ci_low", "ci_high")}
            if paired
            else None,
            "non_inferior": a.get("non_inferior"),
            "operating_point_ok": a.get("operating_point_ok"),
            "flip_ok": a.get("flip_ok"),
            "flip_rate": (a.get("flips") or {}).get("flip_rate", {}).get("value"),
            "gate_passed": gates[entry["bundle"]]["passed"],
            "batch1_ms": entry.get("latency", {}).get("batch1", {}).get("median_ms"),
            "runtime": entry.get("latency", {}).get("runtime"),
            "size_bytes": entry["size_bytes"],
        }
    return out


def markdown(result: dict[str, Any]) -> str:
    """Every family's table, one after the other."""
    lines = [
        "# Bring your own network: each way in to every target, beside the zoo backbone",
        "",
        f"Machine: {result['machine']}. Data: `{result['data']}` (val tunes, **test** measures). "
        "Per family, the zoo network trained here is written in each foreign form (the same "
        "trained weights), and `timm`: a timm backbone of the same family trained here with the "
        "same recipe. AUC on the test split: the way's own FP32 reference -> the deployed bundle, "
        "paired DeLong ΔAUC (95 % CI); gate = `edgevcf bench`'s (AUC non-inferiority, operating "
        "point, flip rate, latency budget); batch-1 median latency of the bundle's engine on this "
        "CPU (jetson: the ONNX Runtime CPU stand-in, not a Jetson latency), measured way after "
        "way in one run on a VM whose speed drifts: compare latencies loosely; the accuracy "
        "columns are exact. The gate at export is on the val split, after the profile's "
        "fallbacks.",
    ]
    for arch, fam in result["families"].items():
        lines += ["", *family_markdown(arch, fam)]
    return "\n".join(lines) + "\n"


def family_markdown(arch: str, result: dict[str, Any]) -> list[str]:
    """One family's table and notes."""
    lines = [
        f"## {arch} (`{result['checkpoint']}`)",
        "",
        "| way in | import s | parity (logit) | target | AUC FP32 -> deployed | ΔAUC (95 % CI) "
        "| flip % | gate (test) | gate (val, at export) | batch-1 ms | export s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ordered = [(way, result["ways"][way]) for way in WAYS if way in result["ways"]]
    for way, w in ordered:
        for label in TARGETS:
            e = w.get("exports", {}).get(label)
            if e is None:
                continue
            b = w.get("bench", {}).get(label, {})
            if "error" in e:
                lines.append(f"| {WAY_WORDS[way]} | {w.get('import_s', '')} | | {label} | "
                             f"export failed: {e['error'][:120]} | | | | | | |")  # fmt: skip
                continue
            d = b.get("delta_auc") or {}
            ci = (f"{d.get('diff', 0):+.3f} ({d.get('ci_low', 0):+.3f} to "
                  f"{d.get('ci_high', 0):+.3f})") if d else ""  # fmt: skip
            base = w.get("bench", {}).get("baseline_auc") or {}
            auc = b.get("auc") or {}
            gate = {True: "PASS", False: "FAIL", None: "-"}[b.get("gate_passed")]
            if b.get("gate_passed") is False:
                why = [k for k in ("non_inferior", "operating_point_ok", "flip_ok")
                       if b.get(k) is False]  # fmt: skip
                gate += f" ({', '.join(why)})" if why else ""
            flip_v = b.get("flip_rate")
            lines.append(
                f"| {WAY_WORDS[way]} | {w.get('import_s', '')} | {w.get('parity', '')} | {label} | "
                f"{base.get('auc', float('nan')):.3f} -> {auc.get('auc', float('nan')):.3f} | "
                f"{ci} | "
                f"{100 * (flip_v or 0):.1f} | {gate} | "
                f"{ {True: 'PASS', False: 'FAIL', None: '-'}[e.get('val_gate')] } | "
                f"{b.get('batch1_ms') or float('nan'):.2f} | "
                f"{e['export_s']} |"
            )
    notes = [(way, label, n) for way, w in ordered
             for label, e in w.get("exports", {}).items() for n in e.get("notes", [])]  # fmt: skip
    if notes:
        lines += ["", "Export notes:", ""]
        lines += [f"- {WAY_WORDS[w]} / {lb}: {n}" for w, lb, n in notes]
    if result.get("timm"):
        t = result["timm"]
        lines += ["", f"timm `{t['name']}`: trained {t['epochs']} epochs in {t['train_s']} s "
                  f"here (val AUC at the best epoch: {t.get('val_auc')})."]  # fmt: skip
    return lines


def _load(stem: Path) -> dict[str, Any]:
    """The stored results ({} for none), in the per-family layout."""
    path = stem.with_suffix(".json")
    old: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    if "ways" in old:  # the first run's layout: one family
        old["families"] = {old.pop("arch"): {k: old.pop(k) for k in ("checkpoint", "ways", "timm")}}
    return old


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument(
        "--checkpoint",
        type=Path,
        default=Path("demo-out/runs/mobilenet_v3_small/model.safetensors"),
    )
    ap.add_argument("--data", type=Path, default=Path("demo-out/data/manifest.csv"))
    ap.add_argument("--ways", nargs="+", default=[w for w in WAYS if w != "timm"], choices=WAYS)
    ap.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    ap.add_argument("--timm", default=None, help="also train this timm model (adds the timm way)")
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--iterations", type=int, default=200, help="batch-1 timed runs per bundle")
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--from-json", action="store_true", help="only re-write the .md from the .json")
    args = ap.parse_args()
    stem = args.results / f"{machine_label()}-byo"
    if args.from_json:
        stem.with_suffix(".md").write_text(markdown(_load(stem)))
        return
    logging.basicConfig(level=logging.WARNING)
    from edgevcf import progress

    progress.set_enabled(False)
    root = args.root or cache_root() / "byo"
    ways = list(args.ways) + (["timm"] if args.timm and "timm" not in args.ways else [])
    old = _load(stem)
    from edgevcf.machine import machine_info
    from edgevcf.models import read_checkpoint_meta

    arch = read_checkpoint_meta(args.checkpoint).arch
    families = old.get("families", {})
    result: dict[str, Any] = {
        "machine": machine_label(),
        "machine_info": machine_info(),
        "data": str(args.data),
        "families": families,
    }
    fam = families.setdefault(arch, {"checkpoint": str(args.checkpoint), "ways": {}, "timm": None})
    fam["checkpoint"] = str(args.checkpoint)
    for way in ways:
        work = root / (way if arch == "mobilenet_v3_small" else f"{arch}/{way}")
        work.mkdir(parents=True, exist_ok=True)
        print(f"{way}:", flush=True)
        if way == "zoo":
            w: dict[str, Any] = {"ref": str(args.checkpoint), "import_s": "", "parity": ""}
        else:
            if way == "timm":
                src, tinfo = timm_state_dict(args, args.data, work)
                extra = ["--arch", f"timm:{args.timm}"]
                hist = tinfo["val"]
                fam["timm"] = {"name": args.timm, "epochs": args.epochs,
                                  "train_s": tinfo["train_s"],
                                  "val_auc": round(hist["auc"]["auc"], 3)}  # fmt: skip
            else:
                src, extra = foreign_file(way, args.checkpoint, work, args)
            w = import_way(way, src, extra, args.data, work)
        w["exports"] = export_way(Path(w["ref"]), args.data, work / "bundles", args.targets)
        w["bench"] = bench_way(Path(w["ref"]), w["exports"], args.data, args.iterations)
        fam["ways"][way] = w
        args.results.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".json").write_text(json.dumps(result, indent=2, sort_keys=True,
                                                        default=str) + "\n")  # fmt: skip
        stem.with_suffix(".md").write_text(markdown(result))
    print(f"Wrote {stem}.md and .json")


if __name__ == "__main__":
    main()
