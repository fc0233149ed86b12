"""Fitting the input quality gate (:mod:`edgevcf.quality`), per bundle, at export time.

Separate from :mod:`edgevcf.quality` because a cart only loads and applies a fitted gate: the
fit learns "in scope" against generated out-of-scope images (:mod:`edgevcf.data.synth.oos`,
which needs scipy), and a cart has neither. Only the workstation's exporter and the tests and
benchmarks import this module; the cart never does.

Each learned threshold is set on the bundle's tuning split so that about :data:`TARGET_REFUSAL`
of in-scope images are refused there, never below a normal tolerance bound (a threshold set on a
handful of images must leave room for what they did not show).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import math
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf.errors import ConfigError
from edgevcf.quality import FEATURE_VERSION, GATE_FILE, QualityGate, feature_matrix, features

if TYPE_CHECKING:
    from edgevcf.data.preprocess import Preprocess

#: Fraction of in-scope tuning images each learned threshold may refuse.
TARGET_REFUSAL = 0.01
#: Seeds of the generated out-of-scope sets a bundle's gate is fitted on and checked on.
OOS_FIT_SEED = 70_001
OOS_CHECK_SEED = 70_002
OOS_FIT_PER_FAMILY = 24
OOS_CHECK_PER_FAMILY = 8


# ------------------------------------------------------------------ numerics (numpy)
def _logistic_fit(
    x: np.ndarray, y: np.ndarray, l2: float, iterations: int = 50
) -> tuple[np.ndarray, float]:
    """L2-penalised, class-balanced logistic regression by Newton's method (IRLS)."""
    n, d = x.shape
    sw = np.where(y == 1, 0.5 / max(1, int(y.sum())), 0.5 / max(1, int(n - y.sum()))) * n
    a = np.hstack([x, np.ones((n, 1))])
    beta = np.zeros(d + 1)
    pen = np.full(d + 1, l2)
    pen[-1] = 0.0
    for _ in range(iterations):
        z = a @ beta
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
        grad = a.T @ (sw * (p - y)) + pen * beta
        hess = (a * (sw * p * (1 - p))[:, None]).T @ a + np.diag(pen + 1e-9)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if float(np.abs(step).max()) < 1e-7:
            break
    return beta[:-1], float(beta[-1])


