"""Reports: machine-readable JSON, a Markdown table like the study's, and a ROC plot (PNG).

matplotlib is imported lazily and drawn with the Agg backend (no display on a cart or in CI).
Reports carry counts and summary figures only, never patient identifiers.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevcf.deps import require
from edgevcf.errors import OutputError

if TYPE_CHECKING:
    from edgevcf.evaluate import EvalResult
    from edgevcf.metrics import BinaryMetrics


def _pct(p: float) -> str:
    return "n/a" if p != p else f"{100 * p:.1f}"


def _cells(m: BinaryMetrics) -> str:
    """accuracy | sensitivity | specificity | F1 | precision cells of a table row."""
    return (
        f"{_pct(m.accuracy.value)} | {_pct(m.sensitivity.value)} | {_pct(m.specificity.value)} | "
        f"{m.f1:.3f} | {_pct(m.precision.value)} |"
    )


def _atomic_write(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a ``.part`` file renamed; removed if writing fails)."""
    tmp = path.with_name(path.name + ".part")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_set(what: str, paths: dict[str, Path], writers: list[tuple[str, Any]]) -> None:
    """Write a report's files all or none: stale ones first removed, the JSON (what tools read)
    last; on any failure every file of the set (and its ``.part``) is removed again.

    Raises:
        OutputError: a file could not be written (disk full, read-only, ...).
    """

    def clear(strict: bool) -> None:
        for p in paths.values():
            for f in (p, p.with_name(p.name + ".part")):
                try:
                    f.unlink(missing_ok=True)
                except OSError:
                    if strict:
                        raise

    try:
        clear(strict=True)  # a stale set from an earlier run must not pass for this one's
        for key, write in writers:
            write(paths[key])
    except BaseException as exc:
        clear(strict=False)
        if isinstance(exc, OSError) and exc.errno in OutputError.ERRNOS:
            raise OutputError.from_os_error(what, exc) from exc
        raise


def evaluation_markdown(res: EvalResult) -> str:
    """The study-style table: AUC (95 % CI), accuracy, sensitivity, specificity, F1, precision."""
    m, a = res.at_threshold, res.auc
    lines = [
        f"# Evaluation of {res.arch} on split `{res.split}`",
        "",
        f"{res.n} images, {int(res.labels.sum())} fresh fractures. Threshold {m.threshold:.4f} "
        f"({res.threshold_method}).",
        "",
        "| model | AUC (95 % CI) | accuracy % | sensitivity % | specificity % | F1 | precision % |",
        "|---|---|---|---|---|---|---|",
        f"| {res.arch} | {a.auc:.3f} ({a.ci_low:.3f}-{a.ci_high:.3f}) | " + _cells(m),
    ]
    for r in res.readers:
        lines.append(f"| reader {r.name} (n={r.n}) | - | " + _cells(r.metrics))
    lines += ["", "Wilson 95 % CIs at the threshold:", ""]
    for name in ("sensitivity", "specificity", "accuracy", "precision", "npv"):
        p = getattr(m, name)
        lines.append(
            f"- {name}: {_pct(p.value)} % ({_pct(p.ci_low)}-{_pct(p.ci_high)}), {p.k}/{p.n}"
        )
    if res.readers:
        lines += ["", "Model vs readers at the model's threshold (McNemar on the same cases):", ""]
        for r in res.readers:
            lines.append(
                f"- {r.name}: model right & reader wrong {r.model_right_reader_wrong}, "
                f"model wrong & reader right {r.model_wrong_reader_right}, p = {r.mcnemar_p:.4f}"
            )
    if res.skipped:
        lines += ["", f"{len(res.skipped)} images could not be read and were skipped."]
    for note in res.notes:
        lines += ["", f"> Note: {note}"]
    return "\n".join(lines) + "\n"


