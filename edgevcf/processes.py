"""Child processes that never fork the caller.

A forked child of a threaded process can deadlock on a lock some other thread held at the fork
(ONNX Runtime, TensorFlow Lite and torch all start threads; seen: the generator's pool hung
after three films with LiteRT's threads in the parent). The fork server is single-threaded, so
its children start clean and still in a fraction of a second; spawn where there is none.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from typing import Any


def context(preload: Sequence[str] = ()) -> Any:
    """A forkserver context (``preload``: modules the server imports once, for fast starts; only
    the first call that starts the server decides them), else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        if preload:
            ctx.set_forkserver_preload(list(preload))
        return ctx
    return multiprocessing.get_context("spawn")
