"""``edgevcf validate``: a bundle on a site's own films, by subgroup, judged by the site's own
protocol — and, asked for, re-thresholded into a new signed bundle.

One function, :func:`validate`, runs the whole job; scoring (:mod:`.score`), the statistics
(:mod:`.analysis`), the protocol (:mod:`.protocol`), re-thresholding (:mod:`.rethreshold`) and the
report (:mod:`.report`) each live in their own module.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevcf import __version__
from edgevcf.errors import ConfigError
from edgevcf.jsonutil import json_safe
from edgevcf.site import analysis
from edgevcf.site.protocol import judge, load_protocol
from edgevcf.site.rethreshold import (
    Objective,
    check_envelope,
    envelope_of,
    parent_record,
    split_parts,
    write_site_bundle,
)
from edgevcf.site.score import SiteFilms, score_site

log = logging.getLogger(__name__)

SCHEMA = "edgevcf.site-validation"
SCHEMA_VERSION = 1


@dataclass
class ValidateOptions:
    """What ``edgevcf validate`` was asked (CLI flags)."""

    baseline: str | os.PathLike[str] | None = None
    protocol: str | os.PathLike[str] | None = None
    rethreshold: str | None = None
    refit_gate: bool = False
    envelope: tuple[float, float] | None = None
    site_bundle: str | os.PathLike[str] | None = None
    sign_key: str | os.PathLike[str] | None = None
    seed: int = 0
    backend: str = "auto"
    trust: Any = None
    institution_salt: str | None = None
    min_films: int | None = None
    min_positives: int | None = None
    figures: bool = True
    force: bool = False
    ray: Any = None  # an edgevcf.scale.RayPlan: score on a Ray cluster (statistics stay here)


def validate(
    bundle: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    opts: ValidateOptions | None = None,
) -> dict[str, Any]:
    """Validate ``bundle`` on the site manifest ``data``; write ``validation.json``,
    ``validation.md`` and figures to ``out``; returns the result (``passed``: the protocol's
    verdict, None without a protocol)."""
    from edgevcf.bundle import Bundle
    from edgevcf.data.manifest import Manifest

    opts = opts or ValidateOptions()
    t0 = time.perf_counter()
    if (opts.rethreshold or opts.refit_gate) and not opts.site_bundle:
        raise ConfigError(
            "--rethreshold and --refit-gate write a new bundle: say where with --site-bundle DIR"
        )
    objective = Objective.parse(opts.rethreshold) if opts.rethreshold else None
    parent = Bundle.load(bundle, trust=opts.trust)
    envelope = envelope_of(parent, opts.envelope) if objective else None
    proto = load_protocol(opts.protocol) if opts.protocol else None
    manifest = Manifest.load(data)
    films = score_site(
        parent.path,
        manifest,
        baseline=opts.baseline,
        backend=opts.backend,
        trust=opts.trust,
        institution_salt=opts.institution_salt,
        ray=opts.ray,
    )
    head = proto.head if proto else None
    settings = analysis.Settings(
        threshold=parent.threshold,
        min_films=opts.min_films or (head.min_films if head else analysis.MIN_FILMS),
        min_positives=opts.min_positives
        or (head.min_positives if head else analysis.MIN_POSITIVES),
        level=head.level if head else 0.95,
        tolerance=parent.manifest["profile"]["tolerance"] if opts.baseline else None,
    )
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "edgevcf": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "bundle": parent_record(parent),
        "site": {
            "manifest": Path(data).name,
            "fingerprint": manifest.fingerprint(),
            "films": len(films.paths),
            "patients": len(set(films.patients)),
            "positives": int(films.labels.sum()),
            "unreadable": int((films.status == "refused").sum()),
            "institution_hashed": opts.institution_salt is not None,
        },
        "baseline": {"name": films.base_name, "threshold": films.base_threshold}
        if opts.baseline
        else None,
        "protocol": proto.to_dict() if proto else None,
        "settings": {
            "min_films": settings.min_films,
            "min_positives": settings.min_positives,
            "level": settings.level,
        },
    }
    everything = np.ones(len(films.paths), dtype=bool)
    evaluated, tune, gate = everything, everything, None
    result["rethreshold"] = result["gate_refit"] = None
    if objective is None and not opts.refit_gate:
        result["evaluated_on"] = "all films"
        result["analysis"] = analysis.analyse(films, everything, settings)
    else:
        films, evaluated, tune, gate = _site_change(
            parent, films, settings, objective, envelope, opts, result
        )
    rules = judge(proto, result["analysis"]) if proto else []
    result["rules"] = rules
    result["passed"] = all(r["verdict"] == "pass" for r in rules) if rules else None
    if result["rethreshold"] is not None:
        result["site_bundle"] = _site_bundle(parent, films, result, opts, tune, evaluated, gate)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    _write(Path(out), result, films, evaluated, opts)
    return result


def _site_change(
    parent: Any,
    films: SiteFilms,
    settings: analysis.Settings,
    objective: Objective | None,
    envelope: dict[str, Any] | None,
    opts: ValidateOptions,
    result: dict[str, Any],
) -> tuple[SiteFilms, np.ndarray, np.ndarray, Any]:
    """What a site bundle changes, decided on the tuning part and judged on the confirmation
    part (never on films that chose it): the films split by patient, the gate re-fitted when
    asked, the threshold chosen inside the envelope. Fills ``result`` (``before``,
    ``analysis``, ``rethreshold``, ``gate_refit``); returns the films as the site bundle sees
    them, the confirmation and tuning masks and the re-fitted gate (None: the parent's)."""
    tune, confirm, how = split_parts(films, opts.seed)
    site_films, gate = films, None
    if opts.refit_gate:
        from edgevcf.site.gate import refit

        gate, result["gate_refit"], site_films = refit(parent, films, tune, confirm)
    new_t = parent.threshold
    if objective is not None:
        assert envelope is not None
        scored_tune = tune & site_films.scored
        new_t = objective.choose(site_films.labels[scored_tune], site_films.probs()[scored_tune])
        check_envelope(new_t, envelope)
    site_settings = dataclasses.replace(settings, threshold=new_t)
    result["evaluated_on"] = "confirmation part"
    result["before"] = analysis.analyse(films, confirm, settings)
    result["analysis"] = analysis.analyse(site_films, confirm, site_settings)
    tuning = analysis.cell(site_films, tune, site_settings)
    result["rethreshold"] = {
        "objective": objective.describe() if objective else "the parent's threshold kept",
        "split": how,
        "tuning": {k: tuning[k] for k in ("films", "n", "positives", "sensitivity", "specificity")},
        "confirmation_films": int(confirm.sum()),
        "threshold": new_t,
        "parent_threshold": parent.threshold,
        "envelope": envelope
        or {"low": 0.0, "high": 1.0, "rule": "threshold unchanged", "source": "none needed"},
    }
    return site_films, confirm, tune, gate


def _site_bundle(
    parent: Any,
    films: Any,
    result: dict[str, Any],
    opts: ValidateOptions,
    tune: np.ndarray,
    confirm: np.ndarray,
    gate: Any,
) -> dict[str, Any] | None:
    """Write the re-thresholded bundle unless the protocol failed (never ship what failed)."""
    if result["passed"] is False:
        return {
            "written": False,
            "why": "the protocol failed on the confirmation films: no site bundle written",
        }
    r = result["rethreshold"]
    a = result["analysis"]["overall"]
    lineage = {
        "parent": result["bundle"],
        "site": result["site"],
        "objective": r["objective"],
        "split": r["split"],
        "envelope": r["envelope"],
        "protocol": result["protocol"],
        "quality_gate": "re-fitted on the site's tuning films" if gate is not None else "parent's",
        "confirmation": {
            "films": a["films"],
            "n": a["n"],
            "positives": a["positives"],
            "sensitivity": a["sensitivity"],
            "specificity": a["specificity"],
            "auc": a["auc"],
            "rules": [(x["rule"], x["verdict"]) for x in result["rules"]],
        },
        "edgevcf": __version__,
        "drift_reference": drift_reference(films, confirm, r["threshold"]),
    }
    method = (
        f"site: {r['objective']} on {r['tuning']['n']} tuning films "
        f"({r['split']}), confirmed on {a['n']}"
    )
    site = write_site_bundle(
        parent,
        opts.site_bundle or "",
        threshold=r["threshold"],
        method=method,
        lineage=lineage,
        films=films,
        tune=tune,
        backend=opts.backend,
        gate=(gate, result["gate_refit"]) if gate is not None else None,
        sign_key=opts.sign_key,
        force=opts.force,
    )
    from edgevcf.hashing import sha256_file

    return {
        "written": True,
        "path": str(site.path),
        "model_id": site.id,
        "manifest_sha256": sha256_file(site.path / "manifest.json"),
        "signed": opts.sign_key is not None,
    }


def drift_reference(films: SiteFilms, mask: np.ndarray, threshold: float) -> dict[str, Any]:
    """What the cart's drift watch takes as in control (:mod:`edgevcf.watch.drift`): the films
    of ``mask`` as the site bundle scores them (its gate, its threshold); the volume per period
    is the node's to say (``[watch] films_per_period``)."""
    from edgevcf.watch.drift import FilmRecord, Reference

    probs = films.probs()
    records = []
    for i in np.flatnonzero(mask):
        ok = bool(films.status[i] == "ok")
        gate = float(films.gate_scores[i])
        p = float(probs[i])
        records.append(
            FilmRecord("", ok, p >= threshold if ok else None, p if ok else None,
                       gate if np.isfinite(gate) else None, films.levels[i])
        )  # fmt: skip
    ref = Reference.from_records(
        records, f"site validation: the {len(records)} confirmation films", per_period=0.0
    )
    return json_safe(ref.to_dict())


def _write(
    out: Path, result: dict[str, Any], films: Any, evaluated: np.ndarray, opts: ValidateOptions
) -> None:
    from edgevcf.site import report

    out.mkdir(parents=True, exist_ok=True)
    figures = report.figures(out, result, films, evaluated) if opts.figures else {}
    result["figures"] = figures
    (out / "validation.json").write_text(
        json.dumps(json_safe(result), indent=2, sort_keys=False) + "\n", encoding="utf-8"
    )
    (out / "validation.md").write_text(report.markdown(result), encoding="utf-8")
