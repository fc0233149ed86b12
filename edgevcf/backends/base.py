"""The one interface every inference engine implements."""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

#: Every engine's first inference on each thread runs alone in the process. OpenVINO's Python
#: bindings deadlock when two threads make their first inference at once (a C++ static
#: initialisation raced with the GIL held: 4 of 37 node starts froze on a 2-core Zen 4, SIGTERM
#: ignored), and no engine documents its first use as thread-safe; once a thread's engine state
#: exists and has run, later calls need no lock.
_FIRST_USE = threading.Lock()
#: Test-only switch (``EDGEVCF_UNSAFE_CONCURRENT_FIRST_USE=1``): the lock above is skipped, so
#: the concurrency tests can show that they catch the race it prevents. Never set it on a cart.
UNSAFE_ENV = "EDGEVCF_UNSAFE_CONCURRENT_FIRST_USE"


def serial_first_use() -> bool:
    """Whether each thread's first inference is serialised (always, unless the test switch)."""
    return os.environ.get(UNSAFE_ENV, "") != "1"


class Backend(ABC):
    """A loaded model: ``run`` maps a float32 NCHW batch to logits of shape (N, 1).

    Subclasses load in ``__init__`` and must be safe to call from several threads at once (the
    runtime shares one Predictor between threads); where an engine's request object is not,
    the subclass serialises or keeps one per thread. Callers go through :meth:`run_all` (or
    :meth:`warm`), which runs each thread's first inference alone (:data:`_FIRST_USE`); a
    direct :meth:`run` is for one thread only (bench, export measurements).
    """

    runtime: str = ""

    def __init__(self, path: Path, *, threads: int = 0, **options: Any) -> None:
        self.path = Path(path)
        self.threads = threads
        self.options = options
        self._used = threading.local()

    @property
    @abstractmethod
    def static_batch(self) -> int:
        """The batch size the loaded graph requires, or 0 if any batch is accepted."""

    @abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, 1) float32 for one batch ``x`` (N, C, H, W) float32."""

    def run_all(self, x: np.ndarray, batch: int = 32) -> np.ndarray:
        """Logits for any number of inputs, in chunks the graph accepts."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        step = self.static_batch or batch
        if len(x) == 0:
            return np.zeros((0, 1), dtype=np.float32)
        outs = []
        for i in range(0, len(x), step):
            chunk = x[i : i + step]
            n = len(chunk)
            if self.static_batch and n < step:  # pad the last chunk of a static-batch graph
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
            y = self._run_safely(chunk)
            outs.append(np.asarray(y, dtype=np.float32).reshape(len(chunk), -1)[:n])
        return np.concatenate(outs)

    def _run_safely(self, x: np.ndarray) -> np.ndarray:
        """:meth:`run`; the calling thread's first call (per batch size) alone in the process."""
        seen: set[int] = getattr(self._used, "batches", None) or set()
        if len(x) in seen or not serial_first_use():
            return self.run(x)
        with _FIRST_USE:
            y = self.run(x)
        seen.add(len(x))
        self._used.batches = seen
        return y

    def warm(self, shape: tuple[int, ...]) -> None:
        """Create and run this thread's engine state once (an input of ``shape``, batch 1).

        A scoring worker calls it before it takes work, so no film waits for an engine's
        first-use set-up and no two threads ever make their first inference together.
        """
        x = np.zeros((self.static_batch or 1, *shape[1:]), dtype=np.float32)
        self._run_safely(x)

    @classmethod
    def versions(cls) -> dict[str, str]:
        """Version of the engine (recorded in bundles and bench reports)."""
        return {}
