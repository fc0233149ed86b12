"""Latency and accuracy harness with gates: what ``edgevcf bench`` runs on the cart.

Latency is measured per bundle in a fresh process (so cold start is honest and peak RSS is the
bundle's own), with the profile's settings: warm-up, >= 200 timed batch-1 runs on a real
preprocessed radiograph (median, p90, p99, min, mean), throughput at each batch size, cold
start (bundle load incl. checksum verification -> first result), DICOM decode + preprocessing
timed apart from inference, and end to end DICOM -> decision.

Accuracy, when data is given, compares every bundle with the FP32 baseline on the *same* cases:
AUC with DeLong CI, paired ΔAUC with CI and p-value, non-inferiority at the profile's tolerance,
sensitivity / specificity / accuracy / F1 / precision at the bundled threshold with Wilson CIs,
decision flip rate with McNemar. The evaluated split must share no patient with the bundle's
calibration or tuning images (checked against the salted hashes the bundle records).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevcf import metrics, progress
from edgevcf.bundle import Bundle
from edgevcf.errors import CalibrationError, ConfigError, DataError
from edgevcf.machine import machine_info

log = logging.getLogger(__name__)

BENCH_SCHEMA_VERSION = 1
MIN_ITERATIONS = 200


def _stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    return {
        "median_ms": float(np.median(a)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "min_ms": float(a.min()),
        "mean_ms": float(a.mean()),
        "n": len(a),
    }


# ------------------------------------------------------------------ latency (child process)
def _latency_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process: cold start, batch-1 latency, throughput, preprocessing, e2e."""
    from edgevcf.runtime import Predictor

    progress.set_enabled(False)
    t0 = time.perf_counter()
    pred = Predictor.from_bundle(job["bundle"], job["backend"], threads=job["threads"])
    x1 = pred.bundle.golden().inputs[:1]
    pred.logits(x1)
    cold_ms = (time.perf_counter() - t0) * 1e3
    run = pred.backend.run
    for _ in range(job["warmup"]):
        run(x1)
    times = []
    for _ in range(job["iterations"]):
        t_ns = time.perf_counter_ns()
        run(x1)
        times.append((time.perf_counter_ns() - t_ns) / 1e6)
    out: dict[str, Any] = {
        "artifact": pred.artifact.name,
        "runtime": pred.artifact.runtime,
        "precision": pred.artifact.precision,
        "threads": job["threads"],
        "versions": type(pred.backend).versions(),
        "load_ms": pred.load_ms,
        "cold_start_ms": cold_ms,
        "batch1": _stats(times),
        "throughput": {},
    }
    golden = pred.bundle.golden().inputs
    for b in job["batch_sizes"]:
        xb = np.ascontiguousarray(np.resize(golden, (b, *golden.shape[1:])))
        pred.backend.run_all(xb)  # warm the shape
        reps = max(5, job["iterations"] // (4 * b))
        t1 = time.perf_counter()
        for _ in range(reps):
            pred.backend.run_all(xb)
        sec = time.perf_counter() - t1
        out["throughput"][str(b)] = {
            "images_per_s": b * reps / sec,
            "batched": not pred.backend.static_batch or pred.backend.static_batch >= b,
        }
    if job.get("dicom"):
        from edgevcf.data.io import read_image

        prep, e2e = [], []
        for _ in range(job["e2e_iterations"]):
            t1 = time.perf_counter()
            img, _ = read_image(job["dicom"])
            pred.input.prepare(pred.spec.to_unit(img), pred.spec)
            prep.append((time.perf_counter() - t1) * 1e3)
            t1 = time.perf_counter()
            pred.predict(job["dicom"])
            e2e.append((time.perf_counter() - t1) * 1e3)
        out["preprocess"] = _stats(prep)
        out["end_to_end"] = _stats(e2e)
        out["end_to_end_ratio"] = out["end_to_end"]["median_ms"] / out["batch1"]["median_ms"]
        out["dicom_shape"] = list(img.shape)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def _torch_latency_worker(job: dict[str, Any]) -> dict[str, Any]:
    """PyTorch eager FP32 batch-1 latency of the checkpoint (what a user would otherwise run).

    Fed the same real preprocessed radiographs as the bundles (a bundle's golden inputs), with
    the same warm-up, iteration count and threads, so the ratios are like for like.
    """
    import torch

    from edgevcf.models import load_checkpoint

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    model, _ = load_checkpoint(job["checkpoint"])
    model.eval()
    x1 = torch.from_numpy(np.ascontiguousarray(job["inputs"][:1]))
    times = []
    with torch.inference_mode():
        for _ in range(job["warmup"]):
            model(x1)
        for _ in range(job["iterations"]):
            t_ns = time.perf_counter_ns()
            model(x1)
            times.append((time.perf_counter_ns() - t_ns) / 1e6)
    return {
        "runtime": "pytorch-eager",
        "precision": "fp32",
        "threads": job["threads"] or torch.get_num_threads(),
        "versions": {"torch": torch.__version__},
        "batch1": _stats(times),
    }


def _timing(cfg: BenchConfig, bs: dict[str, Any]) -> dict[str, int]:
    """Threads, warm-up and timed runs: the command line's, else the profile's ``[bench]``."""
    return {
        "threads": cfg.threads if cfg.threads is not None else bs["threads"],
        "warmup": cfg.warmup if cfg.warmup is not None else bs["warmup"],
        "iterations": max(MIN_ITERATIONS, cfg.iterations or bs["iterations"]),
    }


def _baseline_latency(
    checkpoint: Path, targets: list[BenchItem], cfg: BenchConfig
) -> dict[str, Any] | None:
    """PyTorch eager latency of a checkpoint baseline, or None when no bundle's golden inputs
    are what the network takes (a one-channel graph input)."""
    from edgevcf.models import read_checkpoint_meta

    size = read_checkpoint_meta(checkpoint).preprocess.input_size
    for t in targets:
        inputs = t.bundle.golden().inputs
        if inputs.ndim == 4 and inputs.shape[1:] == (3, size, size):
            job = {
                "kind": "torch",
                "checkpoint": str(checkpoint),
                "inputs": np.asarray(inputs[:1], dtype=np.float32),
                **_timing(cfg, t.bundle.manifest["profile"]["bench"]),
            }
            with progress.step("latency PyTorch eager FP32 (baseline)"):
                return measure_latency(job, isolate=cfg.isolate)
    return None


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB).

    Linux's ``VmHWM`` belongs to the process image and restarts at exec; ``ru_maxrss`` does not
    (a spawned child inherits its parent's peak — measured: every bundle "used" the 4.2 GB of the
    training demo that spawned it), so it is only the fallback where /proc is absent.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_latency(job: dict[str, Any], *, isolate: bool = True) -> dict[str, Any]:
    """Run :func:`_latency_worker` (or the PyTorch one, ``kind: torch``) in a fresh (spawned)
    process, or here."""
    worker = _torch_latency_worker if job.get("kind") == "torch" else _latency_worker
    if not isolate:
        return worker(job)
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(1) as pool:
        result: dict[str, Any] = pool.apply(worker, (job,))
    return result


