"""Calibration sets: which images set the quantisation ranges, chosen so they cannot leak.

Post-training quantisation looks at activations of real images to choose int8 ranges. The
images must come from the training split (never the split an accuracy claim is made on), be
stratified by label (ranges seen only on normals under-range fracture features), be seeded
(re-exporting gives the same ranges), and be recorded (their fingerprint goes into the bundle).
Peers fall back to random tensors or "default data" silently when a calibration set is missing
or too small; here that is an error.

Recipes are data in ``calibration/*.toml`` (shipped as ``edgevcf.recipes_data``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevcf.data.manifest import SPLITS, Manifest, Study
from edgevcf.errors import CalibrationError, ConfigError


@dataclass(frozen=True)
class CalibrationRecipe:
    """How a calibration set is drawn."""

    name: str = "default"
    samples: int = 300
    split: str = "train"
    stratify: bool = True
    seed: int = 0
    min_samples: int = 32

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (recorded in bundles)."""
        return asdict(self)


@dataclass(frozen=True)
class CalibrationSet:
    """The chosen studies and their fingerprint."""

    recipe: CalibrationRecipe
    studies: tuple[Study, ...]
    fingerprint: str

    def manifest(self, root: str | Path) -> Manifest:
        """The chosen studies as a manifest (to load and preprocess them)."""
        return Manifest(self.studies, root)

    def summary(self) -> dict[str, Any]:
        """What a bundle records: recipe, counts by label, fingerprint (no patient ids)."""
        pos = sum(s.label for s in self.studies)
        return {
            "recipe": self.recipe.to_dict(),
            "n": len(self.studies),
            "n_pos": pos,
            "n_neg": len(self.studies) - pos,
            "patients": len({s.patient_id for s in self.studies}),
            "fingerprint": self.fingerprint,
        }


def _recipe_files() -> dict[str, Path]:
    from edgevcf.profiles import bundled_files

    return {f.stem: f for f in bundled_files("edgevcf.recipes_data", "calibration")}


def load_recipe(name_or_path: str) -> CalibrationRecipe:
    """A recipe by name (``calibration/NAME.toml``) or TOML path; strict keys."""
    path = Path(name_or_path)
    if not (name_or_path.endswith(".toml") or path.is_file()):
        files = _recipe_files()
        if name_or_path not in files:
            raise ConfigError(
                f"unknown calibration recipe {name_or_path!r}",
                hint=f"choose one of: {', '.join(sorted(files))} (or give a RECIPE.toml path)",
            )
        path = files[name_or_path]
    from edgevcf.tomlconf import read_toml

    data = read_toml(path, "calibration recipe")
    valid = [f for f in CalibrationRecipe.__dataclass_fields__ if f != "name"]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)}", hint=f"valid keys: {', '.join(valid)}"
        )
    types = {"samples": int, "split": str, "stratify": bool, "seed": int, "min_samples": int}
    for k, v in data.items():
        if not isinstance(v, types[k]) or (types[k] is int and isinstance(v, bool)):
            raise ConfigError(f"{path}: {k} must be {types[k].__name__}, got {v!r}")
    recipe = CalibrationRecipe(name=path.stem, **data)
    if recipe.split not in SPLITS:
        raise ConfigError(f"{path}: split must be one of {', '.join(SPLITS)}")
    if recipe.min_samples < 1 or recipe.samples < recipe.min_samples:
        raise ConfigError(f"{path}: need 1 <= min_samples <= samples")
    return recipe


def fingerprint_studies(studies: tuple[Study, ...] | list[Study]) -> str:
    """SHA-256 of the chosen list (path, patient, label), order-independent."""
    digest = hashlib.sha256(b"edgevcf-calibration-v1\n")
    for s in sorted(studies, key=lambda s: (s.path, s.patient_id)):
        digest.update(json.dumps([s.path, s.patient_id, s.label]).encode() + b"\n")
    return digest.hexdigest()


