"""Project-wide test setup: self-skipping markers (torchvision-style), one shared dataset, and one
tiny trained model exported once per profile (used by tests/targets and tests/safety).

Markers are declared in ``pyproject.toml``. A test marked ``requires_<backend>`` is skipped,
with the install hint in the reason, where that backend is not installed; ``slow`` tests run only
with ``--runslow`` or ``EDGEVCF_RUNSLOW=1``. The same suite therefore passes on a laptop with the
core install and runs every check on a Jetson or a GPU workstation, without editing anything.

Availability is probed with :func:`edgevcf.deps.available` (``find_spec``: imports nothing), so
collection stays fast; torch is imported only when a collected test asks for CUDA.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest

from edgevcf import deps

if TYPE_CHECKING:  # annotations only; the generator needs scipy and is imported lazily
    from edgevcf.data.synth import SynthResult
    from edgevcf.profiles import TargetProfile

#: Marker name -> key of :data:`edgevcf.deps.DEPENDENCIES` that the marked test needs.
BACKEND_MARKERS: dict[str, str] = {
    "requires_openvino": "openvino",
    "requires_tensorrt": "tensorrt",
    "requires_litert": "litert",
    "requires_torch": "torch",
    "requires_onnxruntime": "onnxruntime",
    "requires_ray": "ray",
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
    return f"needs {name}: {deps.DEPENDENCIES[name].hint}"


def _cuda_skip_reason() -> str | None:
    """Why a CUDA test cannot run here, or None when torch sees a GPU (imports torch)."""
    if not deps.available("torch"):
        hint = deps.DEPENDENCIES["torch"].hint
        return f"needs CUDA via torch, and torch is not installed: {hint}"
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
        pytest.skip(f"needs scipy for the synthetic generator: {deps.DEPENDENCIES['scipy'].hint}")
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
    """Keep the suite's preprocessed-image cache and logs out of the user's home."""
    os.environ["EDGEVCF_CACHE"] = str(tmp_path_factory.mktemp("edgevcf_cache"))
    os.environ["EDGEVCF_LOG_DIR"] = str(tmp_path_factory.mktemp("edgevcf_logs"))


# ------------------------------------------------------------------ one tiny trained model
# Shared by tests/targets and tests/safety (session scope: trained and exported once per run).
# The network is small (MobileNetV3-Small at 64 px, 2 epochs on 48 synthetic patients) so the
# suite stays fast; it is trained, not random (random torchvision nets have vanishing activations
# that make quantisation meaningless), but it is weak: tests check the plumbing -- files,
# checksums, parity, integer ops, golden vectors -- never its accuracy.


class TinyExport(NamedTuple):
    """What every target test exports from (a NamedTuple: this file is also loaded by path)."""

    checkpoint: Path
    manifest: Path


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> TinyExport:
    """A trained MobileNetV3-Small checkpoint (64 px) and its data manifest."""
    if deps.missing("torch", "torchvision", "scipy"):
        pytest.skip("needs torch, torchvision and scipy")
    from edgevcf import progress
    from edgevcf.data.synth import SynthConfig, generate
    from edgevcf.train import TrainConfig, train

    root = tmp_path_factory.mktemp("tiny_export")
    was = progress.enabled()
    progress.set_enabled(False)
    try:
        data = generate(root / "data", 48, cfg=SynthConfig.fast(), seed=5, workers=2, preview=False)
        run = train(
            data.manifest,
            root / "run",
            TrainConfig(arch="mobilenet_v3_small", epochs=2, input_size=64, seed=0, threads=2),
        )
    finally:
        progress.set_enabled(was)
    return TinyExport(run.checkpoint, data.manifest)


def small_profile(name: str, **quantize: object) -> TargetProfile:
    """A shipped profile with the small calibration recipe and no slow accuracy fallback."""
    from edgevcf.profiles import load_profile

    p = load_profile(name)
    q = dataclasses.replace(p.quantize, calibration="small", accuracy_fallback=False)
    q = dataclasses.replace(q, **quantize)  # type: ignore[arg-type]
    return dataclasses.replace(p, quantize=q)


@pytest.fixture(scope="session")
def profile_for() -> object:
    """:func:`small_profile`, as a fixture."""
    return small_profile


@pytest.fixture(scope="session")
def export_bundle(tiny_export: TinyExport, tmp_path_factory: pytest.TempPathFactory) -> object:
    """``export_bundle(profile, precision=None) -> (ExportResult, Bundle)``, exported once per
    session for each (profile, precision) and shared by all modules (treat as read-only)."""
    from edgevcf.bundle import Bundle
    from edgevcf.export import export_bundle as run_export
    from edgevcf.targets import get_target

    cache: dict[tuple[str, str | None], tuple[object, Bundle]] = {}
    root = tmp_path_factory.mktemp("bundles")

    def export(profile: str, precision: str | None = None) -> tuple[object, Bundle]:
        key = (profile, precision)
        if key not in cache:
            extra = {"precision": precision} if precision else {}
            prof = small_profile(profile, **extra)
            out = root / f"{profile}-{precision}"
            res = run_export(
                get_target(prof.target), tiny_export.checkpoint, prof, tiny_export.manifest, out
            )
            cache[key] = (res, Bundle.load(out))
        return cache[key]

    return export


@pytest.fixture(scope="session")
def ray_local() -> object:
    """One real local Ray for the session (2 CPUs, a small object store, no dashboard), which
    :func:`edgevcf.scale.connect` then finds already initialised."""
    reason = _backend_skip_reason("ray")
    if reason:
        pytest.skip(reason)
    import logging

    import ray

    ray.init(num_cpus=2, object_store_memory=100 * 1024 * 1024, include_dashboard=False,
             logging_level=logging.WARNING, log_to_driver=False)  # fmt: skip
    yield ray
    ray.shutdown()