def sample_dicom(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The DICOM used for end-to-end timing: the user's, or the generator's full-size film
    (:func:`edgevcf.data.synth.sample_film`). None if none can be made."""
    if path is not None:
        return Path(path)
    from edgevcf.data.synth import sample_film

    return sample_film()


# ------------------------------------------------------------------ accuracy
@dataclass
class Scores:
    """Scores of one model on the evaluated split."""

    name: str
    probs: np.ndarray
    threshold: float


@dataclass
class BenchConfig:
    """What to run (CLI flags)."""

    split: str = "test"
    backend: str = "auto"
    threads: int | None = None
    iterations: int | None = None
    warmup: int | None = None
    batch_sizes: tuple[int, ...] | None = None
    dicom: Path | None = None
    latency: bool = True
    isolate: bool = True
    trust: Any = None  # an edgevcf.signing.Trust: only bundles signed by it are benched
    notes: list[str] = field(default_factory=list)


def _bundle_probs(bundle: Bundle, units_by_spec: Any, backend: str) -> np.ndarray:
    from edgevcf.runtime import Predictor, choose_artifact

    pred = Predictor(bundle, choose_artifact(bundle, backend))
    units = units_by_spec(bundle.preprocess)
    x = bundle.input.prepare(units, bundle.preprocess)
    z = pred.backend.run_all(x).reshape(-1)
    return metrics.sigmoid(z)


@dataclass(frozen=True)
class BenchItem:
    """One bench row: a bundle, and which engine/artefact of it runs."""

    bundle: Bundle
    backend: str
    label: str


def parse_targets(
    specs: list[str | os.PathLike[str]], backend: str = "auto", trust: Any = None
) -> list[BenchItem]:
    """``PATH`` or ``PATH:ARTIFACT`` (e.g. ``bundles/mobile:tflite``) -> bench rows (with
    ``trust``: each bundle's signer checked as it is loaded)."""
    out = []
    for spec in specs:
        text = str(spec)
        path, art = Path(text), backend
        if not path.exists() and ":" in text:
            head, _, tail = text.rpartition(":")
            if Path(head).exists():
                path, art = Path(head), tail
        b = Bundle.load(path, trust=trust)
        label = path.name if art == "auto" else f"{path.name}:{art}"
        out.append(BenchItem(b, art, label))
    if len({t.label for t in out}) != len(out):
        raise ConfigError("the same bundle (and engine) is named twice")
    return out


def check_disjoint(bundle: Bundle, patients: list[str], split: str) -> None:
    from edgevcf.calibration import overlap_with_record

    record = bundle.manifest.get("patients")
    if not record:
        raise CalibrationError(
            f"{bundle.path} records no calibration/tuning patients: cannot prove the "
            f"{split!r} split is disjoint from them",
            hint="re-export the bundle with this edgevcf",
        )
    overlap = overlap_with_record(patients, record)
    if any(overlap.values()):
        raise CalibrationError(
            f"the {split!r} split shares patients with {bundle.path.name}'s "
            f"calibration ({overlap['calibration']}) or tuning ({overlap['tuning']}) images",
            hint="benchmark accuracy on a split no export step saw (by default: test)",
        )


def accuracy(
    targets: list[BenchItem],
    data: str | os.PathLike[str],
    baseline: str | os.PathLike[str] | None,
    cfg: BenchConfig,
) -> dict[str, Any]:
    """Scores of the baseline and every bundle on the split, and their paired comparison."""
    from edgevcf.data.manifest import Manifest
    from edgevcf.dataset import load_split

    manifest = Manifest.load(data)
    sub = manifest.by_split(cfg.split)
    if not sub.studies:
        raise DataError(f"split {cfg.split!r} of {data} is empty")
    patients = sorted({s.patient_id for s in sub.studies})
    for t in targets:
        check_disjoint(t.bundle, patients, cfg.split)
    cache: dict[str, Any] = {}
    kept: list[Any] = []

    def units_by_spec(spec: Any) -> np.ndarray:
        key = spec.to_json()
        if key not in cache:
            split = load_split(manifest, cfg.split, spec, desc=f"preprocess {cfg.split}")
            cache[key] = split
            kept.append([s.path for s in split.studies])
        return np.asarray(cache[key].units)

    scores: list[Scores] = []
    gates: list[dict[str, Any]] = []
    for t in progress.track(targets, desc="accuracy", unit="bundle"):
        probs = _bundle_probs(t.bundle, units_by_spec, t.backend)
        scores.append(Scores(t.label, probs, t.bundle.threshold))
        gates.append(_gate_refusals(t.bundle, units_by_spec))
    if len({tuple(k) for k in kept}) > 1:
        raise DataError("bundles with different preprocessing skipped different images")
    split = next(iter(cache.values()))
    labels = split.labels
    if not 0 < int(labels.sum()) < len(labels):
        raise DataError(f"split {cfg.split!r} needs both classes to measure AUC")
    base: Scores | None = None
    if baseline is not None:
        base = _baseline_scores(Path(baseline), units_by_spec, cfg)
    rows = []
    for t, s, gate in zip(targets, scores, gates, strict=True):
        tol = t.bundle.manifest["profile"]["tolerance"]
        row: dict[str, Any] = {
            "bundle": s.name,
            "auc": metrics.auc_ci(labels, s.probs).to_dict(),
            "at_threshold": metrics.binary_metrics(labels, s.probs, s.threshold).to_dict(),
            "tolerance": tol,
            "quality_gate": gate,
        }
        if base is not None:
            g = metrics.accuracy_gate(
                labels,
                base.probs,
                s.probs,
                base.threshold,
                tol["max_auc_drop"],
                tol["max_flip_rate"],
                s.threshold,
            )
            assert g.paired is not None  # both classes: checked above
            row["paired_vs_baseline"] = g.paired.to_dict()
            row["flips"] = g.flips.to_dict()
            row["non_inferior"] = g.auc_ok
            row["flip_ok"] = g.flip_ok
        rows.append(row)
    out: dict[str, Any] = {
        "split": cfg.split,
        "n": len(labels),
        "n_pos": int(labels.sum()),
        "patients": len(patients),
        "skipped": [{"file": Path(p).name, "reason": r} for p, r in split.skipped],
        "bundles": rows,
        "roc": {
            s.name: [a.tolist() for a in metrics.roc_curve(labels, s.probs)[:2]] for s in scores
        },
    }
    if base is not None:
        out["baseline"] = {
            "name": base.name,
            "auc": metrics.auc_ci(labels, base.probs).to_dict(),
            "at_threshold": metrics.binary_metrics(labels, base.probs, base.threshold).to_dict(),
        }
        out["roc"]["baseline"] = [a.tolist() for a in metrics.roc_curve(labels, base.probs)[:2]]
    return out


def _gate_refusals(bundle: Bundle, units_by_spec: Any) -> dict[str, Any]:
    """How many evaluated images the bundle's learned quality gate would refuse.

    Accuracy stays measured on every image (the paired comparison needs the same cases); this
    only reports what a cart would have declined to score. Header and image rules need the
    files and are not applied here.
    """
    from edgevcf.quality import feature_matrix
    from edgevcf.runtime import load_gate

    gate = load_gate(bundle)
    units = units_by_spec(bundle.preprocess)
    if gate is None:
        return {"learned": False, "n": len(units), "n_refused": None}
    refused = gate.refuse(*gate.scores(feature_matrix(np.asarray(units, dtype=np.float32))))
    return {"learned": True, "n": len(units), "n_refused": int(refused.sum())}


def _baseline_scores(path: Path, units_by_spec: Any, cfg: BenchConfig) -> Scores:
    """FP32 reference: a checkpoint (PyTorch eager) or a bundle."""
    if path.is_dir():
        b = Bundle.load(path)
        return Scores(f"baseline {path}", _bundle_probs(b, units_by_spec, cfg.backend), b.threshold)
    from edgevcf.models import load_checkpoint, predict

    model, meta = load_checkpoint(path)
    probs = predict(model, units_by_spec(meta.preprocess), meta.preprocess)
    return Scores(f"baseline {path.name} (PyTorch eager FP32)", probs, meta.threshold)


# ------------------------------------------------------------------ the whole bench
def bench(
    bundle_paths: list[str | os.PathLike[str]],
    *,
    data: str | os.PathLike[str] | None = None,
    baseline: str | os.PathLike[str] | None = None,
    cfg: BenchConfig | None = None,
) -> dict[str, Any]:
    """Benchmark bundles; returns the report (see ``docs`` in the README for its schema)."""
    from edgevcf.runtime import choose_artifact

    cfg = cfg or BenchConfig()
    if not bundle_paths:
        raise ConfigError("no bundle given")
    targets = parse_targets(bundle_paths, cfg.backend, cfg.trust)
    report: dict[str, Any] = {
        "schema_version": BENCH_SCHEMA_VERSION,
        "machine": machine_info(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "bundles": [],
    }
    dicom = sample_dicom(cfg.dicom) if cfg.latency else None
    if cfg.latency and dicom is None:
        cfg.notes.append("no DICOM for end-to-end timing (pass --dicom FILE)")
    for t in targets:
        b = t.bundle
        prof = b.manifest["profile"]
        bs = prof["bench"]
        entry: dict[str, Any] = {
            "bundle": t.label,
            "path": str(b.path),
            "model_id": b.id,
            "profile": prof["name"],
            "target": b.manifest["target"],
            "precision": b.manifest["precision"],
            "backbone": b.manifest["backbone"],
            "size_bytes": sum(
                (b.path / f).stat().st_size for f in choose_artifact(b, t.backend).files()
            ),
            "latency_budget_ms": bs["latency_budget_ms"],
        }
        if cfg.latency:
            job = {
                "bundle": str(b.path),
                "backend": t.backend,
                **_timing(cfg, bs),
                "batch_sizes": list(cfg.batch_sizes or bs["batch_sizes"]),
                "dicom": str(dicom) if dicom else None,
                "e2e_iterations": 20,
            }
            with progress.step(f"latency {t.label}"):
                entry["latency"] = measure_latency(job, isolate=cfg.isolate)
            if b.manifest["target"] == "jetson" and entry["latency"]["runtime"] == "onnxruntime":
                entry["latency"]["note"] = (
                    "ONNX Runtime CPU stand-in for the TensorRT engine: not a Jetson latency"
                )
        report["bundles"].append(entry)
    if cfg.latency and baseline is not None and Path(baseline).is_file():
        base_lat = _baseline_latency(Path(baseline), targets, cfg)
        if base_lat is not None:
            report["baseline_latency"] = base_lat
    if data is not None:
        report["accuracy"] = accuracy(targets, data, baseline, cfg)
    report["gates"] = gates(report)
    report["passed"] = all(g["passed"] is not False for g in report["gates"])
    report["notes"] = cfg.notes
    return report


def gates(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Pass/fail per bundle: AUC non-inferiority, flip rate, latency budget (None = not run)."""
    acc = {r["bundle"]: r for r in report.get("accuracy", {}).get("bundles", [])}
    out = []
    for e in report["bundles"]:
        a = acc.get(e["bundle"], {})
        lat = e.get("latency")
        g = {
            "bundle": e["bundle"],
            "auc_non_inferior": a.get("non_inferior"),
            "flip_rate_ok": a.get("flip_ok"),
            "latency_ok": (
                lat["batch1"]["median_ms"] <= e["latency_budget_ms"]
                if lat and not lat.get("note")
                else None
            ),
        }
        checks = [v for k, v in g.items() if k != "bundle" and v is not None]
        g["passed"] = all(checks) if checks else None
        out.append(g)
    return out
