"""Target profiles: ``targets/*.toml`` (data only) -> frozen dataclasses.

A profile says what one deployment is: the target toolchain, the device, how to export, how to
quantize, how to benchmark and how much accuracy may be lost. Profiles are data so that a device
maker can add one without touching code; the loader is strict (unknown keys and wrong types are
refused naming the file, the table and the valid keys) because a typo such as ``max_auc_dorp``
silently falling back to a default would move a clinical gate.

The TOML files ship inside the wheel as the package ``edgevcf.profiles_data`` (mapped from the
top-level ``targets/`` folder), so they are found after a non-editable install too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgevcf.errors import ConfigError
from edgevcf.tomlconf import check_table, coerce, read_toml

#: ``auto``: the fastest precision that passes the gate, measured on the device at hand.
PRECISIONS = ("int8", "bf16", "fp16", "fp32", "auto")

# The one table of targets: each target's name and its options, name -> (type, default). Owned
# here so profiles validate without importing a toolchain; the target of each name is the
# class ``TARGET`` of module ``edgevcf.targets.<name>`` (:func:`edgevcf.targets.get_target`).
TARGET_OPTIONS: dict[str, dict[str, tuple[type, Any]]] = {
    "jetson": {
        "workspace_mb": (int, 1024),
        "dla_core": (int, -1),  # -1: GPU only; 0/1: a DLA core with GPU fallback (AGX Orin)
        "timing_cache": (bool, True),
        "builder_optimization_level": (int, 3),
        "jetpack": (str, ""),
        "sm": (str, ""),
    },
    "openvino": {
        "device": (str, "CPU"),
        "inference_precision": (str, "f32"),  # f32 | bf16 | f16: set explicitly, never default
        "performance_hint": (str, "LATENCY"),
        "model_cache": (bool, True),
        "preset": (str, "performance"),  # nncf preset: performance | mixed
        "fast_bias_correction": (bool, True),
        "subset_size": (int, 300),
        # INT8 IRs: storage of the weights NNCF leaves in float (e.g. squeeze-excitation 1x1
        # convolutions): int8 per-channel (weight-only), fp16, or fp32 as NNCF wrote them
        "float_weights": (str, "int8"),
    },
    "mobile": {
        "ort_format": (bool, True),
        "tflite": (bool, True),
    },
    "onnx": {
        "activation_type": (str, "uint8"),  # x86 ORT fuses u8 activations only
        "per_channel": (bool, True),
    },
}
TARGET_NAMES = tuple(TARGET_OPTIONS)


@dataclass(frozen=True)
class ExportSettings:
    """How the FP32 graph is produced."""

    opset: int = 17
    input_size: int = 0  # 0: the checkpoint's own input size
    batch: int = 1  # 0: dynamic batch dimension (onnx, openvino)
    grey_input: bool = False  # one-channel unit input; replication and mean/std in the graph
    parity_atol: float = 1e-3  # max |logit difference| ONNX vs PyTorch on real images


@dataclass(frozen=True)
class QuantizeSettings:
    """What precision the deployed model computes in and how it gets there."""

    precision: str = "int8"
    method: str = "ptq"
    calibration: str = "default"  # a recipe in calibration/
    samples: int = 0  # 0: the recipe's count
    excluded_layers: tuple[str, ...] = ()
    # gate failed: NNCF accuracy control (openvino), float blocks (ORT targets)
    accuracy_fallback: bool = False
    accuracy_aware: bool = False  # always run accuracy-aware PTQ (openvino)
    # quantisation-aware training (openvino): epochs of fine-tuning with fake quantisers when
    # no post-training INT8 passes (0: never); ``qat`` = QAT straight away
    qat_epochs: int = 0
    qat: bool = False
    qat_lr: float = 1e-5
    calibrate_method: str = "minmax"  # ONNX Runtime targets: minmax | percentile | entropy
    percentile: float = 99.999  # with calibrate_method = "percentile"


@dataclass(frozen=True)
class BenchSettings:
    """How latency is measured on the device."""

    threads: int = 0  # 0: all cores
    warmup: int = 20
    iterations: int = 200
    batch_sizes: tuple[int, ...] = (1, 8)
    latency_budget_ms: float = 100.0


@dataclass(frozen=True)
class Tolerance:
    """How much a deployment may differ from the FP32 baseline."""

    max_auc_drop: float = 0.01  # ΔAUC CI lower bound must stay above -this
    max_flip_rate: float = 0.02  # fails when the flip rate's CI lies wholly above this
    max_sensitivity_drop: float = 0.05  # paired Δsensitivity CI lower bound above -this
    max_specificity_drop: float = 0.05  # paired Δspecificity CI lower bound above -this
    # A site may re-threshold the bundle only where the tuning split's sensitivity and
    # specificity each stay within this of the validated ones (recorded at export).
    site_threshold_margin: float = 0.25


@dataclass(frozen=True)
class TargetProfile:
    """One deployment profile (a whole TOML file)."""

    name: str
    target: str
    description: str = ""
    device: str = ""
    aliases: tuple[str, ...] = ()
    export: ExportSettings = field(default_factory=ExportSettings)
    quantize: QuantizeSettings = field(default_factory=QuantizeSettings)
    options: dict[str, Any] = field(default_factory=dict)
    bench: BenchSettings = field(default_factory=BenchSettings)
    tolerance: Tolerance = field(default_factory=Tolerance)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as recorded in a bundle."""
        return dataclasses.asdict(self)

    def with_overrides(self, **overrides: Any) -> TargetProfile:
        """A copy with CLI flags applied: ``precision``, ``input_size``, ``samples``, ``threads``.

        A flag set to None leaves the profile's value.
        """
        table_of = {
            "precision": "quantize",
            "samples": "quantize",
            "accuracy_aware": "quantize",
            "input_size": "export",
            "grey_input": "export",
            "threads": "bench",
        }
        p = self
        for key, value in overrides.items():
            if value is None:
                continue
            if key not in table_of:
                raise ConfigError(f"unknown profile override {key!r}")
            table = table_of[key]
            new = check_table(
                type(getattr(p, table)),
                {**dataclasses.asdict(getattr(p, table)), key: value},
                f"override --{key.replace('_', '-')}",
                table,
            )
            p = dataclasses.replace(p, **{table: new})
        _check_values(p, "overrides")
        return p


