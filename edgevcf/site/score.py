"""Score a site's films with a bundle as the cart would, and with its FP32 baseline.

Every readable film gets the deployed model's logit *and* the quality gate's verdict, from one
read: the validation reports what the cart would do (refused films get no score there), while a
re-fitted gate and the re-thresholding can still see the scores of films the old gate refused.
Unreadable films are kept with their reason, never dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevcf import progress, subgroups
from edgevcf.errors import DataError, EdgeVCFError

log = logging.getLogger(__name__)

#: Films per inference batch (bounded memory: one batch of graph inputs at a time).
CHUNK = 32


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


def _examine_all(pred: Any, paths: list[str], desc: str) -> tuple[np.ndarray, list[Any]]:
    """Logits and verdicts (or the refusal) for every film, read in threads, run in chunks."""
    n = len(paths)
    logits = np.full(n, np.nan)
    verdicts: list[Any] = [None] * n

    def one(path: str) -> tuple[np.ndarray, Any] | EdgeVCFError:
        try:
            return pred.examine(path)
        except EdgeVCFError as exc:
            return exc

    workers = max(1, min(os.cpu_count() or 1, 4))
    with ThreadPoolExecutor(workers, thread_name_prefix="edgevcf-site") as pool:
        for start in progress.track(
            range(0, n, CHUNK), desc=desc, unit="batch", total=(n + CHUNK - 1) // CHUNK
        ):
            idx = list(range(start, min(n, start + CHUNK)))
            got = list(pool.map(one, [paths[i] for i in idx]))
            ok = [(i, g) for i, g in zip(idx, got, strict=True) if not isinstance(g, EdgeVCFError)]
            for i, g in zip(idx, got, strict=True):
                verdicts[i] = g if isinstance(g, EdgeVCFError) else g[1]
            if ok:
                x = np.concatenate([g[0] for _, g in ok])
                z = pred.logits(x)
                for (i, _), v in zip(ok, z, strict=True):
                    logits[i] = float(v)
    return logits, verdicts


def score_site(
    bundle: str | os.PathLike[str],
    manifest: Any,
    *,
    baseline: str | os.PathLike[str] | None = None,
    backend: str = "auto",
    trust: Any = None,
    institution_salt: str | None = None,
) -> SiteFilms:
    """Score every film of ``manifest`` with ``bundle`` (and ``baseline``), reading each film's
    subgroup levels from its header or the manifest's columns."""
    from edgevcf.runtime import Predictor

    studies = list(manifest.studies)
    if not studies:
        raise DataError("the site manifest lists no films")
    paths = [str(s.resolve(manifest.root)) for s in studies]
    pred = Predictor.from_bundle(bundle, backend=backend, trust=trust)
    pred.warm()
    logits, verdicts = _examine_all(pred, paths, "score site films")
    status, reasons, stages, gate = [], [], [], np.full(len(paths), np.nan)
    for i, v in enumerate(verdicts):
        if isinstance(v, EdgeVCFError):
            status.append("refused")
            reasons.append(v.message)
            stages.append("read")
        else:
            status.append("ok" if v.assessable else "not_assessable")
            reasons.append(v.reason)
            stages.append(v.stage)
            if v.score is not None:
                gate[i] = v.score
    films = SiteFilms(
        paths=paths,
        patients=[s.patient_id for s in studies],
        labels=np.array([int(s.label) for s in studies], dtype=np.int64),
        splits=[s.split or "" for s in studies],
        levels=[
            subgroups.levels_for(p, s.extra, institution_salt=institution_salt)
            for p, s in zip(paths, studies, strict=True)
        ],
        status=np.array(status),
        reasons=reasons,
        logits=logits,
        gate_scores=gate,
        stages=stages,
    )
    if baseline is not None:
        films.base_logits, films.base_name, films.base_threshold = _baseline(
            Path(baseline), paths, films.readable, backend
        )
    return films


def _baseline(
    path: Path, paths: list[str], readable: np.ndarray, backend: str
) -> tuple[np.ndarray, str, float]:
    """The FP32 baseline's logits on the same films: a bundle (its engine), or any reference
    ``import-model`` accepts (its own runtime), as ``bench --baseline`` takes them."""
    if path.is_dir():
        from edgevcf.runtime import Predictor

        pred = Predictor.from_bundle(path, backend=backend)
        logits, _ = _examine_all(pred, paths, "score baseline")
        return logits, f"bundle {path.name}", pred.threshold
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
