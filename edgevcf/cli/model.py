"""``edgevcf train``, ``evaluate`` and ``import-model`` (``import-checkpoint``): the FP32 networks.

Thin: parse, call :mod:`edgevcf.train` / :mod:`edgevcf.evaluate` / :mod:`edgevcf.models`, print.
torch is imported inside the commands only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgevcf import console
from edgevcf.cli import echo

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from edgevcf.data.preprocess import Preprocess
    from edgevcf.models import CheckpointMeta

_ARCH_HELP = (
    "Backbone: efficientnet_b0, mobilenet_v3_large, mnasnet1_0 (the study's), mobilenet_v3_small, "
    "mobilenet_v2, mnasnet0_5, efficientnet_b1..b3; or timm:NAME, any timm model (pip install "
    "'edgevcf[timm]')."
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


_IMPORT_HELP = """Bring a network trained elsewhere in as the FP32 reference every command takes.

    \b
    What SRC may be (told by its content):
      ONNX         e.g. a Keras model written by tf2onnx; NCHW or NHWC, 1 or 3 channels,
                   fixed or dynamic batch              -> REF.onnx (normalised graph)
      TorchScript  torch.jit.save                      -> REF.pt
      .pt2         torch.export.save                   -> REF.pt2
      state dict   torch.save(model.state_dict()) or .safetensors, with --arch (a zoo backbone
                   or timm:NAME); a replaced head declared in model.toml [head], a one-channel
                   stem as [input] channels = 1        -> REF.safetensors

    model.toml (--spec, or SRC.toml beside the model) declares the input the network was
    trained with (size, channels, layout, scaling, mean/std) and what its output means (one
    logit, one probability, two logits or a two-class softmax, and which class is fresh); it is
    checked against the network and a contradiction refused before any work. The output becomes
    one logit of "fresh", exactly. The reference carries its preprocessing, threshold and
    provenance (the source file's sha256) and is compared with the original network after
    writing. Only the frameworks' own loaders open the file (onnx.load, torch.jit.load,
    torch.export.load, weights-only state dicts): no pickled code runs.

    \b
    Examples:
      edgevcf import-model keras.onnx --spec keras.toml --check data/manifest.csv --out ref.onnx
      edgevcf import-model fold1.pth --arch timm:efficientnet_b0 --out ref.safetensors
      edgevcf export --target openvino --checkpoint ref.onnx --calib data/manifest.csv
    """


def _import_options(f: Any) -> Any:
    for opt in reversed((
        click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path)),
        click.option("--arch", help="For a state dict: the backbone it fits. " + _ARCH_HELP),
        click.option("--spec", "spec_path",
                     type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="model.toml: the input the network was trained with and what its "
                     "output means [SRC.toml beside the model, if present]."),
        click.option("--check", "check_manifest",
                     type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="A manifest: run the reference on its val split, report its AUC, tune "
                     "its threshold there (otherwise `export` tunes it on its --calib "
                     "manifest's val split)."),
        click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
                     help="The FP32 reference to write: .onnx for ONNX, .pt for TorchScript, "
                     ".pt2 for torch.export, .safetensors for a state dict."),
    )):  # fmt: skip
        f = opt(f)
    return f


def _import(
    src: Path, arch: str | None, spec_path: Path | None, check_manifest: Path | None, out: Path
) -> None:
    from edgevcf import progress
    from edgevcf.intake.importer import import_model as run
    from edgevcf.intake.reference import write_reference_meta

    sample = None
    if check_manifest is not None:  # the parity check on real films

        def sample(p: Preprocess) -> np.ndarray:
            from edgevcf.data.manifest import Manifest
            from edgevcf.dataset import load_split

            return load_split(Manifest.load(check_manifest), "val", p, desc="preprocess val").units

    with progress.step(f"import {src.name}"):
        imp = run(src, out, arch=arch, spec_path=spec_path, sample=sample)
    if check_manifest is not None:
        _check(imp.meta, imp.model, imp.onnx_file, check_manifest)
        write_reference_meta(out, imp.meta, imp.model)
    i = imp.meta.preprocess
    echo(f"Wrote {out} ({imp.meta.arch}: input {i.channels} x {i.input_size} x {i.input_size}, "
         f"threshold {imp.meta.threshold:.4f}: {imp.meta.threshold_method}; matches the "
         f"original to {imp.parity_max_abs:.1e} in logit)")  # fmt: skip


@click.command("import-model", help=_IMPORT_HELP)
@_import_options
def import_model(
    src: Path, arch: str | None, spec_path: Path | None, check_manifest: Path | None, out: Path
) -> None:
    _import(src, arch, spec_path, check_manifest, out)


@click.command("import-checkpoint", help="The same as import-model (its former name).\n\n"
               + _IMPORT_HELP)  # fmt: skip
@_import_options
def import_checkpoint(
    src: Path, arch: str | None, spec_path: Path | None, check_manifest: Path | None, out: Path
) -> None:
    _import(src, arch, spec_path, check_manifest, out)


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
