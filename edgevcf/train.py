"""Training loop: AdamW, warm-up + cosine, class-balanced loss, radiograph-sane augmentation.

Images come through the one numpy preprocessing (cached in its ``to_unit`` form by
:mod:`edgevcf.dataset`); augmentation happens on those [0, 1] images in torch, batched, and
:meth:`Preprocess.normalise` semantics finish them, so a deployed model sees exactly what
training saw minus the augmentation. The best epoch by validation AUC is kept; its decision
threshold is chosen on the validation split (Youden, or a target sensitivity). Deterministic
for a seed on CPU; resumable; ``torchrun`` DDP (gloo on CPU, nccl on CUDA) shards the batches.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevcf import metrics, progress
from edgevcf.data.manifest import Manifest
from edgevcf.dataset import SplitData, load_split
from edgevcf.deps import require
from edgevcf.errors import ConfigError, DataError
from edgevcf.models import (
    CheckpointMeta,
    build_model,
    get_spec,
    normalise,
    predict,
    save_checkpoint,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgevcf.data.preprocess import Preprocess

log = logging.getLogger(__name__)

#: Training images whose batch statistics become the BN running statistics before validation.
BN_RECALIBRATION_IMAGES = 320


@dataclass
class TrainConfig:
    """Settings of one training run (recorded in the checkpoint)."""

    arch: str = "mobilenet_v3_large"
    epochs: int = 15
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    input_size: int | None = None  # default: the architecture's
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    target_sensitivity: float | None = None  # else Youden
    augment: bool = True
    threads: int | None = None
    train_split: str = "train"
    val_split: str = "val"
    cache: bool = True

    def validate(self) -> None:
        """Refuse settings that cannot work, before any image is read."""
        get_spec(self.arch)
        problems = []
        if self.epochs < 1:
            problems.append("epochs must be >= 1")
        if self.batch_size < 2:
            problems.append("batch size must be >= 2 (batch norm)")
        if not 0 < self.lr < 1:
            problems.append("lr must be in (0, 1)")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append("device must be auto, cpu or cuda")
        if self.target_sensitivity is not None and not 0 < self.target_sensitivity <= 1:
            problems.append("target sensitivity must be in (0, 1]")
        if problems:
            raise ConfigError("invalid training settings: " + "; ".join(problems))


@dataclass
class TrainResult:
    """What a run produced."""

    checkpoint: Path
    best_epoch: int
    best_val_auc: float
    threshold: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _device(name: str) -> torch.device:
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda asked for, but torch sees no CUDA GPU", hint="use --device cpu"
        )
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def augment(units: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Lateral-radiograph augmentation on (N, S, S) [0, 1] images.

    Small rotation (+-7 deg) and scale (0.9-1.1), shifts (+-4 %), horizontal flip (patients face
    either way), brightness/contrast/gamma, and noise. No vertical flip: the spine has an up.
    """
    import torch
    from torch.nn import functional as F  # noqa: N812 (torch convention)

    n = units.shape[0]
    dev = units.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=gen, device="cpu").to(dev) * (hi - lo) + lo

    ang = u(-7, 7) * math.pi / 180
    scale = u(0.9, 1.1)
    flip = torch.where(u(0, 1) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, u(-0.04, 0.04)], 1),
            torch.stack([sin * flip, cos, u(-0.04, 0.04)], 1),
        ],
        1,
    )
    x = units.unsqueeze(1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).squeeze(
        1
    )
    contrast, bright = u(0.85, 1.15)[:, None, None], u(-0.08, 0.08)[:, None, None]
    gamma = u(0.8, 1.25)[:, None, None]
    x = ((x - 0.5) * contrast + 0.5 + bright).clamp(0, 1) ** gamma
    sigma = u(0.0, 0.015)[:, None, None]
    noise = torch.randn(x.shape, generator=gen, device="cpu").to(dev)
    return (x + sigma * noise).clamp(0, 1)


