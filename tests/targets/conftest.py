"""Shared fixtures for the target contract tests: one small *trained* checkpoint per session.

The network is small (MobileNetV3-Small at 64 px, 2 epochs on 48 synthetic patients) so the
suite stays fast; it is trained, not random (random torchvision nets have vanishing activations
that make quantisation meaningless), but it is weak: tests check the plumbing — files, checksums,
parity, integer ops, golden vectors — never its accuracy.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgevcf import deps
from edgevcf.profiles import TargetProfile, load_profile


@dataclasses.dataclass(frozen=True)
class TinyExport:
    """What every target test exports from."""

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
    from edgevcf.targets import get_target

    cache: dict[tuple[str, str | None], tuple[object, Bundle]] = {}
    root = tmp_path_factory.mktemp("bundles")

    def export(profile: str, precision: str | None = None) -> tuple[object, Bundle]:
        key = (profile, precision)
        if key not in cache:
            extra = {"precision": precision} if precision else {}
            prof = small_profile(profile, **extra)
            out = root / f"{profile}-{precision}"
            res = get_target(prof.target).export(
                tiny_export.checkpoint, prof, tiny_export.manifest, out
            )
            cache[key] = (res, Bundle.load(out))
        return cache[key]

    return export
