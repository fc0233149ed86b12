"""Re-threshold a bundle for a site — never silently, never by editing it.

The site's films are split by patient into a tuning part and a confirmation part (or the
manifest's own ``tune``/``confirm`` or ``val``/``test`` splits are used). The threshold is chosen
on the tuning part as training chooses one (strictly between two scores), confirmed on the other
part with CIs, and written into a **new bundle**: the model files byte for byte the parent's, a
new manifest (the site threshold, a new model id, the lineage: parent id and sha256, the site
data's fingerprint, the protocol, the confirmation figures), golden vectors chosen again for the
new threshold, signed with the site's key when given. The parent is never touched. A threshold
outside the envelope the parent bundle allows (recorded at export, or given on the command line
for older bundles and recorded as such) is refused.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevcf import metrics
from edgevcf.bundle import GOLDEN, MANIFEST, Bundle, Golden, staging, write_manifest
from edgevcf.errors import ConfigError, DataError
from edgevcf.hashing import sha256_file
from edgevcf.site.score import SiteFilms

#: Manifest-split pairs taken as (tuning, confirmation) when the site manifest has them.
SPLIT_PAIRS = (("tune", "confirm"), ("val", "test"))
GOLDEN_COUNT = 8
#: Golden inputs lie at least this far (logits) from the new threshold (as export's rule).
GOLDEN_MIN_MARGIN = 1.0


@dataclass(frozen=True)
class Objective:
    """How the site threshold is chosen: ``sensitivity=0.9``, ``specificity=0.9`` or
    ``youden``."""

    kind: str
    target: float | None = None

    @classmethod
    def parse(cls, text: str) -> Objective:
        """From the command line's ``--rethreshold`` value."""
        t = text.strip().lower()
        if t == "youden":
            return cls("youden")
        kind, _, value = t.partition("=")
        if kind in ("sensitivity", "specificity"):
            try:
                v = float(value)
            except ValueError:
                v = math.nan
            if 0 < v <= 1:
                return cls(kind, v)
        raise ConfigError(
            f"--rethreshold {text!r} is not understood",
            hint="use sensitivity=0.90, specificity=0.90 or youden",
        )

    def describe(self) -> str:
        """E.g. ``sensitivity 0.90``."""
        return "Youden's J" if self.kind == "youden" else f"{self.kind} {self.target:.2f}"

    def choose(self, y: np.ndarray, p: np.ndarray) -> float:
        """The threshold on these tuning films."""
        if self.kind == "youden":
            return metrics.youden_threshold(y, p)
        assert self.target is not None
        if self.kind == "sensitivity":
            return metrics.threshold_for_sensitivity(y, p, self.target)
        return metrics.threshold_for_specificity(y, p, self.target)