def _check_options(target: str, data: dict[str, Any], source: str) -> dict[str, Any]:
    schema = TARGET_OPTIONS[target]
    unknown = sorted(set(data) - set(schema))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)} in [options] for target {target}",
            hint=f"valid keys in [options] for {target}: {', '.join(schema)}",
        )
    out = {k: default for k, (_, default) in schema.items()}
    for k, v in data.items():
        out[k] = coerce(v, schema[k][0], f"{source}: [options] {k}")
    return out


def _check_values(p: TargetProfile, source: str) -> None:
    """Range checks that types cannot express."""
    problems = []
    if p.quantize.precision not in PRECISIONS:
        problems.append(f"[quantize] precision must be one of {', '.join(PRECISIONS)}")
    if p.quantize.precision == "bf16" and p.target != "openvino":
        problems.append("[quantize] precision bf16 is for the openvino target")
    if p.quantize.precision == "auto" and p.target == "jetson":
        problems.append(
            "[quantize] precision auto times every candidate on the machine at hand, and a "
            "Jetson's engine is built and timed on the Jetson: choose int8 or fp16"
        )
    if not 13 <= p.export.opset <= 23:
        problems.append("[export] opset must be 13..23 (TensorRT needs >= 17 for the jetson)")
    if p.target == "jetson" and p.export.opset < 17:
        problems.append("[export] opset must be >= 17 for TensorRT explicit quantisation")
    if p.export.input_size and not 32 <= p.export.input_size <= 2048:
        problems.append("[export] input_size must be 0 (checkpoint's) or 32..2048")
    if p.export.batch < 0:
        problems.append("[export] batch must be >= 1, or 0 for a dynamic batch")
    if p.target in ("jetson", "mobile") and p.export.batch == 0:
        problems.append(f"[export] batch must be static (>= 1) for the {p.target} target")
    if p.quantize.calibrate_method not in ("minmax", "percentile", "entropy"):
        problems.append("[quantize] calibrate_method must be minmax, percentile or entropy")
    if not 90.0 <= p.quantize.percentile <= 100.0:
        problems.append("[quantize] percentile must be in [90, 100]")
    if p.quantize.qat_epochs < 0 or not 0 < p.quantize.qat_lr < 1:
        problems.append("[quantize] qat_epochs must be >= 0 and qat_lr in (0, 1)")
    if (p.quantize.qat or p.quantize.qat_epochs) and p.target != "openvino":
        problems.append("[quantize] quantisation-aware training (qat, qat_epochs) is for openvino")
    if p.quantize.qat and not p.quantize.qat_epochs:
        problems.append("[quantize] qat = true needs qat_epochs >= 1")
    if p.quantize.samples < 0:
        problems.append("[quantize] samples must be >= 0")
    if p.bench.iterations < 1 or p.bench.warmup < 0 or p.bench.threads < 0:
        problems.append("[bench] iterations >= 1, warmup >= 0 and threads >= 0 are required")
    if not p.bench.batch_sizes or min(p.bench.batch_sizes) < 1:
        problems.append("[bench] batch_sizes must be a non-empty list of positive integers")
    if p.bench.latency_budget_ms <= 0:
        problems.append("[bench] latency_budget_ms must be positive")
    if not 0 <= p.tolerance.max_auc_drop < 0.5:
        problems.append("[tolerance] max_auc_drop must be in [0, 0.5)")
    if not 0 <= p.tolerance.max_flip_rate <= 1:
        problems.append("[tolerance] max_flip_rate must be in [0, 1]")
    for k in ("max_sensitivity_drop", "max_specificity_drop"):
        if not 0 <= getattr(p.tolerance, k) < 1:
            problems.append(f"[tolerance] {k} must be in [0, 1)")
    if p.target == "jetson" and int(p.options.get("dla_core", -1)) >= 0:
        if p.quantize.precision == "int8":
            # A DLA runs FP16, or INT8 by implicit quantisation (per-tensor dynamic ranges), never
            # a strongly typed Q/DQ network; with --stronglyTyped trtexec's DLA branch sets FP16,
            # which TensorRT then rejects (NVIDIA/TensorRT#4253, #2222).
            problems.append(
                "[options] dla_core with precision int8: TensorRT cannot put explicit Q/DQ INT8 "
                "on a DLA (DLA INT8 is implicit quantisation only); use precision fp16 with "
                "dla_core, or dla_core = -1 for INT8 on the GPU"
            )
        if int(p.options["dla_core"]) > 1:
            problems.append("[options] dla_core must be -1 (GPU), 0 or 1 (Orin has two DLAs)")
    ov_precision = p.options.get("inference_precision")
    if p.target == "openvino" and ov_precision not in ("f32", "bf16", "f16"):
        problems.append("[options] inference_precision must be f32, bf16 or f16")
    if p.target == "openvino" and p.options.get("float_weights") not in ("int8", "fp16", "fp32"):
        problems.append("[options] float_weights must be int8, fp16 or fp32")
    if p.target == "onnx" and p.options.get("activation_type") not in ("uint8", "int8"):
        problems.append("[options] activation_type must be uint8 or int8")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))


