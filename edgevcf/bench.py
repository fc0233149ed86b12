"""Latency and accuracy harness with gates: what ``edgevcf bench`` runs on the cart.

Latency is measured on :mod:`edgevcf.latency`'s live workers, one spawned process per bundle
(and one for a checkpoint baseline in PyTorch eager), so cold start is honest and peak RSS is
the bundle's own, with the profile's settings: warm-up, then SingleStream as MLPerf reports it
(batch-1 queries on a real preprocessed radiograph, one after another: median, p90, p99, min,
mean, with the number of queries and their duration; by default at least 1,024 queries and
60 s per row, ``quick``: at least 200 and no duration), Offline (images/s at each batch size,
and the best of them), cold start (bundle load incl. checksum verification -> first result),
the floor (file read + one pass over the pixels), DICOM decode + preprocessing timed apart from
inference, and end to end DICOM -> decision. ``rounds`` > 1 keeps every row's worker alive and
takes batch-1 latency in interleaved rounds across them, so the ratios between rows are measured
side by side (and the per-round medians show the spread); the minimums are totals over rounds.

Accuracy, when data is given, compares every bundle with the FP32 baseline on the *same* cases:
AUC with DeLong CI, paired ΔAUC with CI and p-value, non-inferiority at the profile's tolerance,
sensitivity / specificity / accuracy / F1 / precision at the bundled threshold with Wilson CIs,
decision flip rate with McNemar. The evaluated split must share no patient with the bundle's
calibration or tuning images (checked against the salted hashes the bundle records).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevcf import metrics, progress
from edgevcf.bundle import Bundle
from edgevcf.errors import CalibrationError, ConfigError, DataError
from edgevcf.latency import (
    BundleRow,
    Row,
    RowSamples,
    TorchRow,
    Worker,
    interleaved_latency,
    open_predictor,
    stats,
    timed_latency,
)
from edgevcf.machine import machine_info

log = logging.getLogger(__name__)

BENCH_SCHEMA_VERSION = 1
MIN_ITERATIONS = 200  # batch-1 queries per round, in either mode (and all of ``quick``'s minimum)
#: MLPerf's SingleStream minimums, per row, totals over all rounds (what ``full`` mode asks).
FULL_MIN_QUERIES = 1024
FULL_MIN_DURATION_S = 60.0
BASELINE_LABEL = "PyTorch eager FP32 (baseline)"


E2E_ITERATIONS = 20


# ------------------------------------------------------------------ latency
@dataclass(frozen=True)
class SingleStreamPlan:
    """How many batch-1 queries, and how long, one row is timed for.

    ``full`` follows MLPerf's SingleStream: a p90 of fewer than 1,024 queries, or of a run too
    short to see the machine's slow phases (turbo ending, a neighbour VM), is no claim.
    ``quick`` is a look, labelled as such in every report. The minimums are totals over all
    ``rounds``, met round by round (``per_round`` queries and ``per_round_s`` seconds each).
    """

    mode: str  # "full" or "quick"
    rounds: int
    per_round: int
    per_round_s: float

    @property
    def min_queries(self) -> int:
        return self.per_round * self.rounds

    @property
    def min_duration_s(self) -> float:
        return self.per_round_s * self.rounds


def single_stream_plan(quick: bool, iterations: int | None, rounds: int = 1) -> SingleStreamPlan:
    """The plan for one row: ``iterations`` (the command line's or the profile's) is a floor
    on queries per round; ``full`` adds 1,024 queries and 60 s in all, spread over ``rounds``."""
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, not {rounds}")
    per_round = max(MIN_ITERATIONS, iterations or 0)
    if quick:
        return SingleStreamPlan("quick", rounds, per_round, 0.0)
    per_round = max(per_round, math.ceil(FULL_MIN_QUERIES / rounds))
    return SingleStreamPlan("full", rounds, per_round, FULL_MIN_DURATION_S / rounds)


@dataclass(frozen=True)
class _LatencyJob:
    """One row to time: what its worker runs, and the settings it is timed with."""

    label: str
    row: Row
    timing: dict[str, int]
    plan: SingleStreamPlan
    batch_sizes: tuple[int, ...] = ()
    dicom: Path | None = None


def _timing(cfg: BenchConfig, bs: dict[str, Any]) -> dict[str, int]:
    """Threads, warm-up and timed runs: the command line's, else the profile's ``[bench]``."""
    return {
        "threads": cfg.threads if cfg.threads is not None else bs["threads"],
        "warmup": cfg.warmup if cfg.warmup is not None else bs["warmup"],
        "iterations": max(MIN_ITERATIONS, cfg.iterations or bs["iterations"]),
    }


def _plan(cfg: BenchConfig, timing: dict[str, int]) -> SingleStreamPlan:
    return single_stream_plan(cfg.quick, timing["iterations"], cfg.rounds)


def _bundle_job(t: BenchItem, cfg: BenchConfig, dicom: Path | None) -> _LatencyJob:
    bs = t.bundle.manifest["profile"]["bench"]
    timing = _timing(cfg, bs)
    row = BundleRow(t.bundle.path, t.backend, threads=timing["threads"])
    sizes = tuple(cfg.batch_sizes or bs["batch_sizes"])
    return _LatencyJob(t.label, row, timing, _plan(cfg, timing), sizes, dicom)


def _baseline_job(
    checkpoint: Path, targets: list[BenchItem], cfg: BenchConfig
) -> _LatencyJob | None:
    """The checkpoint baseline's PyTorch eager row, fed the golden inputs of the first bundle
    whose graph takes what the network takes; None when none does (a one-channel graph input)."""
    from edgevcf.intake.reference import read_reference_meta

    size = read_reference_meta(checkpoint).preprocess.input_size
    for t in targets:
        inputs = t.bundle.golden().inputs
        if inputs.ndim == 4 and inputs.shape[1:] == (3, size, size):
            timing = _timing(cfg, t.bundle.manifest["profile"]["bench"])
            row = TorchRow(checkpoint, t.bundle.path, threads=timing["threads"])
            return _LatencyJob(BASELINE_LABEL, row, timing, _plan(cfg, timing))
    return None


def _batch1(samples: RowSamples, plan: SingleStreamPlan) -> dict[str, Any]:
    """SingleStream as MLPerf reports it: the percentiles with the queries and the duration
    they came from, and the minimums they were held to."""
    ms = samples.samples
    out: dict[str, Any] = stats(ms)
    out.update(
        queries=len(ms),
        duration_s=float(sum(ms)) / 1e3,  # the timed queries' own time, as the minimum counts
        mode=plan.mode,
        min_queries=plan.min_queries,
        min_duration_s=plan.min_duration_s,
    )
    if len(samples.rounds) > 1:
        out["round_medians_ms"] = samples.round_medians_ms
    return out


def offline(throughput: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Offline as MLPerf reports it: the images/s of the batch size that gave the most, among
    those measured (``throughput`` keyed by batch size); None when none was."""
    if not throughput:
        return None
    batch, best = max(throughput.items(), key=lambda kv: kv[1]["images_per_s"])
    return {"batch": int(batch), "images_per_s": best["images_per_s"], "batched": best["batched"]}