def roc_png(res: EvalResult, path: Path) -> None:
    """ROC curve with the operating point and readers' points."""
    matplotlib = require("matplotlib", "the ROC plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    fpr, tpr = res.roc
    ax.plot(
        fpr,
        tpr,
        lw=2,
        label=f"{res.arch}  AUC {res.auc.auc:.3f} ({res.auc.ci_low:.3f}-{res.auc.ci_high:.3f})",
    )
    m = res.at_threshold
    ax.plot(
        1 - m.specificity.value,
        m.sensitivity.value,
        "o",
        ms=8,
        label=f"threshold {m.threshold:.3f}",
    )
    for r in res.readers:
        ax.plot(
            1 - r.metrics.specificity.value,
            r.metrics.sensitivity.value,
            "s",
            ms=8,
            label=f"reader {r.name}",
        )
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
    ax.set(
        xlabel="1 - specificity",
        ylabel="sensitivity",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=f"Fresh fracture vs not — split {res.split} (n={res.n})",
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    _save_png(fig, plt, path)


def _save_png(fig: Any, plt: Any, path: Path) -> None:
    """Save and close ``fig`` as ``path``, whole or not at all."""
    tmp = path.with_name(path.name + ".part")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)


def write_evaluation(res: EvalResult, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write report.md, roc.png and metrics.json (last) into ``out_dir``; return their paths.

    All three or none: an interrupted or failed write leaves no file of the set.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "metrics.json", "markdown": out / "report.md", "roc": out / "roc.png"}
    text = json.dumps(res.to_dict(), indent=2, sort_keys=True) + "\n"
    _write_set(
        f"the evaluation report in {out}",
        paths,
        [
            ("roc", lambda p: roc_png(res, p)),
            ("markdown", lambda p: _atomic_write(p, evaluation_markdown(res))),
            ("json", lambda p: _atomic_write(p, text)),
        ],
    )
    return paths


# ------------------------------------------------------------------ bench reports
def _gate(v: bool | None) -> str:
    return {True: "pass", False: "FAIL", None: "n/a"}[v]


def _round_spread(report: dict[str, Any]) -> list[str]:
    """With ``--rounds N``: each row's per-round batch-1 medians, as range and spread."""
    rows = [(Path(e["bundle"]).name, e.get("latency")) for e in report["bundles"]]
    rows.append(("baseline (checkpoint)", report.get("baseline_latency")))
    parts = []
    n = 0
    for name, lat in rows:
        med = ((lat or {}).get("batch1") or {}).get("round_medians_ms")
        if med:
            n = len(med)
            spread = (max(med) - min(med)) / statistics.median(med) * 100
            parts.append(f"{name} {min(med):.2f}-{max(med):.2f} ms ({spread:.0f} %)")
    if not parts:
        return []
    return [
        "",
        f"Batch-1 medians of the {n} interleaved rounds, lowest-highest (spread = range / "
        f"median): {'; '.join(parts)}.",
    ]


def _latency_rows(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, latency entry) of every measured row, the checkpoint baseline last."""
    rows = [(Path(e["bundle"]).name, e["latency"]) for e in report["bundles"] if e.get("latency")]
    if report.get("baseline_latency"):
        rows.append(("baseline (checkpoint)", report["baseline_latency"]))
    return rows


def _versions(lat: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in (lat.get("versions") or {}).items()) or "n/a"


def _mode_line(report: dict[str, Any]) -> list[str]:
    """What the SingleStream numbers are: full (MLPerf's minimums) or a quick look."""
    mode = report.get("mode")
    if mode is None or not _latency_rows(report):
        return []
    if mode == "full":
        text = (
            "SingleStream, **full** mode: batch-1 queries one after another, at least 1,024 "
            "queries and 60 s of timed queries per row (MLPerf's SingleStream minimums; totals "
            "over the interleaved rounds)."
        )
    else:
        text = (
            "SingleStream, **quick** mode: at least 200 batch-1 queries per row and no duration "
            "minimum: a quick look, short of MLPerf's SingleStream minimums (1,024 queries, 60 s)."
        )
    return ["", text]


def _engines_line(report: dict[str, Any]) -> list[str]:
    """Engine versions and thread settings per row: a ratio between rows depends on both."""
    rows = _latency_rows(report)
    if not rows:
        return []
    parts = [f"{n}: {_versions(lat)}, threads {lat['threads'] or 'all'}" for n, lat in rows]
    return ["", "Engines and threads per row: " + "; ".join(parts) + "."]


def _pipeline_table(report: dict[str, Any]) -> list[str]:
    """Where a film's time goes, per bundle: the floor (file read + one pass over the pixels),
    read + preprocess, the model alone, end to end, and end to end over the model."""
    rows = [(n, lat) for n, lat in _latency_rows(report) if "end_to_end" in lat]
    if not rows:
        return []

    def cell(lat: dict[str, Any], key: str) -> str:
        return f"{lat[key]['median_ms']:.2f}" if key in lat else "n/a"

    stages = [
        ("floor: file read + one pass over the pixels", lambda lat: cell(lat, "floor")),
        ("read + preprocess", lambda lat: cell(lat, "preprocess")),
        ("model (batch-1 median)", lambda lat: f"{lat['batch1']['median_ms']:.2f}"),
        ("end to end (DICOM -> decision)", lambda lat: cell(lat, "end_to_end")),
        ("end to end / model", lambda lat: f"{lat['end_to_end_ratio']:.1f}x"),
    ]
    lines = [
        "",
        "## From DICOM to decision (median ms per film)",
        "",
        "| stage | " + " | ".join(n for n, _ in rows) + " |",
        "|---|" + "---|" * len(rows),
    ]
    for stage, fn in stages:
        lines.append(f"| {stage} | " + " | ".join(fn(lat) for _, lat in rows) + " |")
    methods = sorted({lat["floor"]["method"] for _, lat in rows if "floor" in lat})
    if methods:
        lines += ["", f"Floor: {'; '.join(methods)} (what no reader can go below on this disk)."]
    return lines


def bench_markdown(report: dict[str, Any]) -> str:
    """Comparison table of a bench run: latency, accuracy vs the FP32 baseline, gates."""
    m = report["machine"]
    lines = [
        "# edgevcf bench",
        "",
        f"Machine: {m.get('cpu', m['machine'])}"
        + (f" (CPU family {m['cpu_family']})" if "cpu_family" in m else "")
        + f", {m['cpu_count']} cores, "
        f"governor {m.get('governor', 'n/a')}{', ' + m['power_mode'] if 'power_mode' in m else ''}"
        f"; edgevcf {m['edgevcf']}"
        + (f"; ISA: {' '.join(m['cpu_isa'])}" if m.get("cpu_isa") else "")
        + ".",
        *_mode_line(report),
        *_engines_line(report),
        "",
        "## Latency (batch 1 unless stated; preprocessing separate from inference)",
        "",
        "| bundle | engine | precision | threads | queries | duration s | median ms | p90 | p99 "
        "| min | throughput img/s (batch) | offline img/s (best batch) | cold start ms "
        "| DICOM->decision ms (x model) | peak RSS MB | size MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in report["bundles"]:
        lat = e.get("latency")
        if not lat:
            continue
        b1 = lat["batch1"]
        thr = ", ".join(
            f"{v['images_per_s']:.0f} ({k}{'' if v['batched'] else ' seq'})"
            for k, v in lat["throughput"].items()
        )
        off = lat.get("offline")
        best = f"{off['images_per_s']:.0f} ({off['batch']})" if off else "n/a"
        e2e = (
            f"{lat['end_to_end']['median_ms']:.1f} ({lat['end_to_end_ratio']:.2f}x)"
            if "end_to_end" in lat
            else "n/a"
        )
        lines.append(
            f"| {Path(e['bundle']).name} | {lat['runtime']} | {lat['precision']} | "
            f"{lat['threads'] or 'all'} | {_queries(b1)} | {b1['median_ms']:.2f} | "
            f"{b1['p90_ms']:.2f} | {b1['p99_ms']:.2f} | {b1['min_ms']:.2f} | {thr} | {best} | "
            f"{lat['cold_start_ms']:.0f} | {e2e} | {lat['peak_rss_mb']:.0f} | "
            f"{e['size_bytes'] / 1e6:.2f} |"
        )
        if lat.get("note"):
            lines.append(f"|  | ↳ {lat['note']} |" + " |" * 14)
    base = report.get("baseline_latency")
    if base:
        b1 = base["batch1"]
        lines.append(
            f"| baseline (checkpoint) | {base['runtime']} | {base['precision']} | "
            f"{base['threads']} | {_queries(b1)} | {b1['median_ms']:.2f} | {b1['p90_ms']:.2f} | "
            f"{b1['p99_ms']:.2f} | {b1['min_ms']:.2f} | | | | | | |"
        )
    lines += _pipeline_table(report)
    lines += _round_spread(report)
    acc = report.get("accuracy")
    if acc:
        lines += [
            "",
            f"## Accuracy on split {acc['split']} (n={acc['n']}, {acc['n_pos']} positive, "
            f"{acc['patients']} patients)",
            "",
            *(
                [
                    f"{len(acc['skipped'])} image(s) could not be read and were skipped: "
                    + "; ".join(f"{s['file']} ({s['reason']})" for s in acc["skipped"][:10]),
                    "",
                ]
                if acc.get("skipped")
                else []
            ),
            "| model | AUC (95 % CI) | ΔAUC vs baseline (95 % CI), p | accuracy % | "
            "sensitivity % | specificity % | F1 | precision % | flip rate % (McNemar p) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        if "baseline" in acc:
            b = acc["baseline"]
            lines.append(
                f"| {b['name']} | {b['auc']['auc']:.3f} ({b['auc']['ci_low']:.3f}-"
                f"{b['auc']['ci_high']:.3f}) | - | {_cells_d(b['at_threshold'])} - |"
            )
        for r in acc["bundles"]:
            p = r.get("paired_vs_baseline")
            delta = (
                f"{p['diff']:+.4f} ({p['ci_low']:+.4f}, {p['ci_high']:+.4f}), {p['p_value']:.2f}"
                if p
                else "n/a"
            )
            f = r.get("flips")
            flips = f"{100 * f['flip_rate']['value']:.1f} ({f['mcnemar_p']:.2f})" if f else "n/a"
            lines.append(
                f"| {Path(r['bundle']).name} | {r['auc']['auc']:.3f} ({r['auc']['ci_low']:.3f}-"
                f"{r['auc']['ci_high']:.3f}) | {delta} | {_cells_d(r['at_threshold'])} {flips} |"
            )
    lines += [
        "",
        "## Gates",
        "",
        "| bundle | AUC non-inferior | sensitivity, specificity | flip rate | latency budget "
        "| overall |",
        "|---|---|---|---|---|---|",
    ]
    for g in report["gates"]:
        lines.append(
            f"| {Path(g['bundle']).name} | {_gate(g['auc_non_inferior'])} | "
            f"{_gate(g.get('operating_point_ok'))} | "
            f"{_gate(g['flip_rate_ok'])} | {_gate(g['latency_ok'])} | {_gate(g['passed'])} |"
        )
    lines += ["", f"Gate: {GATE_DECIDES}."]
    for n in report.get("notes", []):
        lines.append(f"\nNote: {n}")
    return "\n".join(lines) + "\n"


def _queries(b1: dict[str, Any]) -> str:
    """The queries and duration cells of a SingleStream row (older reports: the count only)."""
    n = b1.get("queries", b1.get("n"))
    dur = b1.get("duration_s")
    return f"{n if n is not None else 'n/a'} | {f'{dur:.1f}' if dur is not None else 'n/a'}"


def _cells_d(m: dict[str, Any]) -> str:
    def pct(k: str) -> str:
        return _pct(m[k]["value"])

    return (
        f"{pct('accuracy')} | {pct('sensitivity')} | {pct('specificity')} | {m['f1']:.3f} | "
        f"{pct('precision')} |"
    )


@dataclass(frozen=True)
class LatencyBar:
    """One row of the PNG's latency panel, as the table states it.

    ``kind``: ``"measured"`` (this engine on this machine), ``"stand-in"`` (the table's note:
    another engine standing in, e.g. a jetson bundle's Q/DQ ONNX in ONNX Runtime on the CPU, no
    latency claim) or ``"baseline"`` (the checkpoint in PyTorch eager FP32).
    """

    label: str
    kind: str
    median_ms: float
    p99_ms: float
    end_to_end_ms: float | None = None
    preprocess_ms: float | None = None


def latency_bars(report: dict[str, Any]) -> list[LatencyBar]:
    """The latency panel's bars: every measured bundle (a stand-in marked so, as the table's
    note does), then the PyTorch baseline when it was measured."""
    out = []
    for e in report["bundles"]:
        lat = e.get("latency")
        if not lat:
            continue
        kind = "stand-in" if lat.get("note") else "measured"
        name = Path(e["bundle"]).name + (" (stand-in)" if kind == "stand-in" else "")
        out.append(_bar(name, kind, lat))
    base = report.get("baseline_latency")
    if base:
        out.append(_bar("PyTorch eager FP32 (baseline)", "baseline", base))
    return out


def _bar(label: str, kind: str, lat: dict[str, Any]) -> LatencyBar:
    def med(key: str) -> float | None:
        return float(lat[key]["median_ms"]) if key in lat else None

    b1 = lat["batch1"]
    return LatencyBar(
        label,
        kind,
        float(b1["median_ms"]),
        float(b1["p99_ms"]),
        med("end_to_end"),
        med("preprocess"),
    )


_BAR_COLOURS = {"measured": "#3b6ea8", "stand-in": "#9ab3d3", "baseline": "#6a8f4e"}


def _draw_latency(ax: Any, bars: list[LatencyBar]) -> None:
    """Per row: batch-1 median over its p99 (a stand-in hatched) and, below it, end to end
    with its read + preprocess part; a log axis when end to end dwarfs the model."""
    from matplotlib.patches import Patch

    h = 0.38
    y = [float(i) for i in range(len(bars))]
    for yi, b in zip(y, bars, strict=True):
        hatch = "//" if b.kind == "stand-in" else None
        ax.barh(yi - h / 2, b.p99_ms, h, color="#d9d9d9", hatch=hatch, edgecolor="#888888")
        ax.barh(
            yi - h / 2,
            b.median_ms,
            h,
            color=_BAR_COLOURS[b.kind],
            hatch=hatch,
            edgecolor="#333333" if hatch else None,
        )
        ax.text(b.p99_ms, yi - h / 2, f" {b.median_ms:.2f}", va="center", fontsize=6)
        if b.end_to_end_ms is not None:
            ax.barh(
                yi + h / 2, b.end_to_end_ms, h, color="#f2b179", hatch=hatch, edgecolor="#888888"
            )
            if b.preprocess_ms is not None:
                ax.barh(yi + h / 2, b.preprocess_ms, h, color="#d9722b", hatch=hatch)
            ax.text(b.end_to_end_ms, yi + h / 2, f" {b.end_to_end_ms:.1f}", va="center", fontsize=6)
    ax.set_yticks(y, [b.label for b in bars], fontsize=7)
    ax.invert_yaxis()
    shortest = min(b.median_ms for b in bars)
    if max(max(b.p99_ms, b.end_to_end_ms or 0.0) for b in bars) > 20 * shortest:
        ax.set_xscale("log")
        ax.set_xlim(left=shortest / 2)  # bars start at 0, which a log axis does not have
    kinds = {b.kind for b in bars}
    handles = [
        Patch(color=_BAR_COLOURS["measured"], label="batch-1 median"),
        Patch(color="#d9d9d9", label="batch-1 p99"),
    ]
    if "baseline" in kinds:
        handles.append(Patch(color=_BAR_COLOURS["baseline"], label="PyTorch eager FP32 median"))
    if any(b.end_to_end_ms is not None for b in bars):
        handles += [
            Patch(color="#f2b179", label="end to end (DICOM -> decision) median"),
            Patch(color="#d9722b", label="of which read + preprocess"),
        ]
    if "stand-in" in kinds:
        handles.append(
            Patch(
                facecolor="white",
                edgecolor="#333333",
                hatch="//",
                label="stand-in engine: no latency claim",
            )
        )
    # below the panel: inside it, the legend hid the last rows' bars
    ax.legend(handles=handles, fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)


def bench_png(report: dict[str, Any], path: Path) -> None:
    """ROC curves of the baseline and every bundle overlaid, and the latency bars of
    :func:`latency_bars` (model and end to end; stand-ins marked as the table marks them)."""
    matplotlib = require("matplotlib", "the bench plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5.5), dpi=110)
    acc = report.get("accuracy")
    if acc:
        for name, (fpr, tpr) in acc["roc"].items():
            ax1.plot(fpr, tpr, lw=1.6, label=Path(name).name if name != "baseline" else name)
        ax1.plot([0, 1], [0, 1], ":", color="grey", lw=1)
        ax1.legend(loc="lower right", fontsize=7)
    ax1.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC", xlim=(0, 1), ylim=(0, 1))
    bars = latency_bars(report)
    if bars:
        _draw_latency(ax2, bars)
    else:
        ax2.text(0.5, 0.5, "latency not measured", ha="center", va="center", color="grey")
        ax2.set_yticks([])
    mode = f", {report['mode']} mode" if bars and report.get("mode") else ""
    scale = ", log scale" if ax2.get_xscale() == "log" else ""
    ax2.set(xlabel=f"latency (ms{scale})", title=f"Latency{mode}")
    fig.tight_layout()
    _save_png(fig, plt, path)


def write_bench(report: dict[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """bench.png, bench.md and bench.json (last) into ``out_dir``.

    All three or none: each file is written atomically, stale ones are removed first, and a
    failed write (disk full) removes the files already written, so nothing of this run looks
    complete unless all of it is.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "markdown": out / "bench.md", "png": out / "bench.png"}
    text = json.dumps(report, indent=2, default=str) + "\n"
    _write_set(
        f"the bench report in {out}",
        paths,
        [
            ("png", lambda p: bench_png(report, p)),
            ("markdown", lambda p: _atomic_write(p, bench_markdown(report))),
            ("json", lambda p: _atomic_write(p, text)),
        ],
    )
    return paths


def write_results(
    stem: str | os.PathLike[str], data: dict[str, Any], markdown: str, indent: int = 2
) -> dict[str, Path]:
    """A benchmark's ``STEM.md`` and ``STEM.json`` (last), both or neither, as :func:`write_bench`
    writes its set: what the scripts under ``benchmarks/`` leave in ``benchmarks/results/``."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = {"json": stem.with_suffix(".json"), "markdown": stem.with_suffix(".md")}
    text = json.dumps(data, indent=indent, default=str) + "\n"
    _write_set(
        f"the results {stem}.*",
        paths,
        [
            ("markdown", lambda p: _atomic_write(p, markdown)),
            ("json", lambda p: _atomic_write(p, text)),
        ],
    )
    return paths


def bench_summary(report: dict[str, Any]) -> list[str]:
    """What a bench run showed, in words: the fastest bundle that passed every gate with its
    speed-ups measured in this run, its ΔAUC and flip rate; and each miss, by how much.

    A table's FAIL cell says that a gate failed; a user deciding what to deploy needs which
    gate, by how much, and what passed instead.
    """
    lat = {e["bundle"]: e for e in report["bundles"]}
    acc = report.get("accuracy") or {}
    rows = {r["bundle"]: r for r in acc.get("bundles", [])}
    lines: list[str] = []
    if acc:
        lines.append(
            f"Accuracy on the {acc['split']} split: {acc['n']} images of {acc['patients']} "
            f"patients ({acc['n_pos']} fresh), used for no tuning."
        )
        if "baseline" in acc:
            a = acc["baseline"]["auc"]
            lines.append(
                f"  FP32 baseline: AUC {a['auc']:.3f} "
                f"(95 % CI {a['ci_low']:.3f}-{a['ci_high']:.3f})."
            )

    def ms(name: str) -> float | None:
        e = lat.get(name, {}).get("latency")
        return None if not e or e.get("note") else float(e["batch1"]["median_ms"])

    base = report.get("baseline_latency")
    torch_ms = float(base["batch1"]["median_ms"]) if base else None
    ort = next(
        (e["bundle"] for e in report["bundles"]
         if e["target"] == "onnx" and e["precision"] == "fp32" and ms(e["bundle"]) is not None),
        None,
    )  # fmt: skip
    passed = [g["bundle"] for g in report["gates"] if g["passed"] and ms(g["bundle"]) is not None]
    if passed:
        best = min(passed, key=lambda b: ms(b) or 0.0)
        e, best_ms = lat[best], ms(best) or 0.0
        ratios = []
        if torch_ms:
            ratios.append(f"{torch_ms / best_ms:.1f}x PyTorch eager FP32 ({torch_ms:.2f} ms)")
        if ort and ort != best:
            ratios.append(f"{(ms(ort) or 0.0) / best_ms:.2f}x ONNX Runtime FP32 ({ms(ort):.2f} ms)")
        lines.append(
            f"Fastest bundle that passed every gate: {Path(best).name} ({e['precision']} on "
            f"{e['latency']['runtime']}), {best_ms:.2f} ms per image"
            + (f": {' and '.join(ratios)}, measured side by side in this run." if ratios else ".")
        )
        lines += _vs_fp32(rows.get(best))
        quantized = [b for b in passed if lat[b]["precision"] != "fp32"]
        if quantized and lat[best]["precision"] == "fp32":
            q = min(quantized, key=lambda b: ms(b) or 0.0)
            q_ms = ms(q) or 0.0
            ratio = best_ms / q_ms
            lines.append(
                f"Fastest {lat[q]['precision'].upper()} bundle that passed: {Path(q).name}, "
                f"{q_ms:.2f} ms per image"
                + (f", {torch_ms / q_ms:.1f}x PyTorch eager FP32" if torch_ms else "")
                + f" — {'slower' if ratio < 1 else 'faster'} than {Path(best).name} "
                f"({ratio:.2f}x) on this machine: quantisation must earn its place per CPU."
            )
            lines += _vs_fp32(rows.get(q))
    elif report["gates"]:
        lines.append("No bundle passed every gate with a latency measured here.")
    for g in report["gates"]:
        if g["passed"] is not False:
            continue
        lines.append(f"Missed: {Path(g['bundle']).name}: " + "; ".join(_misses(g, rows, lat)) + ".")
    for e in report["bundles"]:
        if (e.get("latency") or {}).get("note"):
            lines.append(f"Note: {Path(e['bundle']).name}: {e['latency']['note']}.")
    return lines


def _vs_fp32(r: dict[str, Any] | None) -> list[str]:
    """The paired comparison of one bundle with the FP32 baseline, in one line."""
    if not r or not r.get("paired_vs_baseline"):
        return []
    p, f, tol = r["paired_vs_baseline"], r["flips"], r["tolerance"]
    return [
        f"  vs FP32: ΔAUC {p['diff']:+.4f} (95 % CI {p['ci_low']:+.4f} to {p['ci_high']:+.4f}; "
        f"non-inferior: lower bound above -{tol['max_auc_drop']:g}); {f['flips']} of {f['n']} "
        f"decisions flipped ({100 * f['flip_rate']['value']:.1f} %; limit "
        f"{100 * tol['max_flip_rate']:.1f} %).",
        *_op_point_line(r.get("gate")),
    ]


def _op_point_line(g: dict[str, Any] | None) -> list[str]:
    """Paired Δsensitivity / Δspecificity at the threshold against their margins, in one line."""
    if not g or not g.get("sensitivity") or not g.get("specificity"):
        return []
    se, sp = g["sensitivity"], g["specificity"]
    return [
        f"  at the threshold: Δsensitivity {100 * se['diff']:+.1f} pt (95 % CI "
        f"{100 * se['ci_low']:+.1f} to {100 * se['ci_high']:+.1f}; margin "
        f"-{100 * g['max_sensitivity_drop']:g}), Δspecificity {100 * sp['diff']:+.1f} pt "
        f"({100 * sp['ci_low']:+.1f} to {100 * sp['ci_high']:+.1f}; margin "
        f"-{100 * g['max_specificity_drop']:g}); gate: {GATE_DECIDES}."
    ]


def operating_point_cell(gate: dict[str, Any] | None) -> str:
    """A gate's paired Δsensitivity / Δspecificity in points with their CI lower bounds, as the
    export and benchmark tables print them (``-0.7 (-3.5) / +0.0 (-2.4)``; ``-`` when absent)."""
    if not gate or not gate.get("sensitivity") or not gate.get("specificity"):
        return "-"
    se, sp = gate["sensitivity"], gate["specificity"]
    return (
        f"{100 * se['diff']:+.1f} ({100 * se['ci_low']:+.1f}) / "
        f"{100 * sp['diff']:+.1f} ({100 * sp['ci_low']:+.1f})"
    )


def gate_cell(passed: bool | None, gate: dict[str, Any] | None, none: str = "n/a") -> str:
    """``pass``, ``FAIL (criteria that failed)`` or ``none``; a criterion whose CI spans its
    margin (point estimate inside it) is marked ``inconclusive``: more films could decide it."""
    text = {True: "pass", False: "FAIL", None: none}[passed]
    if passed is False and gate and gate.get("failed"):
        open_ = set(gate.get("inconclusive") or ())
        named = (k + (": inconclusive" if k in open_ else "") for k in gate["failed"])
        text += f" ({', '.join(named)})"
    return text


#: Which criteria decide the gate (the rule is :data:`edgevcf.metrics.GATE_RULE`).
GATE_DECIDES = (
    "the CIs decide (ΔAUC, Δsensitivity, Δspecificity); the flip rate fails it only when its CI "
    "lies above the limit"
)


def films_to_decide(gate: dict[str, Any] | None) -> int | None:
    """About how many films would decide a failed gate whose *every* failed criterion was
    inconclusive (CI spanning the margin); None when one was shown worse, or nothing failed."""
    need = (gate or {}).get("films_needed") or {}
    failed = set((gate or {}).get("failed") or ())
    return max(need.values()) if need and failed <= set(need) else None


def inconclusive_hint(report: dict[str, Any]) -> str | None:
    """For a failed bench: the bundles whose every failed criterion was inconclusive and about
    how many films would decide each; None when there are none."""
    need = [
        (Path(r["bundle"]).name, n)
        for r in (report.get("accuracy") or {}).get("bundles", [])
        if (n := films_to_decide(r.get("gate"))) is not None
    ]
    if not need:
        return None
    return "inconclusive, not shown worse (the CI spans the margin): " + "; ".join(
        f"{name} would need a split of about {n:,} films" for name, n in need
    )


def _misses(g: dict[str, Any], rows: dict[str, Any], lat: dict[str, Any]) -> list[str]:
    """Each failed gate of one bundle, with the measured value and the limit."""
    out = []
    r = rows.get(g["bundle"], {})
    tol = r.get("tolerance", {})
    need = (r.get("gate") or {}).get("films_needed") or {}

    def open_(k: str) -> str:
        if k not in need:
            return ""
        return (
            f" (inconclusive: the point estimate is inside the margin; about {need[k]:,} films "
            "of this mix would show non-inferiority at this Δ)"
        )

    if g["auc_non_inferior"] is False:
        p = r["paired_vs_baseline"]
        out.append(
            f"ΔAUC {p['diff']:+.4f}, CI lower bound {p['ci_low']:+.4f} is below the "
            f"-{tol['max_auc_drop']:g} non-inferiority margin" + open_("auc")
        )
    if g.get("operating_point_ok") is False:
        d = r["gate"]
        for k in ("sensitivity", "specificity"):
            if d[k]["ci_low"] <= -d[f"max_{k}_drop"]:
                out.append(
                    f"Δ{k} {100 * d[k]['diff']:+.1f} pt, CI lower bound "
                    f"{100 * d[k]['ci_low']:+.1f} pt is below the "
                    f"-{100 * d[f'max_{k}_drop']:g} pt margin" + open_(k)
                )
    if g["flip_rate_ok"] is False:
        f = r["flips"]
        out.append(
            f"{f['flips']} of {f['n']} decisions flipped ({100 * f['flip_rate']['value']:.1f} %"
            + (
                f", CI lower bound {100 * f['flip_rate']['ci_low']:.1f} % above the limit"
                if "ci_low" in f["flip_rate"]
                else ", limit"
            )
            + f" {100 * tol['max_flip_rate']:.1f} %)"
        )
    if g["latency_ok"] is False:
        e = lat[g["bundle"]]
        out.append(
            f"median latency {e['latency']['batch1']['median_ms']:.2f} ms over its "
            f"{e['latency_budget_ms']:g} ms budget"
        )
    return out