def parse_profile(data: dict[str, Any], source: str, default_name: str = "") -> TargetProfile:
    """Validate a profile's TOML tables into a :class:`TargetProfile`."""
    top = {"name", "target", "description", "device", "aliases"}
    tables = {
        "export": ExportSettings,
        "quantize": QuantizeSettings,
        "bench": BenchSettings,
        "tolerance": Tolerance,
    }
    unknown = sorted(set(data) - top - set(tables) - {"options"})
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) or table(s) {', '.join(unknown)}",
            hint="valid: " + ", ".join([*sorted(top), *(f"[{t}]" for t in tables), "[options]"]),
        )
    target = data.get("target")
    if target not in TARGET_NAMES:
        raise ConfigError(
            f"{source}: target must be one of {', '.join(TARGET_NAMES)}, got {target!r}"
        )
    built: dict[str, Any] = {}
    for name, cls in tables.items():
        raw = data.get(name, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        built[name] = check_table(cls, raw, source, name)
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{source}: [options] must be a table")
    for key in ("name", "description", "device"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{source}: {key} must be a string")
    profile = TargetProfile(
        name=data.get("name", default_name),
        target=target,
        description=data.get("description", ""),
        device=data.get("device", ""),
        aliases=coerce(data.get("aliases", []), tuple[str, ...], f"{source}: aliases"),
        options=_check_options(target, options, source),
        source=source,
        **built,
    )
    _check_values(profile, source)
    return profile


def load_profile_file(path: str | Path) -> TargetProfile:
    """Load one profile TOML file."""
    p = Path(path)
    return parse_profile(read_toml(p, "profile"), str(p), default_name=p.stem)


def bundled_files(package: str, checkout_dir: str) -> list[Path]:
    """TOML files shipped as ``package``; a source checkout's folder when not installed."""
    try:
        root = resources.files(package)
        found = [Path(str(f)) for f in root.iterdir() if f.name.endswith(".toml")]
        if found:
            return sorted(found)
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        pass
    folder = Path(__file__).resolve().parent.parent / checkout_dir
    return sorted(folder.glob("*.toml"))


def builtin_profiles() -> dict[str, TargetProfile]:
    """All shipped profiles by name (aliases not included)."""
    out: dict[str, TargetProfile] = {}
    for f in bundled_files("edgevcf.profiles_data", "targets"):
        prof = load_profile_file(f)
        out[prof.name] = prof
    return out


def aliases(profiles: dict[str, TargetProfile] | None = None) -> dict[str, str]:
    """Short name -> profile name."""
    profiles = builtin_profiles() if profiles is None else profiles
    out: dict[str, str] = {}
    for prof in profiles.values():
        for a in prof.aliases:
            if a in out or a in profiles:
                raise ConfigError(f"alias {a!r} is defined twice ({prof.source})")
            out[a] = prof.name
    return out


def load_profile(name_or_path: str) -> TargetProfile:
    """A profile by name, alias or TOML path; unknown names list the valid ones."""
    if name_or_path.endswith(".toml") or Path(name_or_path).is_file():
        return load_profile_file(name_or_path)
    profiles = builtin_profiles()
    name = aliases(profiles).get(name_or_path, name_or_path)
    if name not in profiles:
        valid = sorted([*profiles, *aliases(profiles)])
        raise ConfigError(
            f"unknown target {name_or_path!r}",
            hint=f"choose one of: {', '.join(valid)} (or give a PROFILE.toml path)",
        )
    return profiles[name]
