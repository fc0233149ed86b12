"""Bring your own network, the ONNX way in (issue 26): a trained classifier written as tf2onnx
writes a Keras model — NHWC input, two-class softmax output — imported with its declaration,
checked on the val split (its threshold tuned there, never 0.5), exported to a target and
verified, with its provenance in the bundle; a wrong declaration refused before any work.

The foreign model is the tiny trained network of ``tests/conftest.py`` wrapped the Keras way
and written by torch's ONNX exporter (:func:`edgevcf.testing.foreign.keras_onnx`), so the gates
are measured on a model that has learned.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from edgevcf import deps
from edgevcf.cli import cli

pytestmark = pytest.mark.skipif(
    bool(deps.missing("torch", "onnx", "onnxruntime")), reason="needs torch, onnx, onnxruntime"
)


@pytest.fixture(scope="module")
def keras_style(tiny_export: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny network as a Keras classifier in ONNX (NHWC in, softmax over 2 classes out),
    its keras.toml beside it."""
    from edgevcf.models import load_checkpoint
    from edgevcf.testing.foreign import keras_onnx

    model, meta = load_checkpoint(tiny_export.checkpoint)
    folder = tmp_path_factory.mktemp("byo")
    src, toml = keras_onnx(model, meta.preprocess, folder / "keras.onnx")
    return {"src": src, "toml": toml, "folder": folder, "meta": meta}


def test_a_keras_style_onnx_model_is_imported_exported_and_verified(
    keras_style: dict[str, Any], tiny_export: Any
) -> None:
    from edgevcf.bundle import Bundle
    from edgevcf.hashing import sha256_file
    from edgevcf.intake.reference import read_onnx_meta

    folder, src = keras_style["folder"], keras_style["src"]
    ref = folder / "ref.onnx"
    run = CliRunner().invoke(cli, ["import-model", str(src), "--check",
                                   str(tiny_export.manifest), "--out", str(ref)])  # fmt: skip
    assert run.exit_code == 0, run.output
    assert "Reference on val" in run.output and "AUC" in run.output
    meta = read_onnx_meta(ref)
    assert meta.threshold_method.startswith("youden on val")
    # the same network as its torch checkpoint: the same AUC on val (same films, same scores
    # up to the two runtimes' rounding)
    import copy

    from edgevcf.data.manifest import Manifest
    from edgevcf.intake.reference import tune_threshold
    from edgevcf.models import load_checkpoint

    model, torch_meta = load_checkpoint(tiny_export.checkpoint)
    torch_val = tune_threshold(copy.deepcopy(torch_meta), model, None,
                               Manifest.load(tiny_export.manifest))  # fmt: skip
    got = meta.metrics["reference_val"]["auc"]["auc"]
    assert got == pytest.approx(torch_val["auc"]["auc"], abs=1e-3)
    out = folder / "bundle"
    # `export --onnx` alone imports the foreign file itself (its .toml beside it)
    run = CliRunner().invoke(
        cli,
        [
            "export",
            "--target",
            "onnx-cpu",
            "--onnx",
            str(src),
            "--calib",
            str(tiny_export.manifest),
            "--out",
            str(out),
        ],
    )
    assert run.exit_code in (0, 4), run.output  # 4: written, gate failed (tiny data)
    bundle = Bundle.load(out)
    m = bundle.manifest
    assert m["checkpoint"]["imported_from"]["sha256"] == sha256_file(src)
    assert m["metrics"]["reference"].startswith("ONNX Runtime")
    assert bundle.threshold == pytest.approx(meta.threshold, abs=1e-6)  # tuned at export alike
    assert "tuned at export" in m["threshold"]["method"]
    run = CliRunner().invoke(cli, ["verify", str(out)])
    assert run.exit_code == 0, run.output
    run = CliRunner().invoke(cli, ["evaluate", str(ref), "--data", str(tiny_export.manifest),
                                   "--split", "test", "--out", str(folder / "eval")])  # fmt: skip
    assert run.exit_code == 0, run.output  # evaluate takes the reference like a checkpoint
    assert json.loads((folder / "eval" / "metrics.json").read_text())["arch"] == "onnx:keras"


def test_a_wrong_declaration_is_refused_before_any_work(
    keras_style: dict[str, Any], tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(keras_style["toml"].read_text().replace('"NHWC"', '"NCHW"'))
    ref = tmp_path / "ref.onnx"
    run = CliRunner().invoke(cli, ["import-model", str(keras_style["src"]), "--spec", str(wrong),
                                   "--out", str(ref)])  # fmt: skip
    assert run.exit_code != 0
    assert "NHWC; you declared layout = 'NCHW'" in run.output
    assert 'declare layout = "NHWC"' in run.output and "Traceback" not in run.output
    assert not ref.exists()
    alone = tmp_path / "alone.onnx"
    alone.write_bytes(keras_style["src"].read_bytes())
    run = CliRunner().invoke(cli, ["import-model", str(alone), "--out", str(ref)])
    assert run.exit_code != 0 and "needs its declaration" in run.output


def test_an_untuned_reference_gets_its_threshold_at_export_and_never_qat(
    keras_style: dict[str, Any], tiny_export: Any, tmp_path: Path, profile_for: Any
) -> None:
    from edgevcf.errors import ConfigError
    from edgevcf.export import export_bundle as run_export
    from edgevcf.intake.reference import import_onnx, read_onnx_meta
    from edgevcf.intake.spec import load_model_spec
    from edgevcf.targets import get_target

    small_profile = profile_for

    ref = tmp_path / "ref.onnx"
    import_onnx(keras_style["src"], load_model_spec(keras_style["toml"]), ref)
    assert read_onnx_meta(ref).threshold == 0.5  # untuned so far
    res = run_export(get_target("onnx"), ref, small_profile("onnx-cpu"), tiny_export.manifest,
                     tmp_path / "b")  # fmt: skip
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert "tuned at export" in man["threshold"]["method"] and man["threshold"]["value"] != 0.5
    assert res.fp32_auc is not None and np.isfinite(res.fp32_auc)
    import dataclasses

    prof = small_profile("openvino")
    prof = dataclasses.replace(prof, quantize=dataclasses.replace(prof.quantize, qat=True))
    if deps.available("openvino") and deps.available("nncf"):
        with pytest.raises(ConfigError, match="quantisation-aware training"):
            run_export(get_target("openvino"), ref, prof, tiny_export.manifest, tmp_path / "c")
