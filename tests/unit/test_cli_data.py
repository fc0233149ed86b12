"""Tests for ``edgevcf data split`` and ``edgevcf data check`` through the root CLI group."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from edgevcf.cli import cli
from edgevcf.data.manifest import Manifest
from edgevcf.errors import ConfigError, DataError


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["--quiet", *map(str, args)])


def write_dataset(folder: Path, n_patients: int = 30, garbage: tuple[int, ...] = ()) -> Path:
    """A folder of real 8-bit PNGs (two per patient) and its unsplit manifest."""
    (folder / "img").mkdir(parents=True)
    lines = ["path,patient_id,label,view"]
    for p in range(n_patients):
        for view in ("lat", "ap"):
            name = f"img/p{p:02d}_{view}.png"
            if p in garbage and view == "lat":
                (folder / name).write_bytes(b"\x89PNG but not really")
            else:
                Image.fromarray(np.full((6, 5), 10 * p % 256, dtype=np.uint8)).save(folder / name)
            lines.append(f"{name},P{p:02d},{int(p % 3 == 0)},{view}")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def assert_clean_error(result: Result, exit_code: int) -> None:
    assert result.exit_code == exit_code, result.output
    assert "Error:" in result.stderr
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- help and imports


def test_help_texts() -> None:
    result = run("data", "--help")
    assert result.exit_code == 0
    assert "Datasets: synthesise, split and check manifests." in result.output
    for command, fragments in {
        "split": ["by patient", "[default: 0.15]", "--in-place", ".split.csv", "Examples"],
        "check": ["--no-read", "--json", "leakage", "Examples"],
    }.items():
        out = run("data", command, "--help").output
        for fragment in fragments:
            assert fragment in out, (command, fragment)


def test_data_group_import_is_light() -> None:
    code = (
        "import sys, edgevcf.cli.data; "
        "assert 'edgevcf.data.manifest' not in sys.modules; assert 'numpy' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- split


def test_split_writes_default_file_and_reports_counts(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path)
    result = run("data", "split", manifest, "--seed", "2")
    assert result.exit_code == 0, result.output
    out = tmp_path / "manifest.split.csv"
    assert f"Wrote {out}" in result.output
    for name in ("train", "val", "test", "all"):
        assert name in result.output
    split = Manifest.load(out)
    assert split.check_leakage() == {}
    assert split.splits() == ["train", "val", "test"]
    assert [s.extra["view"] for s in split][:2] == ["lat", "ap"]
    assert split == Manifest.load(manifest).split_by_patient(seed=2)
    assert "split" not in manifest.read_text().splitlines()[0]  # input untouched


def test_split_out_and_in_place(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path)
    out = tmp_path / "sub" / "s.csv"
    assert (
        run("data", "split", manifest, "--out", out, "--val", "0.2", "--test", "0.1").exit_code == 0
    )
    assert Manifest.load(out).studies[0].resolve(Manifest.load(out).root).is_file()
    result = run("data", "split", manifest, "--in-place")
    assert result.exit_code == 0, result.output
    assert Manifest.load(manifest).splits() == ["train", "val", "test"]
    again = run("data", "split", manifest, "--in-place", "--seed", "1")
    assert "replacing the existing split" in again.stderr


def test_split_errors_are_clean(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path, n_patients=5)
    assert_clean_error(
        run("data", "split", manifest, "--out", tmp_path / "x.csv", "--in-place"),
        ConfigError.exit_code,
    )
    result = run("data", "split", manifest, "--val", "0.6", "--test", "0.5")
    assert_clean_error(result, ConfigError.exit_code)
    assert "below 1" in result.stderr
    assert_clean_error(run("data", "split", tmp_path / "missing.csv"), DataError.exit_code)


def test_bad_manifest_error_names_row(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("path,patient_id,label\na.png,P1,1\nb.png,P2,maybe\n")
    for command in ("split", "check"):
        result = run("data", command, bad)
        assert_clean_error(result, DataError.exit_code)
        assert "row 2 (line 3), column 'label'" in result.stderr


# --------------------------------------------------------------------------- check


def test_check_clean_dataset(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path, n_patients=12)
    assert run("data", "split", manifest).exit_code == 0
    result = run("data", "check", tmp_path / "manifest.split.csv")
    assert result.exit_code == 0, result.output
    assert "Leakage: none" in result.output
    assert "all 24 readable" in result.output
    assert "pos %" in result.output
    assert "Fingerprint:" in result.output


def test_check_unassigned_no_read(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path, n_patients=4)
    result = run("data", "check", manifest, "--no-read")
    assert result.exit_code == 0, result.output
    assert "unassigned" in result.output
    assert "edgevcf data split" in result.output
    assert "not read" in result.output


def test_check_lists_every_unreadable_file(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path, n_patients=10, garbage=(1, 4, 7))
    (tmp_path / "img" / "p09_ap.png").unlink()
    result = run("data", "check", manifest)
    assert_clean_error(result, DataError.exit_code)
    for name in ("p01_lat", "p04_lat", "p07_lat", "p09_ap"):
        assert f"img/{name}.png (patient P{name[1:3]})" in result.stdout
    assert "4 of 20 missing or unreadable" in result.stdout
    assert "4 of 20 image(s)" in result.stderr
    assert "hint:" in result.stderr


def test_check_leakage_fails_with_hint(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,patient_id,label,split\na.png,P1,1,train\nb.png,P1,1,test\nc.png,P2,0,val\n"
    )
    result = run("data", "check", manifest, "--no-read")
    assert_clean_error(result, DataError.exit_code)
    assert "P1: train, test" in result.stdout
    assert "re-split with `edgevcf data split`" in result.stderr


def test_check_json(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path, n_patients=6, garbage=(2,))
    result = run("data", "check", manifest, "--json")
    assert result.exit_code == DataError.exit_code
    summary = json.loads(result.stdout)  # stdout is pure JSON even when the check fails
    assert summary["ok"] is False
    assert summary["studies"] == 12
    assert summary["patients"] == 6
    assert summary["files_checked"] is True
    assert [u["path"] for u in summary["unreadable"]] == ["img/p02_lat.png"]
    assert summary["leakage"] == {}
    everything = summary["splits"]["all"]
    assert everything["images"] == 12
    assert everything["by_label"]["1"] == {"images": 4, "patients": 2}
    assert everything["prevalence_patients"] == pytest.approx(2 / 6)
    assert summary["fingerprint"] == Manifest.load(manifest).fingerprint()