def select(
    manifest: Manifest,
    recipe: CalibrationRecipe,
    *,
    samples: int | None = None,
    evaluated: tuple[str, ...] = ("val", "test"),
) -> CalibrationSet:
    """Draw the calibration set of ``recipe`` from ``manifest``.

    Args:
        manifest: The data manifest with splits.
        recipe: The recipe.
        samples: Overrides the recipe's count (a profile's ``samples``); 0/None keeps it.
        evaluated: Splits accuracy is measured on; the calibration set may share no patient with
            them.

    Raises:
        CalibrationError: the recipe's split is evaluated, the set would share a patient with an
            evaluated split, or there are fewer usable images than ``min_samples``.
    """
    n_want = samples or recipe.samples
    if recipe.split in evaluated:
        raise CalibrationError(
            f"calibration split {recipe.split!r} is also evaluated",
            hint="calibrate on the training split; accuracy is confirmed on val/test",
        )
    pool = [s for s in manifest.studies if s.split == recipe.split]
    held_out = {s.patient_id for s in manifest.studies if s.split in evaluated}
    shared = sorted({s.patient_id for s in pool} & held_out)
    if shared:
        raise CalibrationError(
            f"calibration split {recipe.split!r} shares {len(shared)} patient(s) with the "
            f"evaluated split(s) {', '.join(evaluated)}",
            hint="re-split by patient (`edgevcf data split`) so no patient is in two splits",
        )
    if len(pool) < recipe.min_samples:
        raise CalibrationError(
            f"only {len(pool)} image(s) in split {recipe.split!r}; the calibration recipe "
            f"{recipe.name!r} needs at least {recipe.min_samples}",
            hint="add training images or use a recipe with a smaller min_samples; edgevcf never "
            "calibrates on random or default data",
        )
    rng = np.random.default_rng(recipe.seed)
    n = min(n_want, len(pool))
    if recipe.stratify:
        groups = [[s for s in pool if s.label == c] for c in (0, 1)]
        # Proportional allocation with at least one of each class when both exist.
        n_pos = round(n * len(groups[1]) / len(pool))
        if groups[1] and groups[0]:
            n_pos = min(max(n_pos, 1), n - 1)
        counts = [n - n_pos, n_pos]
        chosen: list[Study] = []
        for group, k in zip(groups, counts, strict=True):
            idx = rng.permutation(len(group))[:k]
            chosen += [group[i] for i in sorted(idx)]
    else:
        idx = rng.permutation(len(pool))[:n]
        chosen = [pool[i] for i in sorted(idx)]
    if len(chosen) < recipe.min_samples:
        raise CalibrationError(
            f"calibration set has {len(chosen)} images, fewer than {recipe.min_samples}"
        )
    chosen_t = tuple(chosen)
    return CalibrationSet(recipe, chosen_t, fingerprint_studies(chosen_t))


def patient_hash(patient_id: str, salt: str) -> str:
    """Salted SHA-256 (16 hex) of a patient id: lets a later step check patient overlap without
    the bundle or a report carrying the id itself."""
    return hashlib.sha256(f"{salt}:{patient_id}".encode()).hexdigest()[:16]


def patient_record(
    calibration: list[str], tuning: list[str], salt: str | None = None
) -> dict[str, Any]:
    """Salted hashes of the patients that calibrated and tuned a bundle (no ids, no counts of
    rare subgroups), so ``bench`` can refuse an evaluation split that shares a patient."""
    import secrets

    salt = salt or secrets.token_hex(16)
    return {
        "salt": salt,
        "calibration": sorted({patient_hash(p, salt) for p in calibration}),
        "tuning": sorted({patient_hash(p, salt) for p in tuning}),
    }


def overlap_with_record(patients: list[str], record: dict[str, Any]) -> dict[str, int]:
    """How many of ``patients`` calibrated or tuned the bundle with this record."""
    hashed = {patient_hash(p, record["salt"]) for p in patients}
    return {k: len(hashed & set(record.get(k, []))) for k in ("calibration", "tuning")}


def check_disjoint(calib: CalibrationSet, evaluated: Manifest, what: str = "evaluated") -> None:
    """Refuse an evaluation set sharing a patient with the calibration set."""
    shared = {s.patient_id for s in calib.studies} & {s.patient_id for s in evaluated.studies}
    if shared:
        raise CalibrationError(
            f"the {what} data shares {len(shared)} patient(s) with the calibration set",
            hint="evaluate on patients the calibration never saw",
        )
