"""DICOM to decision, stage by stage, for the input kinds a cart meets — before and after a change.

For each bundle and each kind of film, median milliseconds of:

- **floor**: reading the file's bytes and one pass over its pixels
  (:func:`edgevcf.latency.pixel_floor`, timed by this script itself: it is the same on both sides)
  — what no reader can avoid;
- **read**: the bundle's ``Preprocess.read`` (``read_image`` for version 1: parse, decode,
  Modality LUT, VOI, inversion, checks; version 2 box-reduces the stored pixels first);
- **preprocess**: ``Preprocess.to_unit`` + ``InputSpec.prepare`` on the read image;
- **quality**, **model**: the quality gate and the engine, as ``Predictor.predict`` times them;
- **end to end**: ``Predictor.predict(path)``, file to decision;

and the throughput of ``predict_many`` over 16 copies of the full-size film. ``--before REV``
measures the same with edgevcf as it was at git revision ``REV`` (a worktree on ``PYTHONPATH``),
in alternating rounds, so before and after are measured side by side on the same machine state.
Each measurement runs in a fresh process (this script with ``--worker``) that imports only the
stable API (``read_image``, ``Predictor``), so any revision can be measured.

    python benchmarks/e2e_latency.py demo-out/bundles/openvino-int8 \\
        demo-out/bundles/onnx-cpu-int8 --before ba9cca5 --rounds 4
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
STAGES = ("floor", "read", "preprocess", "quality", "model", "end_to_end")


# ------------------------------------------------------------------ the films
def make_films(out: Path) -> dict[str, tuple[Path, str]]:
    """The input kinds, derived from the generator's full-size DX film: name -> (file, note)."""
    import pydicom
    from PIL import Image

    from edgevcf.data.synth import sample_film

    src = sample_film()
    if src is None:
        raise SystemExit("needs scipy for the synthetic film: pip install 'edgevcf[synth]'")
    out.mkdir(parents=True, exist_ok=True)
    films: dict[str, tuple[Path, str]] = {}
    ds = pydicom.dcmread(src)
    films["dx-window"] = (Path(src), f"DX {ds.Columns}x{ds.Rows}, 12 of 16 bits, rescale + window")
    cr = pydicom.dcmread(src)
    cr.Modality, cr.PhotometricInterpretation = "CR", "MONOCHROME1"
    cr.RescaleSlope, cr.RescaleIntercept = "0.5", "-20"
    cr.WindowCenter, cr.WindowWidth = "1000", "1800"
    cr.save_as(out / "cr-mono1.dcm")
    films["cr-mono1-rescale"] = (out / "cr-mono1.dcm", "CR MONOCHROME1, rescale, window")
    voi = pydicom.dcmread(src)
    item = pydicom.Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    item.LUTData = (4095 * (np.arange(4096) / 4095) ** 0.6).astype("<u2").tobytes()
    voi.VOILUTSequence = [item]
    del voi.WindowCenter, voi.WindowWidth
    voi.save_as(out / "voi-lut.dcm")
    films["voi-lut-sequence"] = (out / "voi-lut.dcm", "VOI LUT Sequence (4,096 entries)")
    for name, uid in (("jpeg-ls", pydicom.uid.JPEGLSLossless),
                      ("jpeg2000", pydicom.uid.JPEG2000Lossless)):  # fmt: skip
        enc = pydicom.dcmread(src)
        try:
            enc.compress(uid)
            enc.save_as(out / f"{name}.dcm")
            films[f"{name}-lossless"] = (out / f"{name}.dcm", f"{uid.name}")
        except Exception as exc:  # no encoder here: the kind is reported as not measured
            films[f"{name}-lossless"] = (Path(), f"not measured: no encoder ({exc})"[:120])
    px = ds.pixel_array.astype(np.uint16) << 4
    Image.fromarray(px).save(out / "film16.png")
    films["png-16bit"] = (out / "film16.png", "16-bit greyscale PNG, same pixels")
    return films


# ------------------------------------------------------------------ one measurement (worker)
def _median_ms(fn: Any, n: int) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def _preprocess(pred: Any, img: np.ndarray) -> None:
    pred.input.prepare(pred.spec.to_unit(img), pred.spec)


