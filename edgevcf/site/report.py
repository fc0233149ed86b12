"""validation.md and the figures a site reads rather than the JSON: a forest plot of
sensitivity and specificity by subgroup, ROC curves per subgroup, the calibration plot and the
decision curve. matplotlib is optional: without it the Markdown says the figures were skipped."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from edgevcf import subgroups

log = logging.getLogger(__name__)


def _pct(d: dict[str, Any] | None) -> str:
    if not d or d.get("n", 0) == 0 or d.get("value") is None or math.isnan(d["value"]):
        return "—"
    return f"{100 * d['value']:.0f} % ({100 * d['ci_low']:.0f}–{100 * d['ci_high']:.0f})"


def _auc(d: dict[str, Any] | None) -> str:
    return "—" if not d else f"{d['auc']:.3f} ({d['ci_low']:.3f}–{d['ci_high']:.3f})"


def _row(name: str, c: dict[str, Any]) -> str:
    flag = "" if c["sufficient"] else " *insufficient*"
    gate = c.get("baseline_gate")
    g = ""
    if gate:
        need = max(gate.get("films_needed", {}).values(), default=0)
        more = (
            f" (~{need} films would decide)" if gate["verdict"] == "inconclusive" and need else ""
        )
        g = f" | {gate['verdict']}{more}"
    return (
        f"| {name}{flag} | {c['films']} | {c['n']} | {c['positives']} | "
        f"{_pct(c['refusal_rate'])} | {_auc(c['auc'])} | {_pct(c['sensitivity'])} | "
        f"{_pct(c['specificity'])} | {_pct(c['ppv'])} | {_pct(c['npv'])}{g} |"
    )


def _table(cells: dict[str, dict[str, Any]], baseline: bool) -> list[str]:
    head = (
        "| level | films | scored | positives | refused by gate | AUC (95 % CI) | "
        "sensitivity | specificity | PPV | NPV |" + (" vs FP32 |" if baseline else "")
    )
    sep = "|" + "---|" * (10 + int(baseline))
    return [head, sep, *(_row(k, c) for k, c in cells.items())]


def markdown(r: dict[str, Any]) -> str:
    """The report in Markdown."""
    a = r["analysis"]
    b = r["bundle"]
    s = r["site"]
    base = r["baseline"] is not None
    lines = [
        "# Site validation",
        "",
        f"Bundle `{b['path']}` ({b['target']} {b['precision']}, model id `{b['model_id'][:16]}`), "
        f"on `{s['manifest']}`: {s['films']} films of {s['patients']} patients, "
        f"{s['positives']} positive (data fingerprint `{s['fingerprint'][:16]}`). "
        f"Evaluated on **{r['evaluated_on']}** at threshold {a['threshold']:.4f}. "
        f"Cells with fewer than {r['settings']['min_films']} scored films or "
        f"{r['settings']['min_positives']} positives are *insufficient*: shown, not judged. "
        "Proportions with Wilson 95 % CIs, AUC with DeLong's.",
        "",
    ]
    if r.get("rethreshold"):
        t = r["rethreshold"]
        before = r["before"]["overall"]
        after = a["overall"]
        lines += [
            "## Re-thresholded",
            "",
            f"Objective {t['objective']}; films split by {t['split']}. Threshold "
            f"{t['parent_threshold']:.4f} -> **{t['threshold']:.4f}**, chosen on "
            f"{t['tuning']['n']} tuning films, inside the envelope "
            f"[{t['envelope']['low']:.4f}, {t['envelope']['high']:.4f}] "
            f"({t['envelope']['rule']}).",
            "",
            "| on the confirmation films | sensitivity | specificity | PPV | NPV |",
            "|---|---|---|---|---|",
            f"| bundled threshold | {_pct(before['sensitivity'])} | "
            f"{_pct(before['specificity'])} | {_pct(before['ppv'])} | {_pct(before['npv'])} |",
            f"| site threshold | {_pct(after['sensitivity'])} | {_pct(after['specificity'])} | "
            f"{_pct(after['ppv'])} | {_pct(after['npv'])} |",
            "",
        ]
        sb = r.get("site_bundle") or {}
        lines += [
            f"Site bundle: `{sb['path']}` (model id `{sb['model_id'][:16]}`, "
            f"{'signed' if sb['signed'] else 'unsigned'})."
            if sb.get("written")
            else f"No site bundle written: {sb.get('why', '')}.",
            "",
        ]
    g = r.get("gate_refit")
    if g:
        sr = g["site_refit"]
        fams = g.get("check_oos_scored_by_family", {})
        worst = max(fams.items(), key=lambda kv: kv[1]) if fams else ("-", 0.0)
        lines += [
            "## Quality gate re-fitted on the site's films",
            "",
            f"In scope: {sr['in_scope_films']} site tuning films. On the {sr['confirmation_films']}"
            f" confirmation films the gate refused {_pct(sr['confirmation_refused_before'])} "
            f"before and {_pct(sr['confirmation_refused_after'])} after. Held-out generated "
            f"out-of-scope images let through: {100 * g['check_oos_scored']:.1f} % (the "
            f"parent's gate: {100 * float(sr['parent_check_oos_scored'] or 0):.1f} %); worst "
            f"family {worst[0]} {100 * worst[1]:.1f} %.",
            "",
        ]
    lines += ["## Overall", "", *_table({"all": a["overall"]}, base), ""]
    for name, f in a["subgroups"].items():
        if len(f["levels"]) == 1 and subgroups.UNKNOWN in f["levels"]:
            lines += [f"**{name}**: unknown for every film (from {f['source']}).", ""]
            continue
        lines += [f"## By {name}", "", f"From {f['source']}.", "", *_table(f["levels"], base), ""]
        for measure, t in f["heterogeneity"].items():
            if t["p_value"] is None or (
                isinstance(t["p_value"], float) and math.isnan(t["p_value"])
            ):
                continue
            note = f"; {t['note']}" if t["note"] else ""
            lines.append(
                f"- {measure}: {t['test']}, statistic {t['statistic']:.2f} on "
                f"{t['df']} df, p = {t['p_value']:.3g}, q (BH) = "
                f"{t.get('q_value', float('nan')):.3g}{note}"
            )
        if f["heterogeneity"]:
            lines.append("")
    cal = a.get("calibration")
    if cal and "citl" in cal:
        lines += [
            "## Probabilities",
            "",
            f"Calibration-in-the-large {cal['citl']:+.2f} "
            f"({cal['citl_ci'][0]:+.2f} to {cal['citl_ci'][1]:+.2f}; 0 is ideal), slope "
            f"{cal['slope']:.2f} ({cal['slope_ci'][0]:.2f} to {cal['slope_ci'][1]:.2f}; "
            f"1 is ideal); mean predicted {cal['mean_predicted']:.2f} vs observed "
            f"{cal['observed']:.2f}.",
            "",
        ]
    if r["rules"]:
        lines += [
            f"## Protocol: {r['protocol']['name']} (written {r['protocol']['written']}, "
            f"sha256 `{r['protocol']['sha256'][:16]}`)",
            "",
            "| rule | verdict | failed in | not judged |",
            "|---|---|---|---|",
        ]
        for x in r["rules"]:
            lines.append(
                f"| {x['rule']} | **{x['verdict']}** | {', '.join(x['failed']) or '—'} "
                f"| {', '.join(x['not_judged']) or '—'} |"
            )
        verdict = "PASSED" if r["passed"] else "FAILED"
        lines += ["", f"**{verdict}**", ""]
    if r.get("figures"):
        lines += ["## Figures", ""] + [f"![{k}]({v})" for k, v in r["figures"].items()] + [""]
    return "\n".join(lines)


def figures(out: Path, r: dict[str, Any], films: Any, evaluated: np.ndarray) -> dict[str, str]:
    """Forest plot, ROC per subgroup, calibration and decision curve (file names)."""
    from edgevcf.deps import available

    if not available("matplotlib"):
        log.info("matplotlib is not installed: no figures (pip install 'edgevcf[report]')")
        return {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = {}
    a = r["analysis"]
    rows = [("all", a["overall"])] + [
        (f"{n}={lvl}", c)
        for n, f in a["subgroups"].items()
        for lvl, c in f["levels"].items()
        if len(f["levels"]) != 1
    ]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.32 * len(rows) + 1.5), sharey=True)
    for ax, key in zip(axes, ("sensitivity", "specificity"), strict=True):
        for i, (_, c) in enumerate(rows):
            d = c[key]
            if not d or not d["n"]:
                continue
            colour = "tab:blue" if c["sufficient"] else "0.6"
            ax.errorbar(
                d["value"],
                i,
                xerr=[[d["value"] - d["ci_low"]], [d["ci_high"] - d["value"]]],
                fmt="o",
                color=colour,
                capsize=2,
            )
        ax.axvline(a["overall"][key]["value"], color="0.3", lw=0.8, ls="--")
        ax.set_xlim(0, 1)
        ax.set_title(f"{key} at {a['threshold']:.3f} (grey: insufficient)")
    axes[0].set_yticks(range(len(rows)), [n for n, _ in rows])
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(out / "forest.png", dpi=110)
    plt.close(fig)
    made["forest plot"] = "forest.png"

    from edgevcf.metrics import roc_curve

    scored = evaluated & films.scored
    y_all, p_all = films.labels, films.probs()
    fields = [
        n
        for n, f in a["subgroups"].items()
        if sum(c["sufficient"] for c in f["levels"].values()) >= 2
    ]
    if fields:
        fig, axes = plt.subplots(1, len(fields), figsize=(4 * len(fields), 4), squeeze=False)
        for ax, name in zip(axes[0], fields, strict=True):
            values = np.array([lv[name] for lv in films.levels])
            for lvl, c in a["subgroups"][name]["levels"].items():
                m = scored & (values == lvl)
                if c["sufficient"] and c["auc"]:
                    fpr, tpr, _ = roc_curve(y_all[m], p_all[m])
                    ax.plot(fpr, tpr, label=f"{lvl} ({c['auc']['auc']:.2f})")
            ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
            ax.set_title(f"ROC by {name}")
            ax.set_xlabel("1 - specificity")
            ax.legend(fontsize=7, loc="lower right")
        axes[0][0].set_ylabel("sensitivity")
        fig.tight_layout()
        fig.savefig(out / "roc_by_subgroup.png", dpi=110)
        plt.close(fig)
        made["ROC by subgroup"] = "roc_by_subgroup.png"

    if a["reliability"]:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4))
        rel = a["reliability"]
        x = [b["mean_predicted"] for b in rel]
        yv = [b["observed"] for b in rel]
        err = [
            [v - b["ci_low"] for v, b in zip(yv, rel, strict=True)],
            [b["ci_high"] - v for v, b in zip(yv, rel, strict=True)],
        ]
        ax1.errorbar(x, yv, yerr=err, fmt="o-", capsize=2)
        ax1.plot([0, 1], [0, 1], color="0.7", lw=0.8)
        ax1.set_xlabel("mean predicted P(fresh)")
        ax1.set_ylabel("observed share fresh")
        ax1.set_title("calibration")
        nb = a["net_benefit"]
        ax2.plot(nb["threshold"], nb["model"], label="model")
        ax2.plot(nb["threshold"], nb["treat_all"], label="treat all", ls="--")
        ax2.plot(nb["threshold"], nb["treat_none"], label="treat none", ls=":")
        ax2.set_ylim(-0.05, max(0.05, max(nb["model"] + nb["treat_all"]) * 1.1))
        ax2.set_xlabel("threshold probability")
        ax2.set_ylabel("net benefit")
        ax2.set_title("decision curve")
        ax2.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "calibration.png", dpi=110)
        plt.close(fig)
        made["calibration and decision curve"] = "calibration.png"
    return made
