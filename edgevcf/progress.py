"""Progress display for long work, silenced globally by ``--quiet``.

Library code wraps long loops in :func:`track`; the CLI turns it off with
:func:`set_enabled`. Progress goes to stderr so stdout stays clean for ``--json`` output.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

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
    from tqdm import tqdm

    yield from tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
    )
