"""Training, evaluation and reports on a tiny synthetic set (mechanics, not accuracy).

Accuracy is never asserted here: a few images and two epochs teach a network nothing. What is
checked is what a 30-minute run relies on: determinism, resuming, skipping unreadable images,
refusing unusable splits, the checkpoint's contents, and the evaluation outputs.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgevcf.data.manifest import Manifest
from edgevcf.errors import ConfigError, DataError

pytestmark = pytest.mark.requires_torch
torch = pytest.importorskip("torch")

from edgevcf.models import load_checkpoint  # noqa: E402
from edgevcf.train import TrainConfig, train  # noqa: E402

TINY = {"arch": "mobilenet_v3_small", "input_size": 64, "batch_size": 8, "epochs": 2, "threads": 1}


@pytest.fixture(scope="module")
def tiny_run(synth_fast_dataset, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("run")
    return train(synth_fast_dataset.manifest, out, TrainConfig(**TINY))


def _weights(path: Path) -> dict[str, np.ndarray]:
    model, _ = load_checkpoint(path)
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_run_writes_a_self_describing_checkpoint(tiny_run, synth_fast_dataset) -> None:
    _, meta = load_checkpoint(tiny_run.checkpoint)
    assert meta.arch == "mobilenet_v3_small" and meta.preprocess.input_size == 64
    assert meta.threshold_method.startswith("youden") and 0.0 <= meta.threshold <= 1.0
    assert meta.train_config["epochs"] == 2 and meta.seed == 0
    assert meta.data_fingerprint == Manifest.load(synth_fast_dataset.manifest).fingerprint()
    assert meta.metrics["split"] == "val" and "auc" in meta.metrics
    hist = json.loads((tiny_run.checkpoint.parent / "history.json").read_text())
    assert [h["epoch"] for h in hist["history"]] == [1, 2]
    assert tiny_run.best_epoch in (1, 2)


def test_same_seed_same_weights_on_cpu(synth_fast_dataset, tmp_path: Path, tiny_run) -> None:
    again = train(synth_fast_dataset.manifest, tmp_path, TrainConfig(**TINY))
    a, b = _weights(tiny_run.checkpoint), _weights(again.checkpoint)
    assert tiny_run.best_epoch == again.best_epoch
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_resume_after_an_interruption_equals_an_uninterrupted_run(
    synth_fast_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgevcf.train as tr

    cfg = TrainConfig(**{**TINY, "epochs": 2})
    whole = train(synth_fast_dataset.manifest, tmp_path / "whole", cfg)

    calls = {"n": 0}
    real = tr.augment

    def crash_in_epoch_two(x, gen):
        calls["n"] += 1
        if calls["n"] > batches_per_epoch:
            raise KeyboardInterrupt
        return real(x, gen)

    n_train = len(Manifest.load(synth_fast_dataset.manifest).by_split("train").studies)
    batches_per_epoch = -(-n_train // TINY["batch_size"])
    monkeypatch.setattr(tr, "augment", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(synth_fast_dataset.manifest, tmp_path / "split", cfg)
    monkeypatch.setattr(tr, "augment", real)
    resumed = train(synth_fast_dataset.manifest, tmp_path / "split", cfg, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    a = torch.load(tmp_path / "whole" / "resume.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / "resume.pt", weights_only=True)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert whole.best_epoch == resumed.best_epoch


def test_unreadable_images_are_skipped_with_reasons(synth_fast_dataset, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(synth_fast_dataset.out_dir, data)
    m = Manifest.load(data / "manifest.csv")
    victim = m.by_split("train").studies[0]
    (data / victim.path).write_bytes(b"not an image at all")
    res = train(data / "manifest.csv", tmp_path / "run", TrainConfig(**{**TINY, "epochs": 1}))
    assert len(res.skipped) == 1 and res.skipped[0][0] == victim.path
    assert "history.json" in {p.name for p in (tmp_path / "run").iterdir()}


def test_a_split_with_one_class_is_refused(synth_fast_dataset, tmp_path: Path) -> None:
    m = Manifest.load(synth_fast_dataset.manifest)
    rows = [s for s in m.studies if not (s.split == "val" and s.label == 1)]
    Manifest(rows, root=m.root).save(tmp_path / "m.csv")
    shutil.copytree(synth_fast_dataset.out_dir / "images", tmp_path / "images")
    with pytest.raises(DataError, match="no positive"):
        train(tmp_path / "m.csv", tmp_path / "run", TrainConfig(**TINY))


def test_bad_settings_are_refused_before_reading_images(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="batch"):
        train(tmp_path / "none.csv", tmp_path, TrainConfig(batch_size=1))
    with pytest.raises(ConfigError, match="unknown architecture"):
        train(tmp_path / "none.csv", tmp_path, TrainConfig(arch="vgg16"))


def test_augmentation_keeps_range_shape_and_orientation() -> None:
    from edgevcf.train import augment

    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(16, 32, 32)
    x[:, :8, :] = 1.0  # bright top band: must stay near the top (no vertical flips)
    y = augment(x, gen)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert bool((y[:, :6].mean(dim=(1, 2)) > y[:, -6:].mean(dim=(1, 2))).all())


def test_evaluate_writes_json_markdown_roc_and_compares_readers(
    tiny_run, synth_fast_dataset, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from edgevcf.cli import cli

    m = Manifest.load(synth_fast_dataset.manifest)
    val = m.by_split("train").studies  # the tiny set's val split is too small for a DeLong CI
    reads = tmp_path / "reads.csv"
    with open(reads, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "reader", "call"])
        for s in val:
            w.writerow([s.path, "senior", s.label])  # a perfect reader
            w.writerow([s.path, "junior", 1])
    out = tmp_path / "eval"
    r = CliRunner().invoke(
        cli,
        [
            "-q",
            "evaluate",
            str(tiny_run.checkpoint),
            "--data",
            str(synth_fast_dataset.manifest),
            "--split",
            "train",
            "--readers",
            str(reads),
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    report = json.loads((out / "metrics.json").read_text())
    assert report["n"] == len(val) and 0 <= report["auc"]["auc"] <= 1
    senior = next(x for x in report["readers"] if x["name"] == "senior")
    assert (
        senior["metrics"]["sensitivity"]["value"] == 1.0
        and senior["metrics"]["specificity"]["value"] == 1.0
    )
    assert any("trained on" in n for n in report["notes"])
    md = (out / "report.md").read_text()
    assert "| AUC (95 % CI) |" in md and "reader senior" in md
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_train_help_documents_torchrun() -> None:
    from click.testing import CliRunner

    from edgevcf.cli import cli

    text = CliRunner().invoke(cli, ["train", "--help"]).output
    assert "torchrun" in text and "--target-sensitivity" in text and "--resume" in text


def test_torchrun_ddp_with_gloo_on_cpu(synth_fast_dataset, tmp_path: Path) -> None:
    """Two CPU processes under torchrun (gloo) train one epoch and write one checkpoint."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "edgevcf",
        "-q",
        "train",
        "--arch",
        "mobilenet_v3_small",
        "--input-size",
        "64",
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--data",
        str(synth_fast_dataset.manifest),
        "--out",
        str(tmp_path / "ddp"),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    _, meta = load_checkpoint(tmp_path / "ddp" / "model.safetensors")
    assert meta.arch == "mobilenet_v3_small"
    hist = json.loads((tmp_path / "ddp" / "history.json").read_text())
    assert len(hist["history"]) == 1