def _shrunk_precision(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and inverse of a Ledoit-Wolf-shrunk covariance (stable with few images)."""
    n, d = x.shape
    mu = x.mean(axis=0)
    xc = x - mu
    s = xc.T @ xc / n
    target = float(np.trace(s)) / d
    # Ledoit & Wolf (2004): shrinkage towards target * I that minimises the expected error;
    # sum_k ||x_k x_k' - S||^2 expanded so no (n, d, d) array is formed.
    sq = np.sum(xc * xc, axis=1)
    xsx = np.einsum("ij,jk,ik->i", xc, s, xc)
    beta2 = float(np.sum(sq * sq) - 2 * np.sum(xsx) + n * np.sum(s * s)) / n**2
    delta2 = float(np.sum((s - target * np.eye(d)) ** 2))
    alpha = min(1.0, max(0.05, beta2 / delta2)) if delta2 > 0 else 1.0
    cov = (1 - alpha) * s + alpha * target * np.eye(d)
    return mu, np.linalg.inv(cov)


def tolerance_factor(n: int, target: float = TARGET_REFUSAL, confidence: float = 0.9) -> float:
    """k such that mean + k * sd of ``n`` normal samples exceeds the (1 - target) quantile with
    probability ``confidence`` (one-sided normal tolerance bound, Natrella's approximation).

    With 9 tuning images k is ~3.8 rather than z = 2.33: a threshold set on a handful of images
    must leave room for what they did not show.
    """
    zp = NormalDist().inv_cdf(1.0 - target)
    if n < 3:
        return 2 * zp
    zg = NormalDist().inv_cdf(confidence)
    a = 1.0 - zg * zg / (2.0 * (n - 1))
    b = zp * zp - zg * zg / n
    return (zp + math.sqrt(max(zp * zp - a * b, 0.0))) / a


def tuning_threshold(scores: np.ndarray, target: float = TARGET_REFUSAL) -> float:
    """A threshold refusing about ``target`` of in-scope images, from their ``scores``.

    The empirical quantile, but never below the normal tolerance bound (mean + k * sd,
    :func:`tolerance_factor`): with a few dozen tuning images the quantile is only their maximum
    and would refuse far more than ``target`` of new in-scope images.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        raise ConfigError("no tuning images to set the quality gate's threshold on")
    q = float(np.quantile(s, 1.0 - target, method="higher"))
    sd = float(s.std(ddof=1)) if s.size > 1 else 0.0
    return max(q, float(s.mean()) + tolerance_factor(s.size, target) * sd)


# ------------------------------------------------------------------ the gate
def fit_gate(
    in_scope: np.ndarray,
    out_of_scope: np.ndarray | None,
    tuning: np.ndarray,
    spec: Preprocess,
    *,
    l2: float = 1.0,
    target: float = TARGET_REFUSAL,
    augment: bool = True,
    groups: np.ndarray | None = None,
    out_features: np.ndarray | None = None,
) -> QualityGate:
    """Fit a gate on preprocessed images (``to_unit`` form, (N, S, S)).

    Args:
        in_scope: The bundle's training images (the distribution the model knows).
        out_of_scope: Generated out-of-scope images, same preprocessing.
        tuning: Held-out in-scope images (the tuning split) that set the thresholds.
        spec: The preprocessing all of them went through.
        l2: Ridge penalty on standardised features.
        target: In-scope refusal rate each learned threshold allows on ``tuning``.
        augment: Add mirror images of ``in_scope`` (patients face either way).
        groups: Patient of each ``in_scope`` image (kept in one fold when thresholds
            are set); default: each image its own.
        out_features: :func:`~edgevcf.quality.features` of the out-of-scope images, instead
            of ``out_of_scope`` (they are generated once and reused).
    """
    fo = feature_matrix(np.asarray(out_of_scope)) if out_features is None else out_features
    if len(in_scope) < 8 or len(fo) < 8:
        raise ConfigError(
            f"the quality gate needs >= 8 in-scope and out-of-scope images, got "
            f"{len(in_scope)} and {len(fo)}",
            hint="the training split is too small to learn what is in scope",
        )
    fi = feature_matrix(np.asarray(in_scope))
    grp = np.arange(len(fi)) if groups is None else np.asarray(groups)
    if augment:
        fi = np.vstack([fi, feature_matrix(np.asarray(in_scope)[:, :, ::-1])])
        grp = np.concatenate([grp, grp])
    ft = feature_matrix(np.asarray(tuning))
    return fit_gate_features(fi, fo, ft, spec, l2=l2, target=target, groups=grp)


def fit_gate_features(
    fi: np.ndarray,
    fo: np.ndarray,
    ft: np.ndarray,
    spec: Preprocess,
    *,
    l2: float = 1.0,
    target: float = TARGET_REFUSAL,
    groups: np.ndarray | None = None,
    folds: int = 5,
) -> QualityGate:
    """:func:`fit_gate` on precomputed :func:`~edgevcf.quality.features` (in scope, out of
    scope, tuning).

    Each threshold is the higher of two tolerance bounds (:func:`tuning_threshold`): one on
    the tuning images' scores, one on those pooled with out-of-fold scores of the in-scope
    images (``folds``-fold; rows of one group — a patient, an image and its mirror — never
    split), because a small tuning split alone gives an unstable threshold.
    """
    core = _fit_core(fi, fo, spec, l2)
    s_t, d_t = core.scores(ft)
    pool_s, pool_d = [s_t], [d_t]
    grp = np.arange(len(fi)) if groups is None else np.asarray(groups)
    fold = np.unique(grp, return_inverse=True)[1].reshape(-1) % folds
    if folds > 1 and len(np.unique(grp)) >= 2 * folds:
        for k in range(folds):
            sub = _fit_core(fi[fold != k], fo, spec, l2)
            s_k, d_k = sub.scores(fi[fold == k])
            pool_s.append(s_k)
            pool_d.append(d_k)
    s_all, d_all = np.concatenate(pool_s), np.concatenate(pool_d)
    log_d = max(tuning_threshold(np.log(d_t), target), tuning_threshold(np.log(d_all), target))
    gate = dataclasses.replace(
        core,
        threshold=max(tuning_threshold(s_t, target), tuning_threshold(s_all, target)),
        distance_threshold=float(np.exp(log_d)),
    )
    s_o, d_o = gate.scores(fo)
    info = {
        "n_in_scope": len(fi),
        "n_out_of_scope": len(fo),
        "n_tuning": len(ft),
        "n_threshold_pool": len(s_all),
        "target_refusal": target,
        "l2": l2,
        "tuning_refused": float(np.mean(gate.refuse(s_t, d_t))),
        "train_oos_scored": float(np.mean(~gate.refuse(s_o, d_o))),
    }
    return dataclasses.replace(gate, info=info)


def _fit_core(fi: np.ndarray, fo: np.ndarray, spec: Preprocess, l2: float) -> QualityGate:
    """The logistic check and the distance on standardised features; thresholds still 0."""
    x = np.vstack([fi, fo])
    y = np.concatenate([np.zeros(len(fi)), np.ones(len(fo))])
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    coef, intercept = _logistic_fit((x - mean) / scale, y, l2)
    center, precision = _shrunk_precision((fi - mean) / scale)
    return QualityGate(
        spec=spec.to_dict(),
        mean=mean,
        scale=scale,
        coef=coef,
        intercept=intercept,
        threshold=0.0,
        center=center,
        precision=precision,
        distance_threshold=0.0,
    )


# ------------------------------------------------------------------ per bundle, at export
@functools.lru_cache(maxsize=8)
def oos_features(
    spec: Preprocess, seed: int, per_family: int
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Features of generated out-of-scope images under ``spec``, with their families.

    Images are drawn a little larger than the network input (as real films are) and cached
    per process: exporting several targets from one checkpoint generates them once.
    Needs scipy (the generator).
    """
    from edgevcf.data.synth.oos import FAMILIES, generate_oos

    size = spec.input_size
    sizes = (max(256, 3 * size // 2), max(384, 2 * size))
    rows, fams = [], []
    for fam in FAMILIES:
        for i in range(per_family):
            rows.append(features(spec.to_unit(generate_oos(fam, seed, i, sizes))))
            fams.append(fam)
    x = np.stack(rows)
    x.flags.writeable = False
    return x, tuple(fams)


def fit_for_bundle(
    train_units: np.ndarray,
    patients: list[str],
    tuning_units: np.ndarray,
    spec: Preprocess,
) -> tuple[QualityGate, dict[str, Any]]:
    """Fit a bundle's gate (its training images vs generated out-of-scope images; thresholds on
    the tuning images) and check it on a second generated set it never saw.

    The fit is deterministic; exporting one checkpoint to several targets in one process fits
    it once (keyed by the images, patients and preprocessing).

    Returns:
        The gate and what the manifest records about it (both fresh copies).
    """
    train = np.ascontiguousarray(train_units, dtype=np.float32)
    tuning = np.ascontiguousarray(tuning_units, dtype=np.float32)
    h = hashlib.sha256(spec.to_json().encode())
    for part in (train.shape, tuning.shape, "\n".join(patients)):
        h.update(str(part).encode())
    h.update(train.tobytes())
    h.update(tuning.tobytes())
    key = h.hexdigest()
    if key not in _FITTED:
        _FITTED[key] = _fit_for_bundle(train, patients, tuning, spec)
        while len(_FITTED) > 4:
            _FITTED.pop(next(iter(_FITTED)))
    gate, record = _FITTED[key]
    return copy.deepcopy(gate), copy.deepcopy(record)


_FITTED: dict[str, tuple[QualityGate, dict[str, Any]]] = {}


def _fit_for_bundle(
    train: np.ndarray, patients: list[str], tuning: np.ndarray, spec: Preprocess
) -> tuple[QualityGate, dict[str, Any]]:
    fo, _ = oos_features(spec, OOS_FIT_SEED, OOS_FIT_PER_FAMILY)
    gate = fit_gate(
        train,
        None,
        tuning,
        spec,
        groups=np.unique(np.asarray(patients), return_inverse=True)[1],
        out_features=fo,
    )
    fc, fams = oos_features(spec, OOS_CHECK_SEED, OOS_CHECK_PER_FAMILY)
    scored = ~gate.refuse(*gate.scores(fc))
    fam_arr = np.asarray(fams)
    by_family = {f: float(np.mean(scored[fam_arr == f])) for f in dict.fromkeys(fams)}
    record = {
        "file": GATE_FILE,
        "feature_version": FEATURE_VERSION,
        "method": "logistic regression + Mahalanobis distance on image features",
        "threshold": gate.threshold,
        "distance_threshold": gate.distance_threshold,
        "target_refusal": gate.info["target_refusal"],
        "tuning_refused": gate.info["tuning_refused"],
        "n_in_scope": gate.info["n_in_scope"],
        "n_out_of_scope": gate.info["n_out_of_scope"],
        "n_tuning": gate.info["n_tuning"],
        "oos_seeds": {"fit": OOS_FIT_SEED, "check": OOS_CHECK_SEED},
        "check_oos_scored": float(np.mean(scored)),
        "check_oos_scored_by_family": by_family,
        "check_n": len(fc),
    }
    return gate, record


__all__ = [
    "OOS_CHECK_PER_FAMILY",
    "OOS_CHECK_SEED",
    "OOS_FIT_PER_FAMILY",
    "OOS_FIT_SEED",
    "TARGET_REFUSAL",
    "fit_for_bundle",
    "fit_gate",
    "fit_gate_features",
    "oos_features",
    "tolerance_factor",
    "tuning_threshold",
]
