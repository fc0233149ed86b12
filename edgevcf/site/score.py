"""Score a site's films with a bundle as the cart would, and with its FP32 baseline.

Every readable film gets the deployed model's logit *and* the quality gate's verdict, from one
read: the validation reports what the cart would do (refused films get no score there), while a
re-fitted gate and the re-thresholding can still see the scores of films the old gate refused.
Unreadable films are kept with their reason, never dropped.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf import progress, subgroups
from edgevcf.errors import DataError

if TYPE_CHECKING:
    from edgevcf.scale import Facts, RayPlan

log = logging.getLogger(__name__)

#: Films per engine batch (bounded memory: a few batches of graph inputs at a time, also in a
#: Ray cluster's object store).
CHUNK = 16


@dataclass
class SiteFilms:
    """A site's films and what the bundle (and the baseline) made of them.

    Attributes:
        paths: Film files.
        patients: Patient ids (for splitting by patient; never written to a report).
        labels: 0/1 ground truth.
        splits: The manifest's split column ("" where absent).
        levels: Each film's subgroup levels (:mod:`edgevcf.subgroups`).
        status: ``ok`` (in scope), ``not_assessable`` (the gate refused it) or ``refused``
            (unreadable).
        reasons: Why a film was refused or not assessable.
        logits: The deployed model's logit (nan where unreadable).
        gate_scores: The learned gate's out-of-scope score (nan where it did not run).
        base_logits: The baseline's logit, when one was given.
        base_name: What the baseline is.
        base_threshold: The baseline's own threshold.
    """

    paths: list[str]
    patients: list[str]
    labels: np.ndarray
    splits: list[str]
    levels: list[dict[str, str]]
    status: np.ndarray
    reasons: list[str]
    logits: np.ndarray
    gate_scores: np.ndarray
    base_logits: np.ndarray | None = None
    base_name: str = ""
    base_threshold: float | None = None
    stages: list[str] = field(default_factory=list)  # which gate stage refused ("" if none)
    notes: list[str] = field(default_factory=list)

    @property
    def scored(self) -> np.ndarray:
        """Films the cart would score (in scope)."""
        return np.asarray(self.status == "ok")

    @property
    def readable(self) -> np.ndarray:
        """Films with a logit (in scope or refused by the gate)."""
        return np.asarray(self.status != "refused")

    def subset(self, mask: np.ndarray) -> SiteFilms:
        """The films of ``mask`` as a SiteFilms of their own (per-film fields sliced alike)."""
        idx = np.flatnonzero(mask)

        def pick(v: Any) -> Any:
            if isinstance(v, np.ndarray):
                return v[idx]
            return [v[int(i)] for i in idx] if isinstance(v, list) and v else v

        per_film = ("paths", "patients", "labels", "splits", "levels", "status", "reasons",
                    "logits", "gate_scores", "base_logits", "stages")  # fmt: skip
        return dataclasses.replace(self, **{k: pick(getattr(self, k)) for k in per_film})

    def probs(self) -> np.ndarray:
        """P(fresh) of every film (nan where unreadable)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return np.asarray(1.0 / (1.0 + np.exp(-self.logits)), dtype=np.float64)

    def base_probs(self) -> np.ndarray | None:
        """The baseline's P(fresh), if a baseline was given."""
        if self.base_logits is None:
            return None
        with np.errstate(over="ignore", invalid="ignore"):
            return np.asarray(1.0 / (1.0 + np.exp(-self.base_logits)), dtype=np.float64)


def _site_levels(path: str, extra: dict[str, str], salt: str | None = None) -> dict[str, Any]:
    """A film's subgroup levels, where it is read (this process or a Ray read task)."""
    return subgroups.levels_for(path, extra, institution_salt=salt)


