"""Golden vectors are chosen clear of the threshold: `verify` elsewhere is no coin toss."""

from __future__ import annotations

import numpy as np

from edgevcf.export import GOLDEN_MIN_MARGIN, golden_indices, logit_margin


def test_borderline_cases_are_left_out_when_clear_ones_exist() -> None:
    labels = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0])
    margin = np.array([0.01, 0.2, 3.0, 2.0, 0.5, 5.0, 1.5, 1.2, 4.0, 0.0, 2.5, 1.0])
    idx = golden_indices(labels, margin, count=6)
    assert list(idx) == [2, 3, 5, 6, 7, 8]  # first clear ones per class, in order
    assert (margin[idx] >= GOLDEN_MIN_MARGIN).all()


def test_too_few_clear_cases_take_the_furthest() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0])
    margin = np.array([0.1, 0.3, 0.2, 0.05, 2.0, 0.4])
    idx = golden_indices(labels, margin, count=4)
    assert list(idx) == [1, 2, 4, 5]


def test_one_class_fills_the_count() -> None:
    labels = np.zeros(10, dtype=int)
    idx = golden_indices(labels, np.linspace(0, 3, 10), count=8)
    assert len(idx) == 8


def test_margin_is_in_logits() -> None:
    m = logit_margin(np.array([0.5, 0.731058578630, 0.0, 1.0]), 0.5)
    assert np.allclose(m[:2], [0.0, 1.0])
    assert np.isfinite(m).all() and (m[2:] > 20).all()