def test_bn_recalibration_revives_eval_mode_outputs() -> None:
    """Slow BN momentum leaves eval-mode logits ~1e-9 apart; recalibration fixes that."""
    from edgevcf.models import build_model, get_spec, normalise
    from edgevcf.train import recalibrate_bn

    torch.manual_seed(0)
    model = build_model("mnasnet0_5")  # BN momentum 0.0003: the worst case
    spec = get_spec("mnasnet0_5").default_preprocess(input_size=64)
    units = np.random.default_rng(0).random((64, 64, 64)).astype(np.float32)
    x = normalise(torch.from_numpy(units[:16]), spec)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # a few training-mode steps, as after a short run
            model(x)
    model.eval()
    with torch.no_grad():
        before = model(x).std().item()
    recalibrate_bn(model, units, spec)
    with torch.no_grad():
        after = model(x).std().item()
    assert not model.training
    assert after > 1000 * before
    momenta = {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert None not in momenta  # the layers' own momentum is restored


def test_preprocessed_cache_is_reused_and_invalidated_by_a_changed_image(
    synth_fast_dataset, tmp_path: Path
) -> None:
    import os

    from edgevcf.dataset import load_split
    from edgevcf.models import get_spec

    data = tmp_path / "data"
    shutil.copytree(synth_fast_dataset.out_dir, data)
    m = Manifest.load(data / "manifest.csv")
    spec = get_spec("mobilenet_v3_small").default_preprocess(input_size=64)
    cache = tmp_path / "cache"
    first = load_split(m, "val", spec, cache_dir=cache)
    assert len(list(cache.iterdir())) == 1
    again = load_split(m, "val", spec, cache_dir=cache)
    np.testing.assert_array_equal(first.units, again.units)
    assert len(list(cache.iterdir())) == 1  # reused
    victim = data / m.by_split("val").studies[0].path
    os.utime(victim, ns=(0, 0))  # a re-exported image: new stamp, new key
    load_split(m, "val", spec, cache_dir=cache)
    assert len(list(cache.iterdir())) == 2