def _examine_all(
    bundle: str | os.PathLike[str],
    items: list[tuple[str, dict[str, str]]],
    desc: str,
    *,
    backend: str = "auto",
    trust: Any = None,
    ray: RayPlan | None = None,
    facts: Facts | None = None,
) -> tuple[np.ndarray, list[Any], list[dict[str, Any]], float]:
    """Logits (every readable film, in scope or not), what each film came to
    (:class:`~edgevcf.runtime.Examined`), the facts, and the bundle's threshold: in this process
    or on Ray (:mod:`edgevcf.scale`), cut into the same engine batches."""
    from edgevcf.score import examine_films

    n = len(items)
    _, threshold, batches = examine_films(bundle, items, batch_size=CHUNK, gated=False,
                                          facts=facts, backend=backend, trust=trust, ray=ray,
                                          desc=desc)  # fmt: skip
    logits = np.full(n, np.nan)
    done: list[Any] = [None] * n
    fact: list[dict[str, Any]] = [{}] * n
    for batch in batches:
        for i, e, f in batch:
            done[i], fact[i] = e, f
            if e.logit is not None:
                logits[i] = e.logit
    return logits, done, fact, threshold


def score_site(
    bundle: str | os.PathLike[str],
    manifest: Any,
    *,
    baseline: str | os.PathLike[str] | None = None,
    backend: str = "auto",
    trust: Any = None,
    institution_salt: str | None = None,
    ray: RayPlan | None = None,
) -> SiteFilms:
    """Score every film of ``manifest`` with ``bundle`` (and ``baseline``), reading each film's
    subgroup levels from its header or the manifest's columns; on a Ray cluster with ``ray``
    (the statistics stay with the caller)."""
    studies = list(manifest.studies)
    if not studies:
        raise DataError("the site manifest lists no films")
    paths = [str(s.resolve(manifest.root)) for s in studies]
    items = [(p, dict(s.extra)) for p, s in zip(paths, studies, strict=True)]
    levels_of = functools.partial(_site_levels, salt=institution_salt)
    logits, done, levels, _ = _examine_all(bundle, items, "score site films", backend=backend,
                                           trust=trust, ray=ray, facts=levels_of)  # fmt: skip
    status, reasons, stages, gate = [], [], [], np.full(len(paths), np.nan)
    for i, e in enumerate(done):
        v = e.verdict
        status.append(e.status if e.status in ("ok", "not_assessable") else "refused")
        reasons.append(e.reason)
        stages.append(v.stage if v is not None else "read" if e.status == "refused" else "engine")
        if v is not None and v.score is not None:
            gate[i] = v.score
    films = SiteFilms(
        paths=paths,
        patients=[s.patient_id for s in studies],
        labels=np.array([int(s.label) for s in studies], dtype=np.int64),
        splits=[s.split or "" for s in studies],
        levels=levels,
        status=np.array(status),
        reasons=reasons,
        logits=logits,
        gate_scores=gate,
        stages=stages,
    )
    if baseline is not None:
        films.base_logits, films.base_name, films.base_threshold = _baseline(
            Path(baseline), items, films.readable, backend, ray
        )
    return films


def _baseline(
    path: Path,
    items: list[tuple[str, dict[str, str]]],
    readable: np.ndarray,
    backend: str,
    ray: RayPlan | None,
) -> tuple[np.ndarray, str, float]:
    """The FP32 baseline's logits on the same films: a bundle (its engine; on Ray with ``ray``),
    or any reference ``import-model`` accepts (its own runtime, in this process), as
    ``bench --baseline`` takes them."""
    paths = [p for p, _ in items]
    if path.is_dir():
        logits, _, _, threshold = _examine_all(path, items, "score baseline", backend=backend,
                                               ray=ray)  # fmt: skip
        return logits, f"bundle {path.name}", threshold
    from edgevcf.intake.reference import load_reference, reference_probs

    model, meta, ref_onnx = load_reference(path)
    spec = meta.preprocess
    out = np.full(len(paths), np.nan)
    idx = np.flatnonzero(readable)
    for start in progress.track(
        range(0, len(idx), CHUNK),
        desc="score baseline",
        unit="batch",
        total=(len(idx) + CHUNK - 1) // CHUNK,
    ):
        part = idx[start : start + CHUNK]
        units = np.stack([spec.to_unit(spec.read(paths[i])[0]) for i in part])
        p = np.clip(reference_probs(model, ref_onnx, units, spec), 1e-15, 1 - 1e-15)
        out[part] = np.log(p) - np.log1p(-p)
    return out, f"{path.name} (FP32 reference)", float(meta.threshold)
