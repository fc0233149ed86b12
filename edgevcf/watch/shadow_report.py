"""``edgevcf shadow report``: what a shadow run showed, and whether it earns a promotion.

Label-free, from the node's journal (:mod:`edgevcf.serve.shadowing`): films compared,
agreement, kappa, positive rates, exact McNemar (:mod:`edgevcf.watch.shadow`). With ground
truth that arrived later (a CSV of ``sop_instance_uid`` or ``accession_number`` and ``label``,
hashed with the journal's salt exactly as the node hashed the films, so the clear identifiers
never meet the journal): the project's paired accuracy gate of candidate against the served
bundle (ΔAUC, Δsensitivity, Δspecificity non-inferiority, flips; :func:`edgevcf.metrics.gate_for`)
and the paired sensitivity and specificity per subgroup level (:mod:`edgevcf.subgroups`).

The promotion rule (:class:`PromotionRule`): enough exposure (days, films, labelled positives
and negatives), the gate passed, and no subgroup level *shown* worse (its paired difference's
CI wholly below 0). The report says which checks hold; it switches nothing.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevcf import metrics
from edgevcf.errors import DataError
from edgevcf.jsonutil import json_safe
from edgevcf.watch.shadow import ShadowTally

#: Films a subgroup level needs (and positives among them) before its paired differences count.
MIN_LEVEL_FILMS = 30
MIN_LEVEL_POSITIVES = 10


@dataclass(frozen=True)
class PromotionRule:
    """What a candidate must show before ``edgevcf promote`` (the defaults: two weeks, 500
    films, 50 labelled positives and 50 negatives)."""

    min_days: float = 14.0
    min_films: int = 500
    min_positives: int = 50
    min_negatives: int = 50


def read_labels(path: Path, salt: str) -> dict[str, int]:
    """``salted hash -> label`` from a CSV with ``label`` and ``sop_instance_uid`` and/or
    ``accession_number`` columns."""
    from edgevcf.serve.journal import salted

    out: dict[str, int] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise DataError(f"cannot read the label file {path}: {exc.strerror}") from None
    if (
        not rows
        or "label" not in rows[0]
        or not ({"sop_instance_uid", "accession_number"} & set(rows[0]))
    ):
        raise DataError(
            f"{path}: needs a 'label' column and 'sop_instance_uid' or 'accession_number'",
            hint="one row per film: sop_instance_uid,label (1 = fresh fracture, 0 = not)",
        )
    for i, r in enumerate(rows, start=2):
        lab = str(r.get("label", "")).strip()
        if lab not in ("0", "1"):
            raise DataError(f"{path} line {i}: label must be 0 or 1, got {lab!r}")
        for col in ("sop_instance_uid", "accession_number"):
            if r.get(col, "").strip():
                out[salted(salt, r[col])] = int(lab)
    return out


def _ok(result: dict[str, Any]) -> bool:
    return result.get("status") == "ok" and result.get("probability") is not None


def _subgroups(rows: list[dict[str, Any]], y: np.ndarray, p_call: np.ndarray,
               c_call: np.ndarray) -> list[dict[str, Any]]:  # fmt: skip
    out = []
    fields = sorted({k for r in rows for k in r["levels"]})
    for field in fields:
        levels = np.array([r["levels"].get(field, "unknown") for r in rows])
        for lvl in sorted(set(levels)):
            m = levels == lvl
            pos, neg = m & y, m & ~y
            row: dict[str, Any] = {"field": field, "level": lvl, "films": int(m.sum()),
                                   "positives": int(pos.sum())}  # fmt: skip
            if m.sum() < MIN_LEVEL_FILMS or pos.sum() < MIN_LEVEL_POSITIVES or not neg.any():
                out.append(row | {"insufficient": True})
                continue
            sens = metrics.paired_proportion_diff(p_call[pos], c_call[pos])
            spec = metrics.paired_proportion_diff(~p_call[neg], ~c_call[neg])
            row |= {
                "insufficient": False,
                "sensitivity": {"diff": sens.diff, "ci_low": sens.ci_low, "ci_high": sens.ci_high},
                "specificity": {"diff": spec.diff, "ci_low": spec.ci_low, "ci_high": spec.ci_high},
                "shown_worse": bool(sens.ci_high < 0 or spec.ci_high < 0),
            }
            out.append(row)
    return out


def shadow_report(
    journal: Path,
    labels: Path | None = None,
    rule: PromotionRule | None = None,
    candidate: str | None = None,
) -> dict[str, Any]:
    """The report of the shadow run in ``journal`` (the latest candidate unless ``candidate``)."""
    from edgevcf.serve.journal import Journal

    rule = rule or PromotionRule()
    if not journal.is_file():
        raise DataError(f"no journal at {journal}", hint="the node's [storage] journal file")
    with Journal(journal) as j:
        salt = j.salt()
        rows = j.shadow_results()
    if not rows:
        raise DataError(f"{journal}: no shadow results", hint="serve with --shadow CANDIDATE")
    cand = candidate or rows[-1]["candidate"]
    rows = [r for r in rows if r["candidate"] == cand]
    tally = ShadowTally()
    for r in rows:
        tally.add(bool(r["primary"]["decision"]) if _ok(r["primary"]) else None,
                  bool(r["result"]["decision"]) if _ok(r["result"]) else None)  # fmt: skip
    days = (rows[-1]["at"] - rows[0]["at"]) / 86400.0 if rows else 0.0
    out: dict[str, Any] = {
        "primary": rows[0]["primary"].get("model_id"),
        "candidate": cand,
        "films": len(rows),
        "days": days,
        "label_free": tally.compare(),
        "labelled": None,
        "rule": asdict(rule),
    }
    checks = [
        ("days of exposure", days >= rule.min_days, f"{days:.1f} of {rule.min_days:g}"),
        ("films", len(rows) >= rule.min_films, f"{len(rows)} of {rule.min_films}"),
    ]
    if labels is not None:
        truth = read_labels(labels, salt)
        matched = [r for r in rows if _ok(r["primary"]) and _ok(r["result"])
                   and (r["uid_hash"] in truth or r["accession_hash"] in truth)]  # fmt: skip
        y = np.array([truth.get(r["uid_hash"], truth.get(r["accession_hash"], 0))
                      for r in matched], dtype=bool)  # fmt: skip
        pp = np.array([r["primary"]["probability"] for r in matched], dtype=np.float64)
        pc = np.array([r["result"]["probability"] for r in matched], dtype=np.float64)
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        lab: dict[str, Any] = {"films": len(matched), "positives": n_pos, "negatives": n_neg,
                               "label_rows": len(truth)}  # fmt: skip
        gate_ok = False
        if n_pos and n_neg:
            t_p = float(matched[0]["primary"]["threshold"])
            t_c = float(matched[0]["result"]["threshold"])
            gate = metrics.gate_for({}, y, pp, pc, t_p, t_c)
            lab["gate"] = gate.to_dict()
            gate_ok = bool(gate.passed)
            lab["auc"] = {"primary": metrics.auc(y, pp), "candidate": metrics.auc(y, pc)}
            lab["subgroups"] = _subgroups(matched, y, pp >= t_p, pc >= t_c)
        worse = [f"{s['field']}={s['level']}" for s in lab.get("subgroups", [])
                 if s.get("shown_worse")]  # fmt: skip
        checks += [
            ("labelled positives", n_pos >= rule.min_positives, f"{n_pos} of {rule.min_positives}"),
            ("labelled negatives", n_neg >= rule.min_negatives, f"{n_neg} of {rule.min_negatives}"),
            ("paired gate passed", gate_ok, "ΔAUC, Δsensitivity, Δspecificity, flips"),
            ("no subgroup shown worse", not worse, ", ".join(worse) or "none"),
        ]
        out["labelled"] = lab
    else:
        checks.append(("labels", False, "no --labels: the gate cannot be judged"))
    out["checks"] = [{"check": c, "passed": bool(ok), "detail": d} for c, ok, d in checks]
    out["promote"] = all(ok for _, ok, _ in checks)
    return json_safe(out)


def markdown(r: dict[str, Any]) -> str:
    """The report for people."""
    c = r["label_free"]
    lines = [
        "# Shadow report",
        "",
        f"Candidate `{r['candidate'][:16]}` beside `{str(r['primary'])[:16]}`: {r['films']} "
        f"films over {r['days']:.1f} days ({c['unpaired']} not assessed by one of them).",
        "",
    ]
    if c["films"]:
        d = c["difference"]
        kap = c["kappa"]["value"]
        lines += [
            "| agreement | Cohen's kappa | positive rate served / candidate | difference (95 % CI) "
            "| McNemar p (exact) |",
            "|---|---|---|---|---|",
            f"| {c['agreement']['value']:.3f} | {'-' if kap is None else f'{kap:.3f}'} | "
            f"{c['positive_rate']['primary']:.3f} / {c['positive_rate']['candidate']:.3f} | "
            f"{d['value']:+.3f} ({d['ci_low']:+.3f} to {d['ci_high']:+.3f}) | "
            f"{c['mcnemar_p']:.3g} |",
            "",
        ]
    lab = r["labelled"]
    if lab:
        lines += [f"Labelled: {lab['films']} films ({lab['positives']} positive) of "
                  f"{lab['label_rows']} label keys."]  # fmt: skip
        if "gate" in lab:
            g = lab["gate"]
            verdict = "passed" if g["passed"] else "not passed"
            lines += [f"AUC served {lab['auc']['primary']:.3f}, candidate "
                      f"{lab['auc']['candidate']:.3f}; gate {verdict} "
                      f"(failed: {', '.join(g['failed']) or 'none'})."]  # fmt: skip
    lines += ["", "| check | holds | detail |", "|---|---|---|"]
    lines += [f"| {x['check']} | {'yes' if x['passed'] else 'no'} | {x['detail']} |"
              for x in r["checks"]]  # fmt: skip
    lines += ["", f"**{'Promote' if r['promote'] else 'Not yet'}**: "
              + ("every check holds; `edgevcf promote` records it (nothing switches by itself)."
                 if r["promote"] else "the candidate keeps running in shadow.")]  # fmt: skip
    return "\n".join(lines) + "\n"
