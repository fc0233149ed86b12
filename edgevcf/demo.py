"""The main job end to end on the built-in default: ``edgevcf demo`` / ``make demo``.

synthetic data -> an FP32 model trained here (inside the study's AUC range) -> bundles for every
target runnable here -> ``verify`` each -> ``bench`` them all against the FP32 baseline on the
untouched test split -> one report, and a summary in words (:func:`edgevcf.report.bench_summary`).

Re-running reuses what is already built, but never silently stale: each step's inputs are
fingerprinted (generator settings, the manifest and training config, the checkpoint's sha256
and the full profile) and a step is redone when they differ.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevcf import progress

log = logging.getLogger(__name__)

# (bundle folder, profile, precision override)
DEMO_TARGETS: tuple[tuple[str, str, str | None], ...] = (
    ("onnx-cpu-fp32", "onnx-cpu", None),
    ("onnx-cpu-int8", "onnx-cpu", "int8"),
    ("jetson-int8", "jetson-orin-nano", None),
    ("openvino-int8", "intel-cpu", None),
    ("mobile-int8", "mobile-arm", None),
)


@dataclass(frozen=True)
class DemoConfig:
    """What the demo builds.

    The defaults were chosen by measuring (2-core CPUs, see the README): a model inside the
    study's range (test AUC >= 0.85) on a test split large enough (>= 250 images) that
    non-inferiority at 0.01 can be decided, while the whole ``make demo`` from a fresh clone,
    install included, stays within 15 minutes.
    """

    patients: int = 1500
    epochs: int = 16
    arch: str = "mobilenet_v3_small"
    input_size: int | None = 224
    lr: float = 2e-3
    seed: int = 0
    val: float = 0.15
    test: float = 0.2
    calibration: str | None = None  # None: each profile's own recipe
    fallback: bool = True  # let an export that fails its gate try the profile's fallback
    iterations: int = 200
    bench_rounds: int = 3  # batch-1 latency in interleaved rounds across the rows
    quick: bool = False
    site_patients: int = 240  # the clinic step's shifted site (0: no clinic step)

    @classmethod
    def quick_run(cls) -> DemoConfig:
        """The ~2-minute smoke run: few patients, 128 px, two epochs. It shows that every step
        runs, not what INT8 keeps: its test split is too small to decide a 0.01 margin."""
        return cls(
            patients=120,
            epochs=2,
            input_size=128,
            test=0.15,
            calibration="small",
            fallback=False,
            bench_rounds=1,
            quick=True,
            site_patients=40,
        )


@dataclass
class DemoResult:
    """Where everything went, and what was reused."""

    out: Path
    manifest: Path
    checkpoint: Path
    bundles: dict[str, Path]
    report: dict[str, Any]
    report_paths: dict[str, Path]
    verify: dict[str, bool]
    reused: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    quick: bool = False
    clinic: dict[str, Any] | None = None  # the site validation's result (validation.json)
    clinic_paths: dict[str, Path] = field(default_factory=dict)


#: The clinic step's acceptance rules, fixed before its films are generated (as a site would).
CLINIC_PROTOCOL = """# the demo clinic's acceptance rules, written before its films exist
[protocol]
name = "demo clinic go-live"
written = "before the demo's site films were generated"
min_films = 20
min_positives = 8

[[rules]]
measure = "sensitivity"
bound = "value"
at_least = 0.75
where = "overall"

