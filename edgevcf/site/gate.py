"""A quality gate re-fitted with the site's own films as in scope.

A site's legitimate films can look unlike the training films to the export's gate (a darker
display curve, a lower dose: the demo's bundle refused a fifth to two fifths of such films).
The site bundle may then carry a gate fitted as export fits one (:func:`edgevcf.quality_fit.
fit_for_bundle`) but with the site's *tuning* films as the in-scope set, against the same
generated out-of-scope families, and checked as export checks it: on a second generated set it
never saw, every family of which must still be refused. The refusal rate on the site's
*confirmation* films is reported before (the parent's gate) and after.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgevcf import metrics, progress
from edgevcf.site.score import SiteFilms

#: Gate stages a re-fit cannot change: the rules on the header and the image itself.
RULE_STAGES = ("header", "image", "read")


def _units(spec: Any, paths: list[str], idx: np.ndarray) -> np.ndarray:
    rows = []
    for i in progress.track(idx, desc="read films for the gate", unit="film"):
        rows.append(spec.to_unit(spec.read(paths[int(i)])[0]))
    return np.asarray(rows, dtype=np.float32)


def refit(
    parent: Any, films: SiteFilms, tune: np.ndarray, confirm: np.ndarray
) -> tuple[Any, dict[str, Any], SiteFilms]:
    """(the new gate, its manifest record, the films as the new gate judges them)."""
    from edgevcf.quality import feature_matrix
    from edgevcf.quality_fit import fit_for_bundle

    spec = parent.preprocess
    ruled = np.array([s in RULE_STAGES for s in films.stages])
    usable = films.readable & ~ruled
    fit_idx = np.flatnonzero(tune & usable)
    all_idx = np.flatnonzero(usable)
    units = _units(spec, films.paths, all_idx)
    pos = {int(i): k for k, i in enumerate(all_idx)}
    fit_units = units[[pos[int(i)] for i in fit_idx]]
    gate, record = fit_for_bundle(
        fit_units, [films.patients[int(i)] for i in fit_idx], fit_units, spec
    )
    refused_new = gate.refuse(*gate.scores(feature_matrix(units)))
    status = films.status.copy()
    for k, i in enumerate(all_idx):
        status[i] = "not_assessable" if refused_new[k] else "ok"
    after = dataclasses.replace(films, status=status)
    conf = confirm & films.readable
    n = int(conf.sum())

    def rate(st: np.ndarray) -> dict[str, Any]:
        return metrics.wilson(int((conf & (st == "not_assessable")).sum()), n).to_dict()

    parent_gate = parent.manifest.get("quality_gate") or {}
    record.update({
        "split": "site tuning films",
        "tuning_split": "site tuning films",
        "site_refit": {
            "in_scope_films": len(fit_idx),
            "confirmation_films": n,
            "confirmation_refused_before": rate(films.status),
            "confirmation_refused_after": rate(status),
            "parent_check_oos_scored": parent_gate.get("check_oos_scored"),
            "parent_check_oos_scored_by_family": parent_gate.get("check_oos_scored_by_family"),
        },
    })  # fmt: skip
    return gate, record, after
