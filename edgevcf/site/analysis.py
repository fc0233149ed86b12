"""A bundle's accuracy on a site's films, overall and by subgroup, as a biostatistician reads it.

For every cell (all films, or one level of one subgroup field): films, positives, prevalence,
the quality gate's refusal rate, AUC with its DeLong CI, sensitivity / specificity / PPV / NPV at
the threshold with Wilson CIs, and — with a baseline — the paired deployed-vs-FP32 gate. A cell
with fewer than ``min_films`` scored films or ``min_positives`` positives is marked
*insufficient* (reported, never hidden, never tested). Across the sufficient levels of a field,
heterogeneity is tested (Pearson chi-square for proportions, Cochran's Q for AUCs; see
:mod:`edgevcf.stats` for why) and Benjamini-Hochberg adjusts the p-values over all the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgevcf import metrics, stats, subgroups
from edgevcf.site.score import SiteFilms

#: A cell below either count is reported but marked insufficient (too few to judge).
MIN_FILMS = 30
MIN_POSITIVES = 10
#: Decision-curve threshold probabilities.
NET_BENEFIT_THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))


@dataclass(frozen=True)
class Settings:
    """What the analysis applies (recorded in validation.json)."""

    threshold: float
    min_films: int = MIN_FILMS
    min_positives: int = MIN_POSITIVES
    level: float = 0.95
    tolerance: dict[str, Any] | None = None  # the bundle's profile tolerance (baseline gate)


def _prop(k: int, n: int, level: float) -> dict[str, Any]:
    return metrics.wilson(int(k), int(n), level).to_dict()


def cell(films: SiteFilms, mask: np.ndarray, cfg: Settings) -> dict[str, Any]:
    """Every figure of one group of films (``mask``)."""
    total = int(mask.sum())
    scored = mask & films.scored
    not_assessable = int((mask & (films.status == "not_assessable")).sum())
    unreadable = int((mask & (films.status == "refused")).sum())
    y = films.labels[scored]
    p = films.probs()[scored]
    n, pos = int(y.size), int(y.sum())
    out: dict[str, Any] = {
        "films": total,
        "n": n,
        "positives": pos,
        "negatives": n - pos,
        "prevalence": pos / n if n else math.nan,
        "not_assessable": not_assessable,
        "unreadable": unreadable,
        "refusal_rate": _prop(not_assessable, total - unreadable, cfg.level),
        "sufficient": n >= cfg.min_films and pos >= cfg.min_positives,
        "auc": None,
    }
    if min(pos, n - pos) >= 2:
        out["auc"] = metrics.auc_ci(y, p, cfg.level).to_dict()
    bm = metrics.binary_metrics(y, p, cfg.threshold, cfg.level) if n else None
    for key in ("sensitivity", "specificity", "precision", "npv"):
        out["ppv" if key == "precision" else key] = getattr(bm, key).to_dict() if bm else None
    if bm is not None:
        out["confusion"] = {"tp": bm.tp, "fp": bm.fp, "tn": bm.tn, "fn": bm.fn}
    base = films.base_probs()
    if base is not None and cfg.tolerance is not None:
        both = scored & np.isfinite(base)
        out["baseline_gate"] = _baseline_gate(films, both, base, cfg)
    return out


def _baseline_gate(
    films: SiteFilms, mask: np.ndarray, base: np.ndarray, cfg: Settings
) -> dict[str, Any]:
    """The paired deployed-vs-FP32 gate on these films, read as: non-inferior (shown),
    inferior (its point estimate beyond the margin), inconclusive (the CI spans the margin:
    with the films that would decide it), or not measurable (a class missing)."""
    y = films.labels[mask]
    if min(int(y.sum()), int(y.size - y.sum())) < 2:
        return {"verdict": "not measurable", "why": "needs 2 films of each class"}
    assert cfg.tolerance is not None and films.base_threshold is not None
    g = metrics.gate_for(
        cfg.tolerance, y, base[mask], films.probs()[mask], films.base_threshold, cfg.threshold
    )
    verdict = (
        "non-inferior"
        if g.passed
        else "inconclusive"
        if g.failed and set(g.failed) <= set(g.inconclusive)
        else "inferior"
    )
    assert g.paired is not None
    return {
        "verdict": verdict,
        "auc_diff": g.paired.diff,
        "auc_diff_ci": [g.paired.ci_low, g.paired.ci_high],
        "failed": list(g.failed),
        "films_needed": dict(g.films_needed),
        "gate": g.to_dict(),
    }


#: proportions tested for heterogeneity: name -> (successes key in confusion / counts)
_PROPORTIONS = ("sensitivity", "specificity", "refusal_rate")


def _counts(c: dict[str, Any], name: str) -> tuple[int, int] | None:
    d = c.get(name)
    return (int(d["k"]), int(d["n"])) if d and d["n"] else None


def _logit_auc(a: dict[str, Any]) -> tuple[float, float]:
    """An AUC and its DeLong variance on the logit scale (delta method), where Cochran's Q
    compares them: near 1 the AUC scale's variance shrinks to nothing and one excellent small
    group would dominate Q; the logit scale keeps the comparison fair (as the logit CI does)."""
    v, var = float(a["auc"]), float(a["variance"])
    if not 0 < v < 1:
        return math.nan, math.nan
    return math.log(v / (1 - v)), var / (v * (1 - v)) ** 2


def by_subgroup(films: SiteFilms, cfg: Settings) -> dict[str, Any]:
    """Each field's levels (in report order) and its heterogeneity tests, q-values over all."""
    out: dict[str, Any] = {}
    tests: list[tuple[str, str, dict[str, Any]]] = []
    for fld in subgroups.FIELDS:
        values = np.array([lv[fld.name] for lv in films.levels])
        levels = subgroups.order(fld.name, set(values.tolist()))
        cells = {lvl: cell(films, values == lvl, cfg) for lvl in levels}
        sufficient = {lvl: c for lvl, c in cells.items() if c["sufficient"]}
        het: dict[str, Any] = {}
        if len(sufficient) >= 2:
            for name in _PROPORTIONS:
                counts = {lvl: k for lvl, c in sufficient.items() if (k := _counts(c, name))}
                het[name] = stats.homogeneity_test(counts).to_dict()
            het["auc"] = stats.cochran_q(
                {lvl: _logit_auc(c["auc"]) for lvl, c in sufficient.items() if c["auc"]}
            ).to_dict()
            tests += [(fld.name, k, v) for k, v in het.items()]
        out[fld.name] = {"source": fld.source, "levels": cells, "heterogeneity": het}
    qs = stats.benjamini_hochberg([t[2]["p_value"] for t in tests])
    for (_, _, t), q in zip(tests, qs, strict=True):
        t["q_value"] = q
    return out


