"""``edgevcf validate plan``: how many films a site must collect, before it collects them.

Three questions, one formula each (:mod:`edgevcf.stats`): a sensitivity or specificity CI of a
chosen half-width (Buderer 1996), an AUC CI of a chosen half-width (Hanley & McNeil 1982), and —
with a bundle — how many films would show the deployed model non-inferior to its FP32 reference
at the profile's margins, using the bundle's own export figures as the pilot (the export gate's
films-needed rule, :func:`edgevcf.metrics.films_to_show_non_inferiority`).
"""

from __future__ import annotations

import math
from typing import Any

from edgevcf import metrics, stats


def plan(
    *,
    sensitivity: float | None = None,
    specificity: float | None = None,
    auc: float | None = None,
    half_width: float = 0.05,
    prevalence: float = 0.30,
    level: float = 0.95,
    bundle: Any = None,
) -> dict[str, Any]:
    """The films each asked-for question needs, and the most of them (what to collect)."""
    rows: list[dict[str, Any]] = []
    if sensitivity is not None:
        p = stats.films_for_proportion("sensitivity", sensitivity, half_width, prevalence, level)
        rows.append({"question": f"sensitivity {sensitivity:g} +- {half_width:g}", **p.to_dict()})
    if specificity is not None:
        p = stats.films_for_proportion("specificity", specificity, half_width, prevalence, level)
        rows.append({"question": f"specificity {specificity:g} +- {half_width:g}", **p.to_dict()})
    if auc is not None:
        a = stats.films_for_auc(auc, half_width, prevalence, level)
        rows.append({"question": f"AUC {auc:g} +- {half_width:g}", **a.to_dict()})
    if bundle is not None:
        rows += _non_inferiority(bundle, prevalence)
    need = max(rows, key=lambda r: r["films"]) if rows else None
    return {
        "prevalence": prevalence,
        "level": level,
        "rows": rows,
        "films": need["films"] if need else 0,
        "positives": need["positives"] if need else 0,
        "negatives": need["negatives"] if need else 0,
    }


def _non_inferiority(bundle: Any, prevalence: float) -> list[dict[str, Any]]:
    """Films to show each gate criterion non-inferior, from the bundle's export figures (the
    pilot): its paired Δ and CI on its tuning split, scaled as 1 / sqrt(n)."""
    m = bundle.manifest["metrics"]
    tol = bundle.manifest["profile"]["tolerance"]
    art = m["artifacts"][bundle.manifest["default_artifact"]]
    n, n_pos = int(m["n"]), int(m["n_pos"])
    gate = art.get("gate") or {}
    criteria = {"auc": (art["paired"]["diff"], art["paired"]["ci_low"], tol["max_auc_drop"], n)}
    for key, margin in (
        ("sensitivity", "max_sensitivity_drop"),
        ("specificity", "max_specificity_drop"),
    ):
        d = gate.get(key)
        if d:
            cases = n_pos if key == "sensitivity" else n - n_pos
            criteria[key] = (d["diff"], d["ci_low"], tol[margin], cases)
    rows = []
    for key, (diff, low, margin, cases) in criteria.items():
        need_cases = metrics.cases_for_margin(cases, diff, low, margin)
        films = None
        if need_cases is not None:
            share = 1.0 if key == "auc" else prevalence if key == "sensitivity" else 1 - prevalence
            films = math.ceil(need_cases / share)
        rows.append(
            {
                "question": f"deployed vs FP32 {key} non-inferior at -{margin:g}",
                "pilot": {"diff": diff, "ci_low": low, "cases": cases},
                "films": films if films is not None else 0,
                "positives": math.ceil((films or 0) * prevalence),
                "negatives": (films or 0) - math.ceil((films or 0) * prevalence),
                "method": "the export gate's films-needed rule: n x ((diff - ci_low) / (diff + "
                "margin))^2, the bundle's export as the pilot"
                if films is not None
                else "the pilot's point estimate is beyond the margin: no "
                "number of films would show it",
            }
        )
    return rows
