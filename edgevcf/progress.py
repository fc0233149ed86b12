"""Progress display for long work, silenced globally by ``--quiet``.

Library code wraps long loops in :func:`track`; the CLI turns it off with
:func:`set_enabled`. Progress goes to the console's stderr (:func:`edgevcf.console.stderr`, the
terminal even while toolchain chatter is sent to the log) so stdout stays clean for ``--json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from edgevcf import console

T = TypeVar("T")

_enabled = True


def set_enabled(enabled: bool) -> None:
    """Switch progress bars on or off for the whole process."""
    global _enabled
    _enabled = enabled


def enabled() -> bool:
    """Whether progress bars are shown."""
    return _enabled


def track(
    iterable: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it"
) -> Iterator[T]:
    """Iterate with a tqdm bar on stderr when progress is enabled (and stderr is usable)."""
    if not _enabled:
        yield from iterable
        return
    yield from _bar(iterable, total=total, desc=desc, unit=unit)


def _bar(iterable: Iterable[T] | None = None, **kw: object) -> Any:
    """A tqdm bar on the console's stderr, gone when done."""
    from tqdm import tqdm

    return tqdm(iterable, file=console.stderr(), dynamic_ncols=True, leave=False, **kw)


def track_batches(
    batches: Iterable[Sequence[T]], *, total: int, desc: str = "", unit: str = "it"
) -> Iterator[Sequence[T]]:
    """Iterate over batches with a bar counting their items (films, not batches)."""
    if not _enabled:
        yield from batches
        return
    with _bar(total=total, desc=desc, unit=unit) as bar:
        for b in batches:
            yield b
            bar.update(len(b))


@contextmanager
def step(desc: str) -> Iterator[None]:
    """A long step without a loop to count (a conversion, NNCF, an engine build).

    Shows ``desc ...`` while it runs and ``desc: done in N s`` after, on stderr, with a ticking
    elapsed-time line so a user can tell a slow step from a hung one.
    """
    if not _enabled:
        yield
        return
    import threading
    import time

    t0 = time.perf_counter()
    stop = threading.Event()
    err = console.stderr()
    tty = err.isatty()

    def tick() -> None:
        while not stop.wait(1.0):
            if tty:
                err.write(f"\r{desc} ... {time.perf_counter() - t0:.0f} s")
                err.flush()

    if tty:
        err.write(f"{desc} ...")
        err.flush()
    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        stop.set()
        thread.join()
        state = "done" if ok else "failed"
        lead = "\r\033[K" if tty else ""
        err.write(f"{lead}{desc}: {state} in {time.perf_counter() - t0:.1f} s\n")
        err.flush()


@contextmanager
def captured_stdout(what: str) -> Iterator[None]:
    """Keep a toolchain's prints (ORT calibrators, NNCF, converters) off stdout.

    stdout belongs to the command's output (``--json`` must parse); what the toolchain printed
    goes to the debug log instead.
    """
    import contextlib
    import io
    import logging

    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        text = buf.getvalue().strip()
        if text:
            logging.getLogger("edgevcf.toolchain").debug("%s printed:\n%s", what, text[-4000:])
