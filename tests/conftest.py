"""Project-wide test setup: self-skipping markers (torchvision-style) and one shared dataset.

Markers are declared in ``pyproject.toml``. A test marked ``requires_<backend>`` is skipped,
with the install hint in the reason, where that backend is not installed; ``slow`` tests run only
with ``--runslow`` or ``EDGEVCF_RUNSLOW=1``. The same suite therefore passes on a laptop with the
core install and runs every check on a Jetson or a GPU workstation, without editing anything.

Availability is probed with :func:`edgevcf.deps.available` (``find_spec``: imports nothing), so
collection stays fast; torch is imported only when a collected test asks for CUDA.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from edgevcf import deps

if TYPE_CHECKING:  # annotations only; the generator needs scipy and is imported lazily
    from edgevcf.data.synth import SynthResult

#: Marker name -> key of :data:`edgevcf.deps.BACKENDS` that the marked test needs.
BACKEND_MARKERS: dict[str, str] = {
    "requires_openvino": "openvino",
    "requires_tensorrt": "tensorrt",
    "requires_litert": "litert",
    "requires_torch": "torch",
    "requires_onnxruntime": "onnxruntime",
}
CUDA_MARKER = "requires_cuda"
SLOW_MARKER = "slow"
RUNSLOW_ENV = "EDGEVCF_RUNSLOW"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--runslow",
        action="store_true",
        default=False,
        help=f"run tests marked slow (or set {RUNSLOW_ENV}=1)",
    )


def _backend_skip_reason(name: str) -> str | None:
    """Why a test needing backend ``name`` cannot run here, or None when it can."""
    if deps.available(name):
        return None
    return f"needs {name}: {deps.BACKENDS[name].hint}"


def _cuda_skip_reason() -> str | None:
    """Why a CUDA test cannot run here, or None when torch sees a GPU (imports torch)."""
    if not deps.available("torch"):
        return f"needs CUDA via torch, and torch is not installed: {deps.BACKENDS['torch'].hint}"
    try:
        import torch
    except ImportError as exc:  # installed but broken
        return f"needs CUDA via torch, and torch fails to import: {exc}"
    if not torch.cuda.is_available():
        return (
            "needs a CUDA GPU visible to torch: run on a machine with an NVIDIA GPU and a "
            "CUDA build of torch (check CUDA_VISIBLE_DEVICES)"
        )
    return None


def _cached(probe: Callable[[], str | None]) -> Callable[[], str | None]:
    """Call ``probe`` at most once (and only if some test needs its answer)."""
    answer: list[str | None] = []

    def get() -> str | None:
        if not answer:
            answer.append(probe())
        return answer[0]

    return get


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    runslow = bool(config.getoption("--runslow")) or os.environ.get(RUNSLOW_ENV) == "1"
    backend_reasons = {
        marker: _cached(lambda name=name: _backend_skip_reason(name))
        for marker, name in BACKEND_MARKERS.items()
    }
    cuda_reason = _cached(_cuda_skip_reason)
    slow_skip = pytest.mark.skip(
        reason=f"slow: run with --runslow or {RUNSLOW_ENV}=1 to include it"
    )

    for item in items:
        if not runslow and item.get_closest_marker(SLOW_MARKER) is not None:
            item.add_marker(slow_skip)
        for marker, reason_of in backend_reasons.items():
            if item.get_closest_marker(marker) is not None:
                reason = reason_of()
                if reason is not None:
                    item.add_marker(pytest.mark.skip(reason=reason))
        if item.get_closest_marker(CUDA_MARKER) is not None:
            reason = cuda_reason()
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def synth_fast_dataset(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    """24 synthetic patients at 0.6 mm (seed 11, with preview), generated once per session.

    Read-only by convention: tests that modify files should copy what they change.
    """
    if not deps.available("scipy"):
        pytest.skip(f"needs scipy for the synthetic generator: {deps.BACKENDS['scipy'].hint}")
    from edgevcf import progress
    from edgevcf.data.synth import SynthConfig, generate

    out_dir = tmp_path_factory.mktemp("synth_fast")
    was_enabled = progress.enabled()
    progress.set_enabled(False)
    try:
        return generate(out_dir, 24, cfg=SynthConfig.fast(), seed=11, workers=1, preview=True)
    finally:
        progress.set_enabled(was_enabled)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the suite's preprocessed-image cache out of the user's ~/.cache/edgevcf."""
    os.environ["EDGEVCF_CACHE"] = str(tmp_path_factory.mktemp("edgevcf_cache"))
