"""``--precision auto``: the fastest bundle that passes the gate, on the machine at hand.

Which precision is fastest depends on the CPU (measured: on an Intel Xeon with AMX, ONNX
Runtime INT8 is slower than its FP32 and OpenVINO BF16 within 5 % of OpenVINO INT8; on AMD Zen 4
OpenVINO INT8 is 2x FP32) and which one keeps the accuracy depends on the backbone. So every
candidate the target offers here (:meth:`edgevcf.targets.base.Target.precision_candidates`,
fastest expected first) is built and gated on the tuning split exactly as a plain export would
(its fallbacks included), then all of them are timed at batch 1 in interleaved rounds in this
process, and the fastest that passes is the bundle. The manifest's ``precision_search`` records
every candidate — skipped ones with the reason, failed builds with the error — with its latency,
ΔAUC CI, Δsensitivity/Δspecificity, flip rate and the criteria it failed, and why the winner won;
``edgevcf bench`` confirms on the test split.
"""

from __future__ import annotations

import dataclasses
import shutil
from typing import TYPE_CHECKING, Any

from edgevcf import progress
from edgevcf.errors import EdgeVCFError, ExportError

if TYPE_CHECKING:
    from edgevcf.bundle import Artifact
    from edgevcf.pipeline import ArtifactMetrics, ExportContext

#: Timing of the candidates: interleaved rounds x runs per round at batch 1, after a warm-up.
ROUNDS = 5
PER_ROUND = 40
WARMUP = 10


def _gate_summary(m: ArtifactMetrics) -> dict[str, Any]:
    g = m.gate
    out: dict[str, Any] = {
        "passed": g.get("passed"),
        "failed": g.get("failed", []),
        "inconclusive": g.get("inconclusive", []),
        "flip_rate": g.get("flip_rate"),
    }
    if m.paired:
        out["delta_auc"] = [m.paired["diff"], m.paired["ci_low"], m.paired["ci_high"]]
    for k in ("sensitivity", "specificity"):
        if g.get(k):
            out[f"delta_{k}"] = [g[k]["diff"], g[k]["ci_low"], g[k]["ci_high"]]
    return out


def search(
    ctx: ExportContext,
) -> tuple[ExportContext, list[Artifact], dict[str, ArtifactMetrics]]:
    """Build, gate and time every candidate; the winner's context (its files moved into
    ``ctx.work``), artefacts and measurements. A candidate that cannot be built is recorded
    with its error; when none passes, the most precise candidate built is kept (and fails)."""
    from edgevcf.backends import open_backend
    from edgevcf.latency import interleaved_calls, stats
    from edgevcf.machine import machine_label
    from edgevcf.pipeline import build_and_measure
    from edgevcf.report import gate_cell

    candidates = ctx.target.precision_candidates(ctx.profile)
    record: list[dict[str, Any]] = []
    built: dict[str, tuple[ExportContext, list[Artifact], dict[str, ArtifactMetrics]]] = {}
    for prec, why_not in candidates:
        if why_not:
            record.append({"precision": prec, "status": "skipped", "why": why_not})
            continue
        work = ctx.scratch / f"auto-{prec}"
        work.mkdir()
        c = dataclasses.replace(
            ctx, profile=ctx.profile.with_overrides(precision=prec), work=work, notes=[], extra={}
        )
        try:
            with progress.step(f"{ctx.target.name}: --precision auto, candidate {prec}"):
                arts, measured = build_and_measure(c)
        except EdgeVCFError as exc:
            record.append({"precision": prec, "status": "error", "why": exc.message})
            continue
        built[prec] = (c, arts, measured)
        m = measured[arts[0].name]
        record.append(
            {
                "precision": prec,
                "status": "pass" if m.gate.get("passed") else "fail",
                "gate": _gate_summary(m),
                "float_blocks": c.extra.get("mixed_precision", {}).get("float_blocks"),
                "nncf": c.extra.get("nncf"),
                "notes": list(c.notes),
                "bytes": sum((work / f).stat().st_size for f in arts[0].files()),
            }
        )
    if not built:
        raise ExportError(
            "--precision auto: no candidate could be built here",
            hint="; ".join(f"{r['precision']}: {r['why']}" for r in record),
        )
    x1 = ctx.tuning_inputs[:1]
    calls = {}
    for prec, (c, arts, _) in built.items():
        be = open_backend(arts[0].runtime, c.work / arts[0].file, **arts[0].options)
        calls[prec] = lambda be=be: be.run(x1)
    with progress.step(f"{ctx.target.name}: time {len(calls)} candidates ({ROUNDS} rounds)"):
        timed = interleaved_calls(calls, ROUNDS, PER_ROUND, warmup=WARMUP)
    for r in record:
        if r["precision"] in timed:
            t = timed[r["precision"]]
            r["latency_ms"] = {**stats(t.samples), "round_medians_ms": t.round_medians_ms}
    ms = {r["precision"]: r["latency_ms"]["median_ms"] for r in record if "latency_ms" in r}
    passing = [r["precision"] for r in record if r.get("status") == "pass"]
    table = ", ".join(
        f"{r['precision']} {ms[r['precision']]:.2f} ms "
        + gate_cell(bool(r["gate"]["passed"]), r["gate"])
        for r in record
        if r["precision"] in ms
    )
    if passing:
        winner = min(passing, key=ms.__getitem__)
        why = f"{winner}: the fastest of those passing the gate on the tuning split ({table})"
    else:
        order = [p for p, _ in candidates if p in built]
        winner = order[-1]  # the most precise built (fp32 last): it fails, and says so
        why = f"no candidate passes the gate on the tuning split ({table}); kept {winner}"
    c, arts, measured = built[winner]
    for f in c.work.iterdir():
        shutil.move(str(f), ctx.work / f.name)
    # the artefacts' files are named relative to the bundle: they now live in ctx.work
    final = dataclasses.replace(c, work=ctx.work)
    final.extra["precision_search"] = {
        "requested": "auto",
        "winner": winner,
        "why": why,
        "machine": machine_label(),
        "threads": ctx.profile.bench.threads,
        "timing": {"rounds": ROUNDS, "per_round": PER_ROUND, "warmup": WARMUP, "batch": 1},
        "split": "tuning",
        "candidates": record,
    }
    final.notes.insert(0, f"--precision auto chose {why}")
    return final, arts, measured
