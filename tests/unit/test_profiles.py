"""Target profiles and calibration recipes: shipped files, strict loading, overrides, packaging."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgevcf.calibration import load_recipe
from edgevcf.errors import ConfigError
from edgevcf.profiles import (
    TARGET_NAMES,
    aliases,
    builtin_profiles,
    load_profile,
    load_profile_file,
)

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_profiles_and_aliases() -> None:
    profiles = builtin_profiles()
    for name in ("jetson-orin-nano", "jetson-agx-orin", "intel-cpu", "mobile-arm", "onnx-cpu"):
        assert name in profiles
    al = aliases()
    assert al["jetson"] == "jetson-orin-nano"
    assert al["openvino"] == "intel-cpu"
    assert al["mobile"] == "mobile-arm"
    assert al["onnx"] == "onnx-cpu"
    assert {p.target for p in profiles.values()} == set(TARGET_NAMES)
    for p in profiles.values():
        assert p.tolerance.max_auc_drop == 0.01 and p.tolerance.max_flip_rate == 0.02
        assert p.export.opset >= 17
    assert load_profile("jetson-agx").options["workspace_mb"] == 4096
    assert load_profile("jetson-fp16").quantize.precision == "fp16"


def test_unknown_target_lists_valid_ones() -> None:
    with pytest.raises(ConfigError) as err:
        load_profile("raspberry")
    assert "jetson" in (err.value.hint or "") and "intel-cpu" in (err.value.hint or "")


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "custom.toml"
    p.write_text(text)
    return p


def test_unknown_key_names_file_table_and_valid_keys(tmp_path: Path) -> None:
    p = _write(tmp_path, 'target = "onnx"\n[tolerance]\nmax_auc_dorp = 0.05\n')
    with pytest.raises(ConfigError) as err:
        load_profile_file(p)
    assert str(p) in err.value.message and "[tolerance]" in err.value.message
    assert "max_auc_dorp" in err.value.message
    assert "max_auc_drop" in (err.value.hint or "")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('target = "onnx"\n[bench]\niterations = "many"\n', "iterations"),
        ('target = "onnx"\n[quantize]\nprecision = "int4"\n', "precision"),
        ('target = "jetson"\n[export]\nopset = 13\n', "opset"),
        ('target = "tpu"\n', "target"),
        ('target = "openvino"\n[options]\ninference_precision = "bf17"\n', "inference_precision"),
        ('target = "openvino"\n[options]\nfloat_weights = "int4"\n', "float_weights"),
        ('target = "openvino"\n[options]\ndla_core = 0\n', "dla_core"),
        ('target = "onnx"\n[surprise]\n', "surprise"),
        ('target = "onnx"\n[tolerance]\nmax_flip_rate = 2\n', "max_flip_rate"),
        ("target = [", "TOML"),
    ],
)
def test_bad_values_refused(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_profile_file(_write(tmp_path, text))
    assert needle in err.value.message + (err.value.hint or "")


def test_user_profile_file_and_overrides(tmp_path: Path) -> None:
    p = load_profile(str(_write(tmp_path, 'target = "openvino"\n[bench]\nthreads = 1\n')))
    assert p.name == "custom" and p.target == "openvino"
    assert p.options["inference_precision"] == "f32"  # filled from the target's defaults
    q = p.with_overrides(precision="fp16", input_size=96, threads=None)
    assert q.quantize.precision == "fp16" and q.export.input_size == 96 and q.bench.threads == 1
    assert p.quantize.precision == "int8"  # frozen original unchanged
    with pytest.raises(ConfigError):
        p.with_overrides(precision="int3")
    with pytest.raises(ConfigError):
        p.with_overrides(input_size=10)


def test_recipes() -> None:
    r = load_recipe("default")
    assert (r.samples, r.split, r.stratify) == (300, "train", True)
    with pytest.raises(ConfigError) as err:
        load_recipe("nope")
    assert "default" in (err.value.hint or "")


def test_recipe_unknown_key(tmp_path: Path) -> None:
    p = tmp_path / "r.toml"
    p.write_text("samples = 10\nsplt = 'train'\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(str(p))
    assert "splt" in err.value.message


def test_package_list_is_complete() -> None:
    """pyproject lists packages by hand (for the data folders): every package must be there."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "edgevcf").rglob("__init__.py")
    }
    assert found <= listed
    assert {"edgevcf.profiles_data", "edgevcf.recipes_data"} <= listed


def test_profiles_ship_in_the_wheel(tmp_path: Path) -> None:
    """Profiles must be found after a non-editable install: they are inside the wheel."""
    import shutil

    src = tmp_path / "src"  # build from a copy: setuptools writes build/ into the source tree
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("edgevcf", "targets", "calibration"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {proc.stderr[-300:]}")
    (wheel,) = tmp_path.glob("edgevcf-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for toml in (ROOT / "targets").glob("*.toml"):
        assert f"edgevcf/profiles_data/{toml.name}" in names
    assert "edgevcf/recipes_data/default.toml" in names