def split_parts(films: SiteFilms, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(tuning mask, confirmation mask, how): the manifest's pair of splits if it has one,
    else half of the patients each, drawn with ``seed`` and stratified by patient label."""
    splits = np.array(films.splits)
    present = set(splits.tolist())
    for tune, confirm in SPLIT_PAIRS:
        if {tune, confirm} <= present:
            return splits == tune, splits == confirm, f"the manifest's {tune}/{confirm} splits"
    label_of: dict[str, int] = {}
    for pid, y in zip(films.patients, films.labels.tolist(), strict=True):
        label_of[pid] = max(label_of.get(pid, 0), int(y))
    rng = np.random.default_rng(seed)
    tuning: set[str] = set()
    for lab in (0, 1):
        pids = sorted(p for p, v in label_of.items() if v == lab)
        rng.shuffle(pids)
        tuning.update(pids[: (len(pids) + 1) // 2])
    mask = np.array([p in tuning for p in films.patients])
    return mask, ~mask, f"patients halved at random (seed {seed}), stratified by label"


def envelope_of(bundle: Bundle, given: tuple[float, float] | None) -> dict[str, Any]:
    """The range the parent allows the threshold in: its export record, else ``given`` (recorded
    as given on the command line), else a ConfigError that says how to give it."""
    if given is not None:
        low, high = given
        if not 0 <= low < high <= 1:
            raise ConfigError(f"--envelope {low}:{high} must satisfy 0 <= LOW < HIGH <= 1")
        return {
            "low": low,
            "high": high,
            "source": "command line",
            "rule": "given on the command line (the parent bundle records none)",
        }
    recorded = bundle.manifest["threshold"].get("envelope")
    if recorded:
        return dict(recorded)
    raise ConfigError(
        f"{bundle.path.name} records no threshold envelope (it was exported before edgevcf "
        "recorded one), so no re-threshold can be checked against a pre-specified range",
        hint="re-export it, or state the range you validated: --envelope LOW:HIGH (probabilities)",
    )


def check_envelope(threshold: float, envelope: dict[str, Any]) -> None:
    """Refuse a threshold outside the pre-specified range."""
    if not envelope["low"] <= threshold <= envelope["high"]:
        raise DataError(
            f"the site threshold {threshold:.4f} lies outside the range the bundle allows "
            f"[{envelope['low']:.4f}, {envelope['high']:.4f}] ({envelope['rule']})",
            hint="this shift needs more than a new threshold: validate and export the model again",
        )


def _golden(
    parent: Bundle,
    films: SiteFilms,
    tune: np.ndarray,
    threshold: float,
    backend: str,
) -> tuple[Golden, str]:
    """Golden vectors for the new threshold: the parent's inputs (with the outputs the
    validated runtime computed at export) and the site's tuning films, the first at least
    :data:`GOLDEN_MIN_MARGIN` logits from the new threshold, half of each class, then the
    furthest of the rest. Site films' expected outputs are what this machine's engines compute
    for every artefact the parent has golden outputs for (the scores the validation judged);
    their FP32 column is the baseline's logit where one was given, else the deployed one."""
    from edgevcf.backends import runnable
    from edgevcf.runtime import Predictor

    old = parent.golden()
    names = list(old.expected)
    arts = [parent.artifact(n) for n in names]
    inputs = [old.inputs]
    fp32 = [old.fp32.reshape(-1)]
    expected = {n: [old.expected[n].reshape(-1)] for n in names}
    fp32_source = "export"
    if all(runnable(a.runtime) for a in arts):
        idx = np.flatnonzero(tune & films.scored)
        t_logit = math.log(threshold / (1 - threshold))
        margin = np.abs(films.logits[idx] - t_logit)
        idx = idx[np.argsort(-margin, kind="stable")][: 4 * GOLDEN_COUNT]
        pred = Predictor(parent, parent.artifact(), threads=None)
        x = np.concatenate([pred.examine(films.paths[i])[0] for i in idx]) if idx.size else None
        if x is not None:
            inputs.append(x)
            for n, a in zip(names, arts, strict=True):
                expected[n].append(Predictor(parent, a).logits(x).reshape(-1))
            base = films.base_logits
            fp32.append(base[idx] if base is not None else films.logits[idx])
            fp32_source = "export; site films: " + (
                "baseline" if base is not None else "deployed artefact (no baseline given)"
            )
    x_all = np.concatenate(inputs)
    t_logit = math.log(threshold / (1 - threshold))
    exp_all = {n: np.concatenate(v) for n, v in expected.items()}
    margin = np.min([np.abs(v - t_logit) for v in exp_all.values()], axis=0)
    calls = exp_all[names[0]] >= t_logit
    clear = margin >= GOLDEN_MIN_MARGIN
    order = np.concatenate(
        [np.flatnonzero(clear), np.flatnonzero(~clear)[np.argsort(-margin[~clear], kind="stable")]]
    )
    pos = [i for i in order if calls[i]][: GOLDEN_COUNT // 2]
    neg = [i for i in order if not calls[i]][: GOLDEN_COUNT - len(pos)]
    pick = np.sort(np.array(pos + neg, dtype=np.int64))
    golden = Golden(
        x_all[pick].astype(np.float32),
        np.concatenate(fp32)[pick].astype(np.float32),
        {n: v[pick].astype(np.float32).reshape(-1, 1) for n, v in exp_all.items()},
    )
    return golden, fp32_source


def write_site_bundle(
    parent: Bundle,
    out: str | os.PathLike[str],
    *,
    threshold: float,
    method: str,
    lineage: dict[str, Any],
    films: SiteFilms,
    tune: np.ndarray,
    backend: str = "auto",
    gate: tuple[Any, dict[str, Any]] | None = None,
    sign_key: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> Bundle:
    """The new bundle: the parent's model files byte for byte, a new manifest and golden
    vectors, signed with ``sign_key`` when given. The parent is read, never written."""
    if Path(out).resolve() == parent.path.resolve():
        raise ConfigError(
            "the site bundle must not replace its parent", hint="choose another --out"
        )
    golden, fp32_source = _golden(parent, films, tune, threshold, backend)
    with staging(out, force=force) as root:
        for name in parent.manifest["files"]:
            if name == GOLDEN:
                continue
            dest = root / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(parent.path / name, dest)
        golden.save(root / GOLDEN)
        if gate is not None:  # the site's re-fitted quality gate replaces the parent's
            from edgevcf.quality import GATE_FILE

            gate[0].save(root / GATE_FILE)
        manifest = {
            k: v
            for k, v in parent.manifest.items()
            if k not in ("schema", "schema_version", "files", "checksum")
        }
        manifest["threshold"] = {
            "value": threshold,
            "method": method,
            "envelope": lineage["envelope"],
            "parent_value": parent.threshold,
        }
        manifest["golden"] = {
            **parent.manifest["golden"],
            "fp32_source": fp32_source,
            "chosen_for": "site threshold",
        }
        manifest["site_calibration"] = lineage
        if gate is not None:
            manifest["quality_gate"] = gate[1]
        write_manifest(root, manifest)
        if sign_key is not None:
            from edgevcf.signing import sign_bundle

            sign_bundle(root, sign_key)
    return Bundle.load(out)


def parent_record(parent: Bundle) -> dict[str, Any]:
    """How the site bundle names its parent: id, manifest sha256, signer, target."""
    return {
        "model_id": parent.id,
        "manifest_sha256": sha256_file(parent.path / MANIFEST),
        "path": parent.path.name,
        "signer_key_id": parent.signer_key_id,
        "target": parent.manifest["target"],
        "precision": parent.manifest["precision"],
        "threshold": parent.threshold,
    }