def probability_checks(films: SiteFilms, mask: np.ndarray, level: float) -> dict[str, Any]:
    """Calibration (in the large, slope), reliability curve and net benefit on scored films."""
    scored = mask & films.scored
    y, p = films.labels[scored], films.probs()[scored]
    out: dict[str, Any] = {"calibration": None, "reliability": [], "net_benefit": None}
    if y.size >= 3 and 0 < int(y.sum()) < y.size:
        try:
            out["calibration"] = stats.logistic_calibration(y, p, level).to_dict()
        except Exception as exc:  # separation on a tiny set: say so, keep the rest
            out["calibration"] = {"error": str(exc)}
        out["reliability"] = stats.reliability_curve(y, p, bins=10 if y.size >= 100 else 5)
        out["net_benefit"] = stats.net_benefit(y, p, NET_BENEFIT_THRESHOLDS)
    return out


def analyse(films: SiteFilms, mask: np.ndarray, cfg: Settings) -> dict[str, Any]:
    """Everything the report shows, on the films of ``mask``."""
    sub = films.subset(mask)
    everything = np.ones(len(sub.paths), dtype=bool)
    return {
        "threshold": cfg.threshold,
        "overall": cell(sub, everything, cfg),
        "subgroups": by_subgroup(sub, cfg),
        **probability_checks(sub, everything, cfg.level),
    }