def worker(job: dict[str, Any]) -> dict[str, Any]:
    """Every stage of every (bundle, film), ``n`` times each; samples in ms."""
    import edgevcf
    from edgevcf import progress
    from edgevcf.data.io import read_image
    from edgevcf.runtime import Predictor

    progress.set_enabled(False)
    out: dict[str, Any] = {"edgevcf_file": edgevcf.__file__, "rows": {}}
    n = job["n"]
    for bundle in job["bundles"]:
        try:
            pred = Predictor.from_bundle(bundle, threads=job["threads"])
        except Exception as exc:  # e.g. a bundle of a newer preprocessing version: not here
            out["refused"] = {**out.get("refused", {}), bundle: str(exc)[:200]}
            continue
        label = f"{Path(bundle).name} (spec v{pred.spec.version})"
        x1 = pred.bundle.golden().inputs[:1]
        model = _median_ms(partial(pred.backend.run, x1), n)
        # as the bundle's preprocessing version reads (Preprocess.read; before it: read_image)
        read = getattr(pred.spec, "read", read_image)
        for film in job["films"].values():  # warm every film once: page cache, first calls
            read(Path(film))
        for name, film in job["films"].items():
            p = Path(film)
            img, _ = read(p)
            row: dict[str, list[float]] = {
                "read": _median_ms(partial(read, p), n),
                "preprocess": _median_ms(partial(_preprocess, pred, img), n),
                "model": model,
                "quality": [],
                "end_to_end": [],
            }
            status = set()
            pred.predict(p)
            for _ in range(job["n"]):
                t = time.perf_counter()
                r = pred.predict(p)
                row["end_to_end"].append((time.perf_counter() - t) * 1e3)
                row["quality"].append(float(r.timings_ms.get("quality_ms", 0.0)))
                status.add(r.status)
            out["rows"][f"{label}|{name}"] = {**row, "status": sorted(status)}
        many = [job["films"][job["many_film"]]] * 16
        pred.predict_many(many)
        t = time.perf_counter()
        for _ in range(3):
            pred.predict_many(many)
        out["rows"][f"{label}|predict_many"] = {"films_per_s": [48 / (time.perf_counter() - t)]}
    return out


# ------------------------------------------------------------------ the run
def _worktree(rev: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="edgevcf-before-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
                   check=True, capture_output=True)  # fmt: skip
    return path


def _run(job: dict[str, Any], pythonpath: Path | None) -> dict[str, Any]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
    res = subprocess.run([sys.executable, __file__, "--worker", f.name], env=env,
                         capture_output=True, text=True, check=False)  # fmt: skip
    os.unlink(f.name)
    if res.returncode != 0:
        raise SystemExit(f"worker failed:\n{res.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(res.stdout.splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundles", nargs="*", type=Path)
    ap.add_argument("--before", metavar="REV", help="also measure edgevcf at this git revision")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--n", type=int, default=15, help="timed runs per stage per round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--name", help="results file stem (default: <machine>-e2e)")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(json.loads(a.worker.read_text()))))
        return
    if not a.bundles:
        ap.error("give at least one bundle")
    from edgevcf.machine import machine_info, machine_label

    work = Path(tempfile.mkdtemp(prefix="edgevcf-e2e-"))
    films = make_films(work / "films")
    measurable = {k: str(p) for k, (p, note) in films.items() if not note.startswith("not ")}
    job = {"bundles": [str(b.resolve()) for b in a.bundles], "films": measurable,
           "n": a.n, "threads": a.threads, "many_film": "dx-window"}  # fmt: skip
    sides: dict[str, Path | None] = {"after": None}
    if a.before:
        sides = {"before": _worktree(a.before), "after": None}
    samples: dict[str, dict[str, Any]] = {s: {} for s in sides}
    rounds: dict[str, dict[str, list[float]]] = {s: {} for s in sides}
    rng = random.Random(0)
    where = {}
    refused: dict[str, dict[str, str]] = {}
    from edgevcf.latency import pixel_floor
    from edgevcf.runtime import keep_freed_memory

    keep_freed_memory()  # as in a cart's process: the floor is the best case
    floors: dict[str, list[float]] = {}
    for r in range(a.rounds):
        for name, film in measurable.items():  # the same for every revision: timed here
            call, _ = pixel_floor(film)
            floors.setdefault(name, []).extend(_median_ms(call, a.n))
        order = list(sides)
        rng.shuffle(order)
        for side in order:
            t0 = time.perf_counter()
            res = _run(job, sides[side])
            where[side] = res["edgevcf_file"]
            refused.setdefault(side, {}).update(res.get("refused", {}))
            for key, row in res["rows"].items():
                dst = samples[side].setdefault(key, {})
                for stage, values in row.items():
                    if stage == "status":
                        dst["status"] = values
                        continue
                    dst.setdefault(stage, []).extend(values)
                    if stage == "end_to_end":
                        rounds[side].setdefault(key, []).append(statistics.median(values))
            print(f"round {r + 1}/{a.rounds} {side}: {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr)  # fmt: skip
    for path in sides.values():
        if path is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                           check=False, capture_output=True)  # fmt: skip
    report = {
        "machine": machine_info(),
        "before": a.before,
        "after": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "edgevcf_imported_from": where,
        "refused": refused,
        "rounds": a.rounds,
        "n_per_round": a.n,
        "threads": a.threads,
        "films": {k: {"file": p.name, "note": note} for k, (p, note) in films.items()},
        "medians_ms": {
            side: {
                k: {s: float(np.median(v)) for s, v in row.items() if s != "status"}
                | {"status": row.get("status")}
                | (
                    {"floor": float(np.median(floors[k.split("|")[1]]))}
                    if k.split("|")[1] in floors
                    else {}
                )
                for k, row in rows.items()
            }
            for side, rows in samples.items()
        },
        "end_to_end_round_medians_ms": rounds,
    }
    from edgevcf.report import write_results

    text = markdown(report)
    write_results(a.results / (a.name or f"{machine_label(report['machine'])}-e2e"), report, text)
    print(text)


