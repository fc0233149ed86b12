"""Race every engine's *first* inference: N threads of a fresh process call ``predict`` at the
same instant, each on its first use of the engine.

Why a fresh process: the deadlock this hunts (OpenVINO's Python bindings, a C++ static
initialisation raced by two threads with the GIL held) can only happen on the first inference a
process makes; a process that already inferred once never shows it. So each trial is a new
interpreter (:func:`trial` starts one running this module), with a time limit: a trial that does
not finish in time is a hang (it is killed).

``EDGEVCF_UNSAFE_CONCURRENT_FIRST_USE=1`` in a trial's environment switches off the serialised
first use (:mod:`edgevcf.backends.base`), so a test can show that these trials catch the race
the serialisation prevents.

    python -m edgevcf.testing.first_use BUNDLE BACKEND THREADS IMAGE [IMAGE ...]

prints one JSON line: every thread's outcomes (status, probability, decision per image).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Trial:
    """One fresh process's outcome."""

    status: str  # ok | hang | error
    seconds: float
    outcomes: list[list[list[Any]]]  # per thread, per image: [status, probability, decision]
    detail: str = ""


def first_probability(pred: Any, image: str) -> float:
    """What a trial's thread computes first for ``image`` (prepare, then one inference)."""
    from edgevcf.metrics import sigmoid

    x, _ = pred.prepare(image)
    return float(sigmoid(pred.logits(x)[:1])[0])


def outcome(pred: Any, image: str) -> list[Any]:
    """One predict call as a trial reports it: [status, probability, decision]."""
    from edgevcf.errors import EdgeVCFError

    try:
        p = pred.predict(image)
    except EdgeVCFError as exc:
        return ["raised", type(exc).__name__, None]
    return [p.status, p.probability, p.decision]


def main(argv: list[str]) -> int:
    """In the fresh process: load; every thread prepares its first image, waits for the
    others, then all make their first inference at once; then each predicts every image."""
    bundle, backend, n, images = argv[0], argv[1], int(argv[2]), argv[3:]
    from edgevcf.metrics import sigmoid
    from edgevcf.runtime import Predictor

    pred = Predictor.from_bundle(bundle, backend, threads=1)
    start = threading.Barrier(n)
    out: list[list[list[Any]]] = [[] for _ in range(n)]

    def work(k: int) -> None:
        first = images[k % len(images)]
        x, _ = pred.prepare(first)
        start.wait()  # every thread makes its first inference at the same instant
        p = float(sigmoid(pred.logits(x)[:1])[0])  # as first_probability
        res = {img: outcome(pred, img) for img in images}
        out[k] = [["first", p, None], *(res[img] for img in images)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(out))
    return 0


def trial(
    bundle: str,
    backend: str,
    threads: int,
    images: list[str],
    *,
    timeout_s: float = 60.0,
    unsafe: bool = False,
) -> Trial:
    """Run one fresh process (see the module docstring); a hang is killed after ``timeout_s``."""
    from edgevcf.backends.base import UNSAFE_ENV

    env = {k: v for k, v in os.environ.items() if k != UNSAFE_ENV}
    if unsafe:
        env[UNSAFE_ENV] = "1"
    cmd = [sys.executable, "-m", "edgevcf.testing.first_use", bundle, backend, str(threads),
           *images]  # fmt: skip
    t0 = time.monotonic()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return Trial("hang", time.monotonic() - t0, [], f"no result in {timeout_s:g} s")
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        return Trial("error", seconds, [], done.stderr.strip().splitlines()[-1:][0][:300]
                     if done.stderr.strip() else f"exit code {done.returncode}")  # fmt: skip
    return Trial("ok", seconds, json.loads(done.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
