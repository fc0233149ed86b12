"""The embeddable runtime on real bundles: torch-free, thread-safe, refusing what it must."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from edgevcf import deps
from edgevcf.cli import cli
from edgevcf.data.manifest import Manifest
from edgevcf.errors import BackendUnavailableError, BundleError, ConfigError
from edgevcf.runtime import Predictor, choose_artifact, verify

pytestmark = pytest.mark.requires_onnxruntime


def _images(tiny: Any, n: int) -> list[Path]:
    m = Manifest.load(tiny.manifest)
    return [s.resolve(m.root) for s in m.by_split("test").studies][:n]


def test_predict_needs_no_torch(export_bundle: Any, tiny_export: Any) -> None:
    """A cart has numpy + one engine: prove Predictor never imports torch or a converter."""
    _, bundle = export_bundle("onnx-cpu", "int8")
    image = _images(tiny_export, 1)[0]
    code = textwrap.dedent(
        f"""
        import sys
        for name in ("torch", "torchvision", "nncf", "litert_torch", "onnx"):
            sys.modules[name] = None  # any import of these now fails
        from edgevcf.runtime import Predictor
        p = Predictor.from_bundle({str(bundle.path)!r}).predict({str(image)!r})
        assert 0.0 <= p.probability <= 1.0 and p.model_id
        print("ok", p.probability)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ok")


def test_prediction_matches_export_time_scores(export_bundle: Any, tiny_export: Any) -> None:
    _, bundle = export_bundle("onnx-cpu")
    pred = Predictor.from_bundle(bundle.path)
    golden = bundle.golden()
    z = pred.logits(golden.inputs)
    np.testing.assert_allclose(z, golden.expected["model"].reshape(-1), atol=1e-5)
    p = pred.predict(_images(tiny_export, 1)[0])
    assert p.decision == (p.probability >= bundle.threshold)
    assert p.timings_ms["inference_ms"] > 0 and p.timings_ms["preprocess_ms"] > 0


@pytest.mark.parametrize(("profile", "precision"), [("onnx-cpu", "int8"), ("openvino", None)])
def test_shared_by_eight_threads(
    export_bundle: Any, tiny_export: Any, profile: str, precision: str | None
) -> None:
    if profile == "openvino" and not deps.available("openvino"):
        pytest.skip("needs openvino")
    _, bundle = export_bundle(profile, precision)
    pred = Predictor.from_bundle(bundle.path)
    images = [pred.prepare(p)[0] for p in _images(tiny_export, 4)]
    single = [float(pred.logits(x)[0]) for x in images]

    def work(k: int) -> list[float]:
        return [float(pred.logits(images[(k + i) % 4])[0]) for i in range(60)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(8)))
    for k, got in enumerate(results):
        assert got == [single[(k + i) % 4] for i in range(60)]


def test_refused_image_does_not_stop_the_others(
    export_bundle: Any, tiny_export: Any, tmp_path: Path
) -> None:
    _, bundle = export_bundle("onnx-cpu")
    bad = tmp_path / "truncated.png"
    good = _images(tiny_export, 2)
    bad.write_bytes(good[0].read_bytes()[:200])
    colour = tmp_path / "colour.png"
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 10, 10)).save(colour)
    pred = Predictor.from_bundle(bundle.path)
    res = pred.predict_many([good[0], bad, colour, good[1]])
    assert [r.status for r in res] == ["ok", "refused", "refused", "ok"]
    assert all(r.decision is None and r.reason for r in res[1:3])
    one = pred.predict_many([good[0], bad, colour, good[1]], workers=1)  # the same, in order
    assert [(r.status, r.probability, r.reason) for r in one] == [
        (r.status, r.probability, r.reason) for r in res
    ]
    out = CliRunner().invoke(
        cli, ["--quiet", "predict", str(bundle.path), str(good[0]), str(bad), "--json"]
    )
    assert out.exit_code == 5
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [x["status"] for x in lines] == ["ok", "refused"]


def test_verify_passes_then_refuses_a_tampered_copy(export_bundle: Any, tmp_path: Path) -> None:
    _, bundle = export_bundle("jetson")
    res = verify(bundle.path)
    assert res.passed and res.checks[0].max_abs_logit_diff == 0.0
    out = CliRunner().invoke(cli, ["--quiet", "verify", str(bundle.path)])
    assert out.exit_code == 0 and "pass" in out.output
    copy = tmp_path / "copy"
    shutil.copytree(bundle.path, copy)
    model = copy / "model.qdq.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x40
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 mismatch"):
        verify(copy)
    out = CliRunner().invoke(cli, ["--quiet", "verify", str(copy)])
    assert out.exit_code == 7


def test_choose_artifact(export_bundle: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, bundle = export_bundle("onnx-cpu")
    assert choose_artifact(bundle).name == "model"
    assert choose_artifact(bundle, "onnxruntime").name == "model"
    with pytest.raises(ConfigError, match="no openvino artefact"):
        choose_artifact(bundle, "openvino")
    with pytest.raises(ConfigError, match="unknown backend"):
        choose_artifact(bundle, "cuda")
    monkeypatch.setattr("edgevcf.runtime.runnable", lambda runtime: False)
    with pytest.raises(BackendUnavailableError) as err:
        choose_artifact(bundle)
    assert "onnxruntime" in (err.value.hint or "")


def test_engine_failure_mid_run_names_the_image(export_bundle: Any, tiny_export: Any) -> None:
    _, bundle = export_bundle("onnx-cpu")
    pred = Predictor.from_bundle(bundle.path)
    images = _images(tiny_export, 3)
    poison = pred.prepare(images[1])[0]
    real_run = pred.backend.run

    def flaky(x: np.ndarray) -> np.ndarray:
        if any(np.array_equal(row, poison[0]) for row in x):
            raise RuntimeError("device lost")
        return real_run(x)

    pred.backend.run = flaky  # type: ignore[method-assign]
    res = pred.predict_many(images, batch_size=8)
    assert [r.status for r in res] == ["ok", "error", "ok"]
    assert "device lost" in res[1].reason and res[1].decision is None
