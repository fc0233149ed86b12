"""`edgevcf demo`: end to end on a tiny setting, and re-runs reuse only what is unchanged."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgevcf import demo

pytestmark = [pytest.mark.requires_onnxruntime, pytest.mark.requires_torch]


def test_demo_builds_then_reuses_and_rebuilds_on_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "DEMO_TARGETS", (("onnx-cpu-int8", "onnx-cpu", "int8"),))
    cfg = demo.DemoConfig(
        patients=40,
        epochs=1,
        arch="mobilenet_v3_small",
        input_size=64,
        test=0.15,
        calibration="small",
        fallback=False,
        site_patients=16,
    )
    first = demo.run_demo(tmp_path, cfg)
    assert first.reused == []
    assert first.verify == {"onnx-cpu-int8": True}
    assert first.report_paths["markdown"].is_file()
    assert first.report["accuracy"]["split"] == "test"
    # the clinic step ran: a validation report, or the site's "no" said as such (a tiny model)
    assert first.clinic is not None
    assert "error" in first.clinic or first.clinic_paths["json"].is_file()

    cfg = dataclasses.replace(cfg, site_patients=0)  # the clinic step once is enough
    again = demo.run_demo(tmp_path, cfg)
    assert again.reused == ["data", "training", "bundle onnx-cpu-int8"]
    assert again.clinic is None

    changed = demo.run_demo(tmp_path, dataclasses.replace(cfg, epochs=2))
    assert changed.reused == ["data"]  # new training config -> new model -> new bundle
    assert changed.checkpoint == first.checkpoint  # same place, rebuilt content

    resplit = demo.run_demo(tmp_path, dataclasses.replace(cfg, epochs=2, test=0.2))
    assert "data" not in resplit.reused  # other split fractions -> other data


def test_default_demo_is_sized_for_a_decidable_claim() -> None:
    """The default must give >= 250 test images (non-inferiority at 0.01 is decidable there)."""
    from edgevcf.data.synth import SynthConfig

    cfg = demo.DemoConfig()
    p_films = SynthConfig.fast().images_per_patient  # P(1 film), P(2), P(3)
    images_per_patient = sum((k + 1) * p for k, p in enumerate(p_films))
    assert cfg.patients * cfg.test * images_per_patient >= 250
    assert not cfg.quick and demo.DemoConfig.quick_run().quick
