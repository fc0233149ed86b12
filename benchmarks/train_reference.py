"""Train the study's three backbones on the standard synthetic task and tabulate them.

Reproducible from the seed; CPU is the reference path. Data and checkpoints go to
``~/.cache/edgevcf/reference/`` (never into git); the table goes to
``benchmarks/results/<machine>-reference-models.{md,json}`` (each CPU kind its own: training time
and the last bits of the weights differ between machines; ``reference-models.md`` is the first
table, AMD EPYC Zen 4).

    .venv/bin/python benchmarks/train_reference.py                 # all three, ~1.5 h on 2 cores
    .venv/bin/python benchmarks/train_reference.py --archs mobilenet_v3_large --epochs 12
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

from edgevcf.data.synth import SynthConfig, generate
from edgevcf.dataset import cache_root
from edgevcf.evaluate import evaluate
from edgevcf.machine import machine_label
from edgevcf.models import STUDY_BACKBONES
from edgevcf.train import TrainConfig, train

#: The generator setting that makes the task about as hard as the real one (see the table).
STANDARD_DIFFICULTY = 0.0
STANDARD_PATIENTS = 1500


def dataset(root: Path, patients: int, difficulty: float, seed: int) -> Path:
    """Generate (or reuse, when its recorded settings match) the standard synthetic dataset."""
    cfg = SynthConfig.fast(difficulty=difficulty)
    out = root / f"synth-p{patients}-d{difficulty:g}-s{seed}"
    rec = out / "synth_config.json"
    if rec.is_file() and (out / "manifest.csv").is_file():
        saved = json.loads(rec.read_text())
        if (
            saved.get("config") == json.loads(json.dumps(cfg.to_dict()))
            and saved.get("patients") == patients
        ):
            return out / "manifest.csv"
    return generate(out, patients, seed=seed, cfg=cfg, workers=os.cpu_count() or 1).manifest


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--archs", nargs="+", default=list(STUDY_BACKBONES))
    ap.add_argument("--patients", type=int, default=STANDARD_PATIENTS)
    ap.add_argument("--difficulty", type=float, default=STANDARD_DIFFICULTY)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--root", type=Path, default=cache_root() / "reference")
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="a backbone whose run finished with the same settings is evaluated, not retrained",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    manifest = dataset(args.root, args.patients, args.difficulty, args.seed)
    rows = []
    for arch in args.archs:
        cfg = TrainConfig(arch=arch, epochs=args.epochs, seed=args.seed)
        out = args.root / "runs" / arch
        done = _finished_run(out, cfg) if args.reuse else None
        if done is None:
            t = time.perf_counter()
            run = train(manifest, out, cfg)
            done = (run.best_epoch, (time.perf_counter() - t) / 60)
        row = {
            "arch": arch,
            "epochs": args.epochs,
            "train_minutes": round(done[1], 1),
            "best_epoch": done[0],
            "checkpoint": str(out / "model.safetensors"),
        }
        for split in ("val", "test"):
            res = evaluate(out / "model.safetensors", manifest, split=split)
            row[split] = res.to_dict()
        rows.append(row)
        logging.info(
            "%s: val AUC %.3f, test AUC %.3f, %.1f min",
            arch,
            row["val"]["auc"]["auc"],
            row["test"]["auc"]["auc"],
            row["train_minutes"],
        )
        write_tables(merge_rows(rows, args), args)  # after each backbone: a crash loses none


def _finished_run(out: Path, cfg: TrainConfig) -> tuple[int, float] | None:
    """(best epoch, training minutes) of a finished run with this configuration, from its
    ``history.json``; None when there is none (``--reuse``: evaluate it, do not train again)."""
    from dataclasses import asdict

    rec = out / "history.json"
    if not (rec.is_file() and (out / "model.safetensors").is_file()):
        return None
    h = json.loads(rec.read_text())
    if h.get("config") != json.loads(json.dumps(asdict(cfg))):
        return None
    return int(h["best"]["epoch"]), float(h["seconds"]) / 60


def merge_rows(rows: list[dict], args: argparse.Namespace) -> list[dict]:
    """Keep earlier backbones' rows measured on the same dataset, so backbones can be trained
    in separate runs; a row of a different dataset (patients, difficulty, seed) is dropped."""
    path = args.results / f"{machine_label()}-reference-models.json"
    if not path.is_file():
        return rows
    old = json.loads(path.read_text())
    if (old.get("patients"), old.get("difficulty"), old.get("seed")) != (
        args.patients,
        args.difficulty,
        args.seed,
    ):
        return rows
    new = {r["arch"] for r in rows}
    kept = [
        {"epochs": old.get("epochs"), **r} for r in old.get("models", []) if r["arch"] not in new
    ]
    order = {a: i for i, a in enumerate(STUDY_BACKBONES)}
    return sorted(kept + rows, key=lambda r: order.get(r["arch"], len(order)))


def write_tables(rows: list[dict], args: argparse.Namespace) -> None:
    """Study-style table (AUC with CI, accuracy, sensitivity, specificity, F1, precision)."""
    cpu = platform.processor() or platform.machine()
    lines = [
        "# Reference models on the standard synthetic task",
        "",
        f"Dataset: {args.patients} synthetic patients (fast mode, seed {args.seed}), difficulty "
        f"{args.difficulty}; 224 px; trained on CPU ({machine_label()}: {os.cpu_count()} cores, "
        f"{cpu}). "
        "Threshold: Youden on the validation split; the test split tuned nothing.",
        "",
        "| backbone | split | n | AUC (95 % CI) | accuracy % | sensitivity % | specificity % "
        "| F1 | precision % | epochs (best) | train min |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for split in ("val", "test"):
            d = r[split]
            a, m = d["auc"], d["at_threshold"]

            def pct(k: str, m: dict = m) -> str:
                return f"{100 * m[k]['value']:.1f}"

            auc_cell = f"{a['auc']:.3f} ({a['ci_low']:.3f}-{a['ci_high']:.3f})"
            minutes = r["train_minutes"] if split == "val" else ""
            epochs = f"{r['epochs']} ({r['best_epoch']})" if split == "val" else ""
            lines.append(
                f"| {r['arch']} | {split} | {d['n']} | {auc_cell} | {pct('accuracy')} | "
                f"{pct('sensitivity')} | {pct('specificity')} | {m['f1']:.3f} | "
                f"{pct('precision')} | {epochs} | {minutes} |"
            )
    missing = [a for a in STUDY_BACKBONES if a not in {r["arch"] for r in rows}]
    if missing:
        lines += ["", f"Not measured in this run: {', '.join(missing)}."]
    lines += [
        "",
        "Study (Spine 2024), validation: AUC 0.861 / 0.852 / 0.865, accuracy 83.0 / 82.4 / 82.2 % "
        "(EfficientNet / MobileNet / MnasNet).",
    ]
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{machine_label()}-reference-models.md").write_text("\n".join(lines) + "\n")
    (args.results / f"{machine_label()}-reference-models.json").write_text(
        json.dumps(
            {
                "patients": args.patients,
                "difficulty": args.difficulty,
                "seed": args.seed,
                "machine": {"cpu": cpu, "cores": os.cpu_count()},
                "models": rows,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
