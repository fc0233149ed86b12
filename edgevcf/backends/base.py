"""The one interface every inference engine implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np


class Backend(ABC):
    """A loaded model: ``run`` maps a float32 NCHW batch to logits of shape (N, 1).

    Subclasses load in ``__init__`` and must be safe to call from several threads at once (the
    runtime shares one Predictor between threads); where an engine's request object is not,
    the subclass serialises or keeps one per thread.
    """

    runtime: str = ""

    def __init__(self, path: Path, *, threads: int = 0, **options: Any) -> None:
        self.path = Path(path)
        self.threads = threads
        self.options = options

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
            outs.append(np.asarray(self.run(chunk), dtype=np.float32).reshape(len(chunk), -1)[:n])
        return np.concatenate(outs)

    @classmethod
    def versions(cls) -> dict[str, str]:
        """Version of the engine (recorded in bundles and bench reports)."""
        return {}