[[rules]]
measure = "specificity"
bound = "value"
at_least = 0.50
where = "overall"
"""
#: The demo's clinic: a DX room whose console enhances edges (moves the operating point).
CLINIC_PROFILE = "clinic-edge"
#: The site asks back the sensitivity the demo bundle was validated at (about 0.80 on val).
CLINIC_SENSITIVITY = 0.80


def _clinic(
    root: Path, bundles: dict[str, Path], cfg: DemoConfig, reused: list[str]
) -> tuple[dict[str, Any] | None, dict[str, Path]]:
    """The clinic's step: the demo's OpenVINO bundle (else the first INT8 one) validated on a
    small shifted site and re-thresholded into a site bundle (docs/site.md)."""
    from edgevcf.data.synth import SynthConfig, generate
    from edgevcf.data.synth.sites import apply_profile
    from edgevcf.errors import EdgeVCFError
    from edgevcf.site.validate import ValidateOptions, validate

    label = (
        "openvino-int8"
        if "openvino-int8" in bundles
        else next((k for k in bundles if "int8" in k), None)
    )
    if label is None or cfg.site_patients <= 0:
        return None, {}
    site = root / "site"
    site.mkdir(parents=True, exist_ok=True)
    protocol = site / "protocol.toml"
    protocol.write_text(CLINIC_PROTOCOL, encoding="utf-8")
    synth = apply_profile(SynthConfig.fast(), CLINIC_PROFILE)
    rec = site / "films" / "synth_config.json"
    saved = json.loads(rec.read_text()) if rec.is_file() else {}
    if (
        saved.get("config") == json.loads(json.dumps(synth.to_dict()))
        and saved.get("patients") == cfg.site_patients
        and (site / "films" / "manifest.csv").is_file()
    ):
        reused.append("site films")
        manifest = site / "films" / "manifest.csv"
    else:
        manifest = generate(
            site / "films",
            cfg.site_patients,
            seed=cfg.seed + 101,
            cfg=synth,
            fmt="dicom",
            workers=os.cpu_count() or 1,
            val=0,
            test=0,
            preview=False,
        ).manifest
    out = root / "report" / "site"
    try:
        result = validate(
            bundles[label],
            manifest,
            out,
            ValidateOptions(
                protocol=protocol,
                rethreshold=f"sensitivity={CLINIC_SENSITIVITY}",
                site_bundle=root / "bundles" / f"{label}-site",
                force=True,
            ),
        )
    except EdgeVCFError as exc:  # the site's verdict can be "no": show it, never crash the demo
        return {"error": exc.message, "hint": exc.hint}, {}
    return result, {"markdown": out / "validation.md", "json": out / "validation.json"}


def _data(out: Path, cfg: DemoConfig, reused: list[str]) -> Path:
    from edgevcf.data.synth import SynthConfig, generate

    synth = SynthConfig.fast()
    rec = out / "synth_config.json"
    if rec.is_file() and (out / "manifest.csv").is_file():
        saved = json.loads(rec.read_text())
        if (
            saved.get("config") == json.loads(json.dumps(synth.to_dict()))
            and saved.get("patients") == cfg.patients
            and saved.get("seed") == cfg.seed
            and (saved.get("val"), saved.get("test")) == (cfg.val, cfg.test)
        ):
            reused.append("data")
            return out / "manifest.csv"
    return generate(
        out,
        cfg.patients,
        seed=cfg.seed,
        cfg=synth,
        workers=os.cpu_count() or 1,
        val=cfg.val,
        test=cfg.test,
    ).manifest


def _train(manifest: Path, out: Path, cfg: DemoConfig, reused: list[str]) -> Path:
    from edgevcf.data.manifest import Manifest
    from edgevcf.models import read_checkpoint_meta
    from edgevcf.train import TrainConfig, train

    tc = TrainConfig(
        arch=cfg.arch, epochs=cfg.epochs, input_size=cfg.input_size, lr=cfg.lr, seed=cfg.seed
    )
    ckpt = out / "model.safetensors"
    if ckpt.is_file():
        try:
            meta = read_checkpoint_meta(ckpt)
            same_cfg = {k: meta.train_config.get(k) for k in dataclasses.asdict(tc)} == (
                json.loads(json.dumps(dataclasses.asdict(tc)))
            )
            if same_cfg and meta.data_fingerprint == Manifest.load(manifest).fingerprint():
                reused.append("training")
                return ckpt
        except Exception as exc:  # a damaged checkpoint is simply rebuilt
            log.warning("not reusing %s: %s", ckpt, exc)
    return train(manifest, out, tc).checkpoint


def _export(
    ckpt: Path, manifest: Path, out: Path, cfg: DemoConfig, reused: list[str], skipped: list[str]
) -> dict[str, Path]:
    from edgevcf.bundle import Bundle
    from edgevcf.errors import BackendUnavailableError, BundleError
    from edgevcf.export import export_bundle
    from edgevcf.hashing import sha256_file
    from edgevcf.profiles import load_profile
    from edgevcf.targets import get_target

    digest = sha256_file(ckpt)
    bundles = {}
    for label, name, precision in DEMO_TARGETS:
        prof = load_profile(name).with_overrides(precision=precision)
        q = prof.quantize
        q = dataclasses.replace(
            q,
            calibration=cfg.calibration or q.calibration,
            accuracy_fallback=q.accuracy_fallback and cfg.fallback,
        )
        prof = dataclasses.replace(prof, quantize=q)
        dest = out / label
        target = get_target(prof.target)
        try:
            target.check_available(prof)
        except BackendUnavailableError as exc:
            skipped.append(f"{label}: {exc.message}")
            continue
        try:
            b = Bundle.load(dest)
            same_profile = b.manifest["profile"] == json.loads(json.dumps(prof.to_dict()))
            if b.manifest["checkpoint"].get("sha256") == digest and same_profile:
                reused.append(f"bundle {label}")
                bundles[label] = dest
                continue
        except BundleError:
            pass
        export_bundle(target, ckpt, prof, manifest, dest, force=True)
        bundles[label] = dest
    return bundles


def run_demo(out: str | os.PathLike[str], cfg: DemoConfig | None = None) -> DemoResult:
    """Build (or reuse) everything under ``out`` and benchmark it; see the module docstring."""
    from edgevcf.bench import BenchConfig, bench
    from edgevcf.report import write_bench
    from edgevcf.runtime import verify

    cfg = cfg or DemoConfig()
    root = Path(out)
    t0 = time.perf_counter()
    reused: list[str] = []
    skipped: list[str] = []
    steps = 6 if cfg.site_patients > 0 else 5
    with progress.step(f"demo 1/{steps}: synthetic data"):
        manifest = _data(root / "data", cfg, reused)
    with progress.step(f"demo 2/{steps}: train {cfg.arch} ({cfg.epochs} epochs)"):
        ckpt = _train(manifest, root / "runs" / cfg.arch, cfg, reused)
    with progress.step(f"demo 3/{steps}: export to every target runnable here"):
        bundles = _export(ckpt, manifest, root / "bundles", cfg, reused, skipped)
    checks = {}
    with progress.step(f"demo 4/{steps}: verify each bundle"):
        for label, path in bundles.items():
            checks[label] = verify(path).passed
    with progress.step(f"demo 5/{steps}: bench against the FP32 baseline"):
        report = bench(
            list(bundles.values()),
            data=manifest,
            baseline=ckpt,
            # a demo, not a claim: quick, but its ratios side by side in interleaved rounds
            # (one pass per row let a slow phase of the machine land on one row only)
            cfg=BenchConfig(iterations=cfg.iterations, quick=True, rounds=cfg.bench_rounds),
        )
        report["notes"] = [
            *report.get("notes", []),
            f"a demo: latency in quick mode (>= 200 batch-1 queries per row and round, "
            f"{cfg.bench_rounds} interleaved rounds, no duration minimum); run `edgevcf bench` "
            "without --quick for MLPerf-style SingleStream minimums (>= 1,024 queries and "
            ">= 60 s per row)",
            *(f"skipped {s}" for s in skipped),
        ]
        paths = write_bench(report, root / "report")
    clinic: dict[str, Any] | None = None
    clinic_paths: dict[str, Path] = {}
    if steps == 6:
        with progress.step(f"demo 6/6: the clinic ({CLINIC_PROFILE}: validate, re-threshold)"):
            clinic, clinic_paths = _clinic(root, bundles, cfg, reused)
    return DemoResult(
        root,
        manifest,
        ckpt,
        bundles,
        report,
        paths,
        checks,
        reused,
        skipped,
        time.perf_counter() - t0,
        cfg.quick,
        clinic,
        clinic_paths,
    )