def recalibrate_bn(
    model: nn.Module,
    units: np.ndarray,
    spec: Preprocess,
    *,
    device: torch.device | str = "cpu",
    images: int = BN_RECALIBRATION_IMAGES,
    batch_size: int = 32,
) -> None:
    """Re-estimate batch-norm running statistics as exact averages over training images.

    torchvision's MobileNetV3 (momentum 0.01) and MNASNet (0.0003) update their running
    statistics so slowly that after a short run they still describe the random initialisation:
    the eval-mode network then outputs near-constant logits (~1e-9 apart) and validation AUC is
    meaningless. Averaging fresh statistics (momentum None) over un-augmented training images
    fixes that without touching the weights; the layers' own momentum is restored afterwards.
    """
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    n = min(len(units), images)
    with torch.no_grad():
        for i in range(0, n, batch_size):
            x = torch.from_numpy(np.asarray(units[i : i + batch_size], dtype=np.float32)).to(device)
            if len(x) > 1:
                model(normalise(x, spec))
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    model.train(was_training)


def _check_classes(data: SplitData, split: str) -> None:
    if len(data) == 0:
        raise DataError(f"no readable images in split {split!r}")
    if data.n_pos in (0, len(data)):
        kind = "positive" if data.n_pos == 0 else "negative"
        raise DataError(
            f"split {split!r} has no {kind} images ({len(data)} images, {data.n_pos} positive)",
            hint="training and model selection need both classes; re-split or add data",
        )


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress_ = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))