def _finish(w: Worker, job: _LatencyJob, samples: RowSamples) -> dict[str, Any]:
    """The rest of a row's measurements on its live worker, then close it: the report entry."""
    info = w.info
    if isinstance(job.row, TorchRow):
        w.close()
        keys = ("runtime", "precision", "threads", "versions")
        return {**{k: info[k] for k in keys}, "batch1": _batch1(samples, job.plan)}
    out: dict[str, Any] = {
        **{k: info[k] for k in ("artifact", "runtime", "precision", "threads", "versions")},
        "load_ms": info["load_ms"],
        "cold_start_ms": w.cold_start_ms,
        "batch1": _batch1(samples, job.plan),
        "throughput": {},
    }
    for b in job.batch_sizes:
        out["throughput"][str(b)] = w.throughput(b, max(5, job.timing["iterations"] // (4 * b)))
    best = offline(out["throughput"])
    if best is not None:
        out["offline"] = best
    if job.dicom is not None:
        e = w.end_to_end(job.dicom, E2E_ITERATIONS)
        out["floor"] = {**stats(e["floor"]), "method": e["floor_method"]}
        out["preprocess"] = stats(e["preprocess"])
        out["end_to_end"] = stats(e["end_to_end"])
        out["end_to_end_ratio"] = out["end_to_end"]["median_ms"] / out["batch1"]["median_ms"]
        out["dicom_shape"] = e["shape"]
    out["peak_rss_mb"] = w.close()
    return out


def _measure_latencies(jobs: list[_LatencyJob], cfg: BenchConfig) -> dict[str, dict[str, Any]]:
    """Every row's latency entry, by label, each row on its own live :class:`Worker`.

    ``cfg.rounds`` 1: one row at a time, measured in one go (cold start, warm-up, timed runs,
    throughput, end to end) and closed before the next starts. More: every row's worker alive
    at once, batch-1 latency in ``rounds`` interleaved rounds (see
    :func:`edgevcf.latency.interleaved_latency`), then the rest row by row. Either way each
    row's SingleStream plan (:func:`single_stream_plan`) is met over all its rounds.
    """
    out: dict[str, dict[str, Any]] = {}
    if cfg.rounds <= 1:
        for job in jobs:
            with (
                progress.step(f"latency {job.label}"),
                Worker(job.label, job.row, isolate=cfg.isolate) as w,
            ):
                p = job.plan
                ms = timed_latency(w, p.per_round, p.per_round_s, job.timing["warmup"])
                out[job.label] = _finish(w, job, RowSamples([ms]))
        return out
    with contextlib.ExitStack() as stack:
        workers = []
        for job in jobs:
            with progress.step(f"load {job.label}"):
                workers.append(stack.enter_context(Worker(job.label, job.row, isolate=cfg.isolate)))
        with progress.step(f"latency: {cfg.rounds} interleaved rounds over {len(jobs)} rows"):
            samples = interleaved_latency(
                workers,
                cfg.rounds,
                {j.label: j.plan.per_round for j in jobs},
                warmup={j.label: j.timing["warmup"] for j in jobs},
                min_round_s={j.label: j.plan.per_round_s for j in jobs},
            )
        for job, w in zip(jobs, workers, strict=True):
            rest = ": throughput, end to end" if isinstance(job.row, BundleRow) else ""
            with progress.step(f"latency {job.label}{rest}"):
                out[job.label] = _finish(w, job, samples[job.label])
    return out


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
    quick: bool = False  # SingleStream minimum of 200 queries, no duration (default: MLPerf's)
    rounds: int = 1  # > 1: batch-1 latency in interleaved rounds across the rows' live workers
    isolate: bool = True  # False: every row's worker runs in this process (tests)
    trust: Any = None  # an edgevcf.signing.Trust: only bundles signed by it are benched
    ray: Any = None  # an edgevcf.scale.RayPlan: the accuracy's scoring on a Ray cluster
    notes: list[str] = field(default_factory=list)


def _bundle_probs(bundle: Bundle, units_by_spec: Any, backend: str) -> np.ndarray:
    """P(positive) of every evaluated image, on the same path as the latency rows: the
    :class:`edgevcf.runtime.Predictor` that :func:`edgevcf.latency.open_predictor` opens (same
    artefact choice), its preprocessing spec and input form, its backend's ``run_all``. The
    engine's own thread count: the scores must not depend on a bench setting."""
    pred = open_predictor(bundle, backend)
    units = units_by_spec(pred.spec)
    x = pred.input.prepare(units, pred.spec)
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
    if cfg.ray is not None:
        labels, skipped, on_ray = _accuracy_on_ray(targets, manifest, sub, baseline, cfg)
        for t, (probs, gate) in zip(targets, on_ray[: len(targets)], strict=True):
            scores.append(Scores(t.label, probs, t.bundle.threshold))
            gates.append(gate)
    else:
        for t in progress.track(targets, desc="accuracy", unit="bundle"):
            probs = _bundle_probs(t.bundle, units_by_spec, t.backend)
            scores.append(Scores(t.label, probs, t.bundle.threshold))
            gates.append(_gate_refusals(t.bundle, units_by_spec))
        if len({tuple(k) for k in kept}) > 1:
            raise DataError("bundles with different preprocessing skipped different images")
        split = next(iter(cache.values()))
        labels, skipped = split.labels, split.skipped
    if not 0 < int(labels.sum()) < len(labels):
        raise DataError(f"split {cfg.split!r} needs both classes to measure AUC")
    base: Scores | None = None
    if baseline is not None and cfg.ray is not None and Path(baseline).is_dir():
        b = Bundle.load(baseline)
        base = Scores(f"baseline {baseline}", on_ray[-1][0], b.threshold)
    elif baseline is not None:
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
            g = metrics.gate_for(tol, labels, base.probs, s.probs, base.threshold, s.threshold)
            assert g.paired is not None  # both classes: checked above
            row["paired_vs_baseline"] = g.paired.to_dict()
            row["flips"] = g.flips.to_dict()
            row["non_inferior"] = g.auc_ok
            row["flip_ok"] = g.flip_ok
            row["operating_point_ok"] = g.point_ok
            row["gate"] = g.to_dict()
        rows.append(row)
    out: dict[str, Any] = {
        "split": cfg.split,
        "n": len(labels),
        "n_pos": int(labels.sum()),
        "patients": len(patients),
        "skipped": [{"file": Path(p).name, "reason": r} for p, r in skipped],
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


def _accuracy_on_ray(
    targets: list[BenchItem], manifest: Any, sub: Any, baseline: Any, cfg: BenchConfig
) -> tuple[np.ndarray, list[tuple[str, str]], list[tuple[np.ndarray, dict[str, Any]]]]:
    """The split scored on a Ray cluster (:mod:`edgevcf.scale`): every bundle's (and a bundle
    baseline's) P(positive) on the films every one of them could read, and what its quality gate
    (all its stages, from the files) would refuse; the labels; the films skipped as unreadable."""
    from edgevcf.score import examine_films
    from edgevcf.site.score import CHUNK

    paths = [str(s.resolve(manifest.root)) for s in sub.studies]
    items = [(p, dict(s.extra)) for p, s in zip(paths, sub.studies, strict=True)]
    runs = [(t.bundle.path, t.backend) for t in targets]
    if baseline is not None and Path(baseline).is_dir():
        runs.append((Path(baseline), cfg.backend))
    done = []
    for path, backend in runs:
        got: list[Any] = [None] * len(items)
        _, _, batches = examine_films(
            path, items, batch_size=CHUNK, gated=False, backend=backend, ray=cfg.ray,
            desc=f"score {path.name}",
        )  # fmt: skip
        for batch in batches:
            for i, e, _ in batch:
                got[i] = e
        done.append(got)
    keep = [i for i in range(len(items)) if all(d[i].logit is not None for d in done)]
    kept = set(keep)
    skipped = [(paths[i], next(d[i].reason for d in done if d[i].logit is None))
               for i in range(len(items)) if i not in kept]  # fmt: skip
    out = []
    for d in done:
        probs = metrics.sigmoid(np.array([d[i].logit for i in keep]))
        refused = sum(1 for i in keep if d[i].status == "not_assessable")
        out.append(
            (
                probs,
                {
                    "learned": any(d[i].verdict is not None and d[i].verdict.learned for i in keep),
                    "n": len(keep),
                    "n_refused": refused,
                    "stages": "header, image and learned (from the files, on Ray)",
                },
            )
        )
    labels = np.array([int(sub.studies[i].label) for i in keep], dtype=np.int64)
    return labels, skipped, out


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
    from edgevcf.intake.reference import load_reference, reference_kind, reference_probs

    model, meta, ref_onnx = load_reference(path)
    probs = reference_probs(model, ref_onnx, units_by_spec(meta.preprocess), meta.preprocess)
    how = ("ONNX reference, ONNX Runtime FP32" if model is None else
           "PyTorch eager FP32" if reference_kind(meta) == "eager" else "PyTorch FP32")  # fmt: skip
    return Scores(f"baseline {path.name} ({how})", probs, meta.threshold)


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
        "mode": "quick" if cfg.quick else "full",
        "bundles": [],
    }
    if cfg.rounds < 1:
        raise ConfigError(f"rounds must be >= 1, not {cfg.rounds}")
    dicom = sample_dicom(cfg.dicom) if cfg.latency else None
    if cfg.latency and dicom is None:
        cfg.notes.append("no DICOM for end-to-end timing (pass --dicom FILE)")
    for t in targets:
        b = t.bundle
        prof = b.manifest["profile"]
        report["bundles"].append(
            {
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
                "latency_budget_ms": prof["bench"]["latency_budget_ms"],
            }
        )
    if cfg.latency:
        jobs = [_bundle_job(t, cfg, dicom) for t in targets]
        base_job = None
        from edgevcf.intake.reference import is_onnx_reference

        if baseline is not None and Path(baseline).is_file() and is_onnx_reference(baseline):
            cfg.notes.append("no PyTorch eager latency row: the baseline is an ONNX reference")
        elif baseline is not None and Path(baseline).is_file():
            base_job = _baseline_job(Path(baseline), targets, cfg)
        lat = _measure_latencies([*jobs, *([base_job] if base_job else [])], cfg)
        for t, entry in zip(targets, report["bundles"], strict=True):
            entry["latency"] = lat[t.label]
            if t.bundle.manifest["target"] == "jetson" and lat[t.label]["runtime"] == "onnxruntime":
                entry["latency"]["note"] = (
                    "ONNX Runtime CPU stand-in for the TensorRT engine: not a Jetson latency"
                )
        if base_job is not None:
            report["baseline_latency"] = lat[base_job.label]
    if data is not None:
        report["accuracy"] = accuracy(targets, data, baseline, cfg)
    report["gates"] = gates(report)
    report["passed"] = all(g["passed"] is not False for g in report["gates"])
    report["notes"] = cfg.notes
    return report


def gates(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Pass/fail per bundle: AUC non-inferiority, Δsensitivity/Δspecificity at the threshold, flip
    rate, latency budget (None = not run)."""
    acc = {r["bundle"]: r for r in report.get("accuracy", {}).get("bundles", [])}
    out = []
    for e in report["bundles"]:
        a = acc.get(e["bundle"], {})
        lat = e.get("latency")
        g = {
            "bundle": e["bundle"],
            "auc_non_inferior": a.get("non_inferior"),
            "operating_point_ok": a.get("operating_point_ok"),
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
