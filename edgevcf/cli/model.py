"""``edgevcf train``, ``evaluate`` and ``import-checkpoint``: the FP32 networks.

Thin: parse, call :mod:`edgevcf.train` / :mod:`edgevcf.evaluate` / :mod:`edgevcf.models`, print.
torch is imported inside the commands only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgevcf import console
from edgevcf.cli import echo

if TYPE_CHECKING:
    from torch import nn

    from edgevcf.models import CheckpointMeta

_ARCH_HELP = (
    "Backbone: efficientnet_b0, mobilenet_v3_large, mnasnet1_0 (the study's), mobilenet_v3_small, "
    "mobilenet_v2, mnasnet0_5, efficientnet_b1..b3."
)


@click.command("train")
@click.option("--arch", default="mobilenet_v3_large", show_default=True, help=_ARCH_HELP)
@click.option(
    "--data",
    "manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Manifest CSV with train and val splits (e.g. from `edgevcf data synth`).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Run folder: model.safetensors (best epoch), history.json, resume.pt.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=15, show_default=True)
@click.option(
    "--input-size",
    type=click.IntRange(32, 1024),
    default=None,
    help="Square input size [default: the architecture's, 224 for the study's].",
)
@click.option("--batch-size", type=click.IntRange(min=2), default=32, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True, help="Peak AdamW learning rate.")
@click.option("--weight-decay", type=float, default=0.05, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads for torch [default: all cores].",
)
@click.option(
    "--target-sensitivity",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Choose the threshold for this validation sensitivity instead of Youden's J.",
)
@click.option("--no-augment", is_flag=True, help="Train without augmentation.")
@click.option(
    "--no-cache", is_flag=True, help="Do not cache preprocessed images under ~/.cache/edgevcf."
)
@click.option(
    "--resume", is_flag=True, help="Continue an interrupted run in --out from its last epoch."
)
def train(
    manifest: Path,
    out_dir: Path,
    arch: str,
    epochs: int,
    input_size: int | None,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    device: str,
    threads: int | None,
    target_sensitivity: float | None,
    no_augment: bool,
    no_cache: bool,
    resume: bool,
) -> None:
    """Train a fresh-fracture classifier (one logit) and keep the best epoch by validation AUC.

    AdamW with warm-up and cosine decay, class-balanced loss, augmentation suited to lateral
    radiographs (small rotation/scale, flips left-right, brightness/contrast/gamma, noise), AMP
    on CUDA. The decision threshold is chosen on the validation split. Deterministic for a seed
    on CPU. Several processes or GPUs: `torchrun --nproc_per_node N -m edgevcf train ...`.

    \b
    Example:
      edgevcf train --arch mobilenet_v3_large --data data/manifest.csv --out runs/mnv3
    """
    from edgevcf.train import TrainConfig
    from edgevcf.train import train as run

    cfg = TrainConfig(
        arch=arch,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        input_size=input_size,
        seed=seed,
        device=device,
        threads=threads,
        target_sensitivity=target_sensitivity,
        augment=not no_augment,
        cache=not no_cache,
    )
    console.log_to(out_dir / console.LOG_NAME)
    res = run(manifest, out_dir, cfg, resume=resume)
    if not res.history:
        return  # a non-zero rank of a torchrun job
    echo(
        f"Best epoch {res.best_epoch}: validation AUC {res.best_val_auc:.4f}, threshold "
        f"{res.threshold:.4f}; {res.seconds / 60:.1f} min"
    )
    if res.skipped:
        echo(f"Skipped {len(res.skipped)} unreadable images (see {out_dir / 'history.json'})")
    echo(f"Checkpoint: {res.checkpoint}")


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "--data",
    "manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Manifest CSV with a split column.",
)
@click.option("--split", default="test", show_default=True, help="Split to evaluate.")
@click.option(
    "--readers",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CSV of clinicians' reads (path, reader, call 0/1) to compare with the model.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for metrics.json, report.md and roc.png.",
)
@click.option("--json", "as_json", is_flag=True, help="Also print the metrics JSON on stdout.")
def evaluate(
    checkpoint: Path, manifest: Path, split: str, readers: Path | None, out_dir: Path, as_json: bool
) -> None:
    """Evaluate a checkpoint like the study: AUC with 95 % CI, and accuracy, sensitivity,
    specificity, F1 and precision at the checkpoint's threshold; readers drawn on the ROC.

    \b
    Example:
      edgevcf evaluate runs/mnv3/model.safetensors --data data/manifest.csv --split test --out eval/
    """
    import json

    from edgevcf.evaluate import evaluate as run
    from edgevcf.report import evaluation_markdown, write_evaluation

    res = run(checkpoint, manifest, split=split, readers=readers)
    paths = write_evaluation(res, out_dir)
    if as_json:
        echo(json.dumps(res.to_dict(), indent=2, sort_keys=True))
    else:
        echo(evaluation_markdown(res))
        echo(f"Wrote {paths['json']}, {paths['markdown']}, {paths['roc']}")


@click.command("import-checkpoint")
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--arch", required=True, help=_ARCH_HELP)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Checkpoint to write (.safetensors).",
)
def import_checkpoint(src: Path, arch: str, out: Path) -> None:
    """Import a torchvision state dict (.pt/.pth) as an edgevcf checkpoint.

    Loaded with weights_only=True (no pickled code runs); DataParallel `module.` prefixes are
    stripped; a 2-class softmax head (class 1 = fresh) becomes one exact logit. The threshold
    is 0.5 until you evaluate and re-tune it.

    \b
    Example:
      edgevcf import-checkpoint fold1.pth --arch efficientnet_b0 --out models/effnet.safetensors
    """
    from edgevcf.models import import_state_dict, save_checkpoint

    model, meta = import_state_dict(src, arch)
    path = save_checkpoint(out, model, meta)
    echo(f"Wrote {path} ({arch}, input {meta.preprocess.input_size} px)")


@click.command("import-model")
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--arch", help="For a torch state dict: the zoo backbone it fits. " + _ARCH_HELP)
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="model.toml: the input the network was trained with and what its output means "
    "[SRC.toml beside the model, if present].",
)
@click.option(
    "--check",
    "check_manifest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A manifest: run the reference on its val split, report its AUC, tune its threshold "
    "there (otherwise `export` tunes it on its --calib manifest's val split).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The FP32 reference to write: REF.onnx for an ONNX model, REF.safetensors for torch.",
)
def import_model(
    src: Path, arch: str | None, spec_path: Path | None, check_manifest: Path | None, out: Path
) -> None:
    """Bring a network trained elsewhere in as the FP32 reference every command takes.

    An ONNX classifier (e.g. a Keras model written by tf2onnx): one image input, NCHW or NHWC,
    1 or 3 channels, fixed or dynamic batch; its output one logit, one sigmoid probability,
    two logits or a two-class softmax, as model.toml declares (checked against the graph:
    a contradiction is refused before any work). It is normalised to NCHW in, one logit of
    "fresh" out, exactly, and carries its preprocessing, threshold and provenance (the source
    file's sha256). A torch state dict (.pt/.pth, weights only) with --arch is imported as
    import-checkpoint does. Only the frameworks' safe loaders open the file; no code runs.

    \b
    Examples:
      edgevcf import-model keras.onnx --spec keras.toml --check data/manifest.csv --out ref.onnx
      edgevcf export --target openvino --checkpoint ref.onnx --calib data/manifest.csv
    """
    from edgevcf.errors import ConfigError

    if src.suffix.lower() != ".onnx":
        if not arch:
            raise ConfigError(f"{src.name}: a torch state dict needs --arch (its zoo backbone)")
        from edgevcf.models import import_state_dict, save_checkpoint

        model, meta = import_state_dict(src, arch)
        if check_manifest is not None:
            _check(meta, model, None, check_manifest)
        path = save_checkpoint(out, model, meta)
        echo(f"Wrote {path} ({arch}, input {meta.preprocess.input_size} px, threshold "
             f"{meta.threshold:.4f}: {meta.threshold_method})")  # fmt: skip
        return
    from edgevcf.intake.reference import import_onnx, write_onnx_meta
    from edgevcf.intake.spec import load_model_spec

    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"--out {out.name}: an ONNX model's reference is an .onnx file",
                          hint=f"--out {out.with_suffix('.onnx').name}")  # fmt: skip
    spec_path = spec_path or (src.with_suffix(".toml") if src.with_suffix(".toml").is_file()
                              else None)  # fmt: skip
    if spec_path is None:
        raise ConfigError(
            f"{src.name}: an ONNX model needs its declaration (input size, channels, layout, "
            "scaling, mean/std; output kind)",
            hint=f"write {src.with_suffix('.toml').name} beside it or pass --spec model.toml "
            "(docs: the model.toml section of README's 'Bring your own network')",
        )
    meta = import_onnx(src, load_model_spec(spec_path), out)
    if check_manifest is not None:
        _check(meta, None, out, check_manifest)
        write_onnx_meta(out, meta)
    i = meta.preprocess
    echo(f"Wrote {out} ({meta.arch}: input {i.channels} x {i.input_size} x {i.input_size}, "
         f"threshold {meta.threshold:.4f}: {meta.threshold_method})")  # fmt: skip


def _check(
    meta: CheckpointMeta, model: nn.Module | None, onnx_file: Path | None, manifest: Path
) -> None:
    """``--check``: the reference's AUC on the manifest's val split, threshold tuned there."""
    from edgevcf import progress
    from edgevcf.data.manifest import Manifest
    from edgevcf.intake.reference import tune_threshold

    with progress.step("check the reference on val"):
        r = tune_threshold(meta, model, onnx_file, Manifest.load(manifest))
    a = r["auc"]
    echo(f"Reference on val ({r['n']} films): AUC {a['auc']:.3f} (95 % CI {a['ci_low']:.3f}-"
         f"{a['ci_high']:.3f}); threshold {r['threshold']:.4f} (Youden)")  # fmt: skip