def data_source(manifest_path: str | os.PathLike[str]) -> dict[str, Any]:
    """What the training data were, for the model card: edgevcf's synthetic generator (its
    ``synth_config.json`` beside the manifest) or the user's own films."""
    import json

    synth = Path(manifest_path).parent / "synth_config.json"
    if synth.is_file():
        try:
            c = json.loads(synth.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            c = {}
        return {"kind": "synthetic", "generator": "edgevcf data synth",
                "generator_version": c.get("generator_version"), "seed": c.get("seed"),
                "patients": c.get("patients")}  # fmt: skip
    return {"kind": "user data", "manifest": Path(manifest_path).name}


def train(
    manifest_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    cfg: TrainConfig,
    *,
    resume: bool = False,
) -> TrainResult:
    """Train ``cfg.arch`` on the manifest's train split, select on its val split."""
    cfg.validate()
    torch = require("torch", "training")
    require("torchvision", "training")
    import torch.distributed as dist

    start = time.perf_counter()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    is_main = rank == 0
    device = _device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)

    spec = get_spec(cfg.arch)
    prep = spec.default_preprocess(**({"input_size": cfg.input_size} if cfg.input_size else {}))
    manifest = Manifest.load(manifest_path)
    tr = load_split(manifest, cfg.train_split, prep, cache=cfg.cache, desc="preprocess train")
    va = load_split(manifest, cfg.val_split, prep, cache=cfg.cache, desc="preprocess val")
    _check_classes(tr, cfg.train_split)
    _check_classes(va, cfg.val_split)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    # channels-last: oneDNN's fast layout for convolutions (measured on a 2-core Zen 5: a
    # MobileNetV3-Small step at 224 px 0.28 -> 0.19 s); the checkpoint is saved contiguous
    model = build_model(cfg.arch).to(device).to(memory_format=torch.channels_last)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    pos_weight = torch.tensor([(len(tr) - tr.n_pos) / tr.n_pos], device=device)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    steps_per_epoch = math.ceil(len(tr) / (cfg.batch_size * world))
    total, warmup = steps_per_epoch * cfg.epochs, max(1, int(cfg.warmup_epochs * steps_per_epoch))
    gen = torch.Generator().manual_seed(cfg.seed)
    units = torch.from_numpy(tr.units.astype(np.float32))
    labels = torch.from_numpy(tr.labels.astype(np.float32))

    history: list[dict[str, float]] = []
    best = {"auc": -1.0, "epoch": -1, "threshold": 0.5}
    first_epoch = 0
    resume_path = out / "resume.pt"
    if resume and resume_path.is_file():
        state = torch.load(resume_path, map_location="cpu", weights_only=True)
        _unwrap(model).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])  # dropout draws from the global generator
        history, best, first_epoch = state["history"], state["best"], int(state["epoch"]) + 1
        log.info("resuming %s at epoch %d", out, first_epoch + 1)

    ckpt = out / "model.safetensors"
    for epoch in range(first_epoch, cfg.epochs):
        model.train()
        order = torch.randperm(len(tr), generator=gen)
        per_rank = len(order) // world  # equal shards: DDP ranks must run the same steps
        shard = order[rank * per_rank : (rank + 1) * per_rank] if world > 1 else order
        running, seen = 0.0, 0
        batches = range(0, len(shard), cfg.batch_size)
        bar = progress.track(
            batches, total=len(batches), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch"
        )
        for b_i, i in enumerate(bar):
            idx = shard[i : i + cfg.batch_size]
            if len(idx) < 2:  # a batch of one breaks batch norm; same on every rank
                continue
            x = units[idx]
            if cfg.augment:
                x = augment(x, gen)
            x = normalise(x.to(device), prep).contiguous(memory_format=torch.channels_last)
            y = labels[idx].to(device)
            step = epoch * steps_per_epoch + b_i
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total, warmup, cfg.lr)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                loss = loss_fn(model(x).reshape(-1), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            running += float(loss.detach()) * len(idx)
            seen += len(idx)
        if not is_main:
            continue
        recalibrate_bn(_unwrap(model), tr.units, prep, device=device)
        probs = predict(_unwrap(model), va.units, prep, device=str(device))
        val_auc = metrics.auc(va.labels, probs)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": running / max(1, seen),
                "val_auc": val_auc,
                "seconds": time.perf_counter() - start,
            }
        )
        log.info(
            "epoch %d/%d: train loss %.4f, val AUC %.4f",
            epoch + 1,
            cfg.epochs,
            running / max(1, seen),
            val_auc,
        )
        if val_auc > best["auc"]:
            thr, how = _threshold(va.labels, probs, cfg.target_sensitivity)
            best = {"auc": val_auc, "epoch": epoch + 1, "threshold": thr}
            meta = CheckpointMeta(
                arch=cfg.arch,
                preprocess=prep,
                threshold=thr,
                threshold_method=how,
                metrics=_val_metrics(va, probs, thr, epoch + 1),
                train_config={**asdict(cfg), "data_source": data_source(manifest_path)},
                data_fingerprint=manifest.fingerprint(),
                seed=cfg.seed,
            )
            save_checkpoint(ckpt, _unwrap(model), meta)
        torch.save(
            {
                "model": _unwrap(model).state_dict(),
                "optimizer": opt.state_dict(),
                "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "history": history,
                "best": best,
                "epoch": epoch,
            },
            resume_path.with_suffix(".part"),
        )
        os.replace(resume_path.with_suffix(".part"), resume_path)
    if world > 1:
        dist.barrier()
    seconds = time.perf_counter() - start
    if is_main:
        (out / "history.json").write_text(
            json.dumps(
                {
                    "config": asdict(cfg),
                    "history": history,
                    "best": best,
                    "seconds": seconds,
                    "skipped": tr.skipped + va.skipped,
                },
                indent=2,
            )
        )
    return TrainResult(
        ckpt,
        int(best["epoch"]),
        float(best["auc"]),
        float(best["threshold"]),
        seconds,
        history,
        tr.skipped + va.skipped,
    )


def _unwrap(model: nn.Module) -> nn.Module:
    inner: nn.Module = getattr(model, "module", model)
    return inner


def _threshold(y: np.ndarray, p: np.ndarray, target: float | None) -> tuple[float, str]:
    if target is None:
        return float(metrics.youden_threshold(y, p)), "youden on validation split"
    return float(
        metrics.threshold_for_sensitivity(y, p, target)
    ), f"sensitivity >= {target} on validation split"


def _val_metrics(va: SplitData, probs: np.ndarray, thr: float, epoch: int) -> dict[str, Any]:
    try:
        auc: dict[str, Any] = metrics.auc_ci(va.labels, probs).to_dict()
    except DataError:  # fewer than 2 cases of a class: no DeLong CI, the point AUC still stands
        auc = {"auc": metrics.auc(va.labels, probs), "ci_low": None, "ci_high": None}
    b = metrics.binary_metrics(va.labels, probs, thr)
    return {"split": "val", "epoch": epoch, "n": len(va), "auc": auc, "at_threshold": b.to_dict()}
