"""The cart keeps one film's memory for the next (``runtime.keep_freed_memory``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = "from edgevcf.runtime import keep_freed_memory as k; print(k(), k())"


def _run(**env: str) -> str:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=60, check=True)  # fmt: skip
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_allocator_is_tuned_once_and_can_be_left_alone() -> None:
    import platform

    glibc = platform.libc_ver()[0] == "glibc"
    assert _run() == ("True True" if glibc else "False False")
    assert _run(EDGEVCF_MALLOC_TUNING="0") == "False False"
