"""Fuzzed readers (issue 7, section 2): mutated real DICOM and PNG files never crash or hang
``read_image``, and nothing it refuses gets a score.

CI runs a short campaign (300 inputs per format, each in a watched worker process) and a
hypothesis-driven one in process; the full >= 10,000 per format is ``benchmarks/fuzz_readers.py``
(results in benchmarks/results/) and the ``slow`` test below.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevcf.testing.fuzz_corpus import FORMATS, Seed, build_seeds
from edgevcf.testing.fuzz_harness import (
    FormatResult,
    check_one,
    run_format,
    score_check,
    sweep_pydicom,
)
from edgevcf.testing.fuzz_mutators import iter_inputs, mutate

SHORT = 300


@pytest.fixture(scope="module")
def campaign(fuzz_work: Path) -> dict[str, FormatResult]:
    """The short campaign, per format (shared by the tests of this module)."""
    return {fmt: run_format(fmt, SHORT, seed=0, work=fuzz_work) for fmt in FORMATS}


def _failures(res: FormatResult) -> list[str]:
    return [
        f"input {f['i']} ({f.get('seed_name')}; {'; '.join(f.get('ops', []))}): "
        f"{f['outcome']}: {f.get('error')} at {f.get('where')}"
        for f in res.failures
    ]


@pytest.mark.parametrize("fmt", ["dicom", "png"])
def test_short_campaign_has_no_crash_and_no_hang(
    campaign: dict[str, FormatResult], fmt: str
) -> None:
    res = campaign[fmt]
    assert res.n == SHORT
    assert not _failures(res), "\n".join(_failures(res))
    assert res.counts["unhandled"] == res.counts["hang"] == res.counts["died"] == 0
    # the mutations reach both sides of the reader's decisions
    assert res.counts["ok"] > 0 and res.counts["refused"] > 0
    assert res.counts["ok"] + res.counts["refused"] == SHORT


@pytest.mark.requires_onnxruntime
@pytest.mark.parametrize("fmt", ["dicom", "png"])
def test_refused_inputs_get_no_score(
    campaign: dict[str, FormatResult], fuzz_work: Path, export_bundle: Any, fmt: str
) -> None:
    """Every refused input of the campaign, mixed with readable ones, through predict_many."""
    _, bundle = export_bundle("onnx-cpu")
    res = campaign[fmt]
    scoring = score_check(
        res, bundle.path, seed=0, work=fuzz_work, refused_sample=SHORT, ok_sample=40
    )
    assert scoring["refused_checked"] == res.counts["refused"]
    assert scoring["refused_scored"] == 0, scoring["problems"]
    assert not scoring["problems"]
    assert scoring["ok_checked"] > 0


def test_every_pydicom_test_file_is_read_or_refused(fuzz_work: Path) -> None:
    """All files pydicom ships (colour, multi-frame, big, broken ones too), unmutated."""
    sweep = sweep_pydicom(work=fuzz_work)
    assert sweep["files"] > 200
    assert not sweep["failures"], sweep["failures"]
    assert sweep["counts"]["ok"] > 0 and sweep["counts"]["refused"] > 0


def test_inputs_are_reproducible(fuzz_work: Path) -> None:
    """Input i of a format is a pure function of (seed, format, i): findings replay exactly."""
    a = list(iter_inputs("dicom", 20, 7, fuzz_work))
    b = list(iter_inputs("dicom", 20, 7, fuzz_work))
    c = list(iter_inputs("dicom", 20, 8, fuzz_work))
    assert a == b
    assert [x[1] for x in a] != [x[1] for x in c]


@pytest.mark.parametrize("fmt", ["dicom", "png"])
def test_hypothesis_driven_mutations(
    fuzz_work: Path, tmp_path_factory: pytest.TempPathFactory, fmt: str
) -> None:
    """The same mutators driven by hypothesis (which shrinks a failure to its fewest choices)."""
    seeds = build_seeds(fuzz_work)[fmt]
    scratch = tmp_path_factory.mktemp(f"hyp-{fmt}") / "input"

    @settings(
        max_examples=120,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(seed=st.sampled_from(seeds), rnd=st.randoms(use_true_random=False))
    def check(seed: Seed, rnd: random.Random) -> None:
        data, ops = mutate(fmt, seed.data, rnd)
        scratch.write_bytes(data)
        rec = check_one(scratch)
        assert rec["outcome"] in ("ok", "refused"), (seed.name, ops, rec)

    check()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["dicom", "png"])
def test_full_campaign(fuzz_work: Path, fmt: str) -> None:
    """The issue's figure: >= 10,000 mutated inputs per format (about a minute each here)."""
    res = run_format(fmt, 10_000, seed=0, work=fuzz_work)
    assert not _failures(res), "\n".join(_failures(res)[:20])
    assert res.n == 10_000
