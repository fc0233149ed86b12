"""Calibration sets: stratified, seeded, from the training split, never sharing a patient."""

from __future__ import annotations

import dataclasses

import pytest

from edgevcf.calibration import CalibrationRecipe, check_disjoint, select
from edgevcf.data.manifest import Manifest, Study
from edgevcf.errors import CalibrationError


def _manifest(n_train: int = 100, pos_every: int = 4) -> Manifest:
    studies = [
        Study(f"tr{i}.png", f"p{i}", int(i % pos_every == 0), "train") for i in range(n_train)
    ]
    studies += [Study(f"va{i}.png", f"v{i}", i % 2, "val") for i in range(10)]
    studies += [Study(f"te{i}.png", f"t{i}", i % 2, "test") for i in range(10)]
    return Manifest(studies, ".")


def test_stratified_seeded_and_from_train() -> None:
    m = _manifest()
    recipe = CalibrationRecipe(samples=40, min_samples=8)
    a, b = select(m, recipe), select(m, recipe)
    assert a.fingerprint == b.fingerprint and a.studies == b.studies
    assert all(s.split == "train" for s in a.studies)
    assert len(a.studies) == 40
    assert sum(s.label for s in a.studies) == 10  # 25 % positives, as in the pool
    c = select(m, dataclasses.replace(recipe, seed=1))
    assert c.fingerprint != a.fingerprint
    s = a.summary()
    assert s["n_pos"] == 10 and s["n_neg"] == 30 and "patient" not in str(s["recipe"])


def test_rare_class_still_represented() -> None:
    m = _manifest(pos_every=90)  # 2 positives in 100
    cal = select(m, CalibrationRecipe(samples=10, min_samples=8))
    assert sum(s.label for s in cal.studies) >= 1


def test_too_few_images_refused() -> None:
    with pytest.raises(CalibrationError) as err:
        select(_manifest(n_train=5), CalibrationRecipe(samples=300, min_samples=32))
    assert "32" in err.value.message and "random" in (err.value.hint or "")


def test_patient_overlap_refused() -> None:
    m = _manifest()
    leaky = Manifest([*m.studies, Study("leak.png", "p3", 1, "test")], ".")
    with pytest.raises(CalibrationError) as err:
        select(leaky, CalibrationRecipe(samples=40, min_samples=8))
    assert "shares 1 patient" in err.value.message


def test_calibrating_on_an_evaluated_split_refused() -> None:
    with pytest.raises(CalibrationError):
        select(_manifest(), CalibrationRecipe(split="test", samples=5, min_samples=1))


def test_check_disjoint() -> None:
    m = _manifest()
    cal = select(m, CalibrationRecipe(samples=40, min_samples=8))
    check_disjoint(cal, m.by_split("test"))
    with pytest.raises(CalibrationError):
        check_disjoint(cal, Manifest([cal.studies[0]], "."))