def markdown(report: dict[str, Any]) -> str:
    """The results table: per bundle and film, each stage before -> after, and the ratios."""
    from edgevcf.machine import machine_label

    m = report["machine"]
    before, after = report["medians_ms"].get("before"), report["medians_ms"]["after"]
    lines = [
        f"# DICOM to decision, stage by stage: {machine_label(m)}",
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cpu_count')} cores, ISA "
        f"{' '.join(m.get('cpu_isa', []))}, governor {m.get('governor', 'n/a')}; "
        f"{report['threads']} engine threads. {report['rounds']} alternating rounds x "
        f"{report['n_per_round']} timed runs per stage; medians in ms. "
        + (f"Before = edgevcf at {report['before']}, after = {report['after']}, measured in the "
           "same run (a bundle the earlier revision cannot read, e.g. of preprocessing version "
           "2, has after only)." if before else f"edgevcf at {report['after']}."),
        "",
        "Films (all from the generator's full-size film, 2,493 x 2,029):",
        "",
    ]  # fmt: skip
    lines += [f"- `{k}`: {v['note']}" for k, v in report["films"].items()]
    lines += [
        "",
        "| bundle | film | floor | read | preprocess | quality | model | end to end | e2e / model "
        "| e2e - floor |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in after.items():
        if key.endswith("|predict_many"):
            continue
        bundle, film = key.split("|")
        prev = (before or {}).get(key, {})

        def cell(stage: str, row: dict[str, Any] = row, prev: dict[str, Any] = prev) -> str:
            now = f"{row[stage]:.1f}"
            return f"{prev[stage]:.1f} -> {now}" if stage in prev else now

        lines.append(
            f"| {bundle} | {film} | " + " | ".join(cell(s) for s in STAGES)
            + f" | {row['end_to_end'] / row['model']:.1f}x"
            + (f" (was {prev['end_to_end'] / prev['model']:.1f}x)" if prev else "")
            + f" | {row['end_to_end'] - row['floor']:.1f} |"
        )  # fmt: skip
    lines += ["", "| bundle | predict_many, 16 full-size films: films/s |", "|---|---|"]
    for key, row in after.items():
        if key.endswith("|predict_many"):
            prev = (before or {}).get(key)
            was = f"{prev['films_per_s']:.1f} -> " if prev else ""
            lines.append(f"| {key.split('|')[0]} | {was}{row['films_per_s']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
