"""Fuzz ``edgevcf.data.io.read_image`` with seeded, structure-aware mutations of real files.

Goal (issue 7, section 2): over >= 10,000 mutated inputs per format (DICOM and PNG), no exception
other than :class:`~edgevcf.errors.DataError` escapes, nothing hangs, and no input the reader
refuses ever gets a score from :meth:`Predictor.predict_many`.

This script is the command line only (arguments, the run, the results files); the fuzzer itself
is :mod:`edgevcf.testing` (seed corpus, mutators, watched worker processes, summaries), which the
test suite imports too and runs a short version of.

Run: ``.venv/bin/python benchmarks/fuzz_readers.py --n 10000 --bundle BUNDLE`` (writes
benchmarks/results/<machine>-fuzz.{json,md}); ``--replay dicom:1234`` rewrites one input and
reads it once.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from edgevcf.machine import machine_label
from edgevcf.testing.fuzz_corpus import FORMATS, build_seeds
from edgevcf.testing.fuzz_harness import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    check_one,
    run_format,
    score_check,
    sweep_pydicom,
)
from edgevcf.testing.fuzz_mutators import make_input
from edgevcf.testing.fuzz_report import markdown, report

RESULTS = Path(__file__).resolve().parent / "results"


def _replay(spec: str, seed: int, work: Path, out: Path | None) -> None:
    fmt, _, idx = spec.partition(":")
    seeds = build_seeds(work)[fmt]
    s, data, ops = make_input(fmt, int(idx), seed, seeds)
    target = out or work / f"replay-{fmt}-{idx}"
    target.write_bytes(data)
    print(f"{fmt} input {idx}: seed file {s.name}; mutations: {'; '.join(ops)}")
    print(f"written to {target}")
    print(json.dumps(check_one(target)))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="inputs per format")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--bundle", help="a bundle: preprocess spec + the predict_many check")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per input, s")
    ap.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB)
    ap.add_argument("--work", type=Path, default=None, help="seed cache (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for the results files")
    ap.add_argument("--replay", help="FORMAT:INDEX: write that input and read it once")
    a = ap.parse_args(argv)
    work = a.work or Path(tempfile.mkdtemp(prefix="edgevcf-fuzz-"))
    if a.replay:
        _replay(a.replay, a.seed, work, None)
        return 0
    results = []
    for fmt in a.formats.split(","):
        print(f"{fmt}: {a.n} inputs", file=sys.stderr, flush=True)
        res = run_format(fmt, a.n, seed=a.seed, work=work, bundle=a.bundle, timeout_s=a.timeout,
                         memory_mb=a.memory_mb, progress_every=1000)  # fmt: skip
        if a.bundle:
            res.scoring = score_check(res, a.bundle, seed=a.seed, work=work)
        results.append(res)
    sweep = sweep_pydicom(work=work, timeout_s=a.timeout, memory_mb=a.memory_mb)
    args = {"n": a.n, "seed": a.seed, "timeout_s": a.timeout, "memory_mb": a.memory_mb,
            "bundle": Path(a.bundle).name if a.bundle else None}  # fmt: skip
    rep = report(results, args, sweep)
    rep["seeds"] = {
        fmt: dict(collections.Counter(s.origin for s in items))
        for fmt, items in build_seeds(work).items()
    }
    a.out.mkdir(parents=True, exist_ok=True)
    stem = a.out / f"{machine_label()}-fuzz"
    Path(f"{stem}.json").write_text(json.dumps(rep, indent=1) + "\n")
    Path(f"{stem}.md").write_text(markdown(rep))
    print(markdown(rep))
    return 0 if rep["clean"] else 1


if __name__ == "__main__":
    sys.exit(main())
