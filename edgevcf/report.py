"""Reports: machine-readable JSON, a Markdown table like the study's, and a ROC plot (PNG).

matplotlib is imported lazily and drawn with the Agg backend (no display on a cart or in CI).
Reports carry counts and summary figures only, never patient identifiers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from edgevcf.deps import require

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
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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
    tmp = path.with_name(path.name + ".part")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def write_evaluation(res: EvalResult, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write metrics.json, report.md and roc.png into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "metrics.json", "markdown": out / "report.md", "roc": out / "roc.png"}
    _atomic_write(paths["json"], json.dumps(res.to_dict(), indent=2, sort_keys=True) + "\n")
    _atomic_write(paths["markdown"], evaluation_markdown(res))
    roc_png(res, paths["roc"])
    return paths
