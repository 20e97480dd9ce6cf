"""Train ChangeNet-lite from a TAO Visual ChangeNet classify spec: a plain, explicit loop.

One job: decode the train and validation CSVs once into memory, then for each epoch draw the
``fpratio_sampling`` weighted sample, train on augmented batches, validate every epoch and write

``results_dir/``
    ``model_epoch_<EEE>_step_<SSS>.pth``  every ``checkpoint_interval`` epochs and at the last epoch
    ``best_val.pth``   lowest validation selection score (``kpi.selection_score``; ties: lower val_loss)
    ``latest.pth``     the last epoch
    ``metrics.jsonl``  one object per epoch
    ``train_summary.json``

An epoch's parts (sampling, batches, LR schedules, the weight average) are in epoch.py.

Validation runs every epoch (``validation_interval`` is not used): it costs a fraction of a training
epoch and ``best_val.pth`` and collapse detection need the whole curve.

Weight averaging (``TrainOptions.ema_epochs``, not a TAO key): an exponential moving average of the
weights, with a time constant of that many epochs, is what every epoch validates and every checkpoint
holds. On a few hundred AOI pairs the raw weights' validation FAR swung by tens of points from one
epoch to the next (the optimiser's last steps decide which defect ends lowest); the average does not.

Command line: ``aoideft train`` (train_cli.py).
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aoideft import fsutil, kpi, progress, spec as spec_module, spec_settings
from aoideft.checkpoint import checkpoint_name, load_pretrained_weights, save_checkpoint
from aoideft.decode_cache import DecodeCache
from aoideft.epoch import (
    PairTensors,
    batch_bounds,
    epoch_indices,
    lr_factor,
    make_optimizer,
    recalibrate_batchnorm,
    sampler_weights,
    train_one_epoch,
    weight_average,
)
from aoideft.errors import InputError
from aoideft.inference import decode_for_arch, predict, prepare_model, resolve_device
from aoideft.model import ChangeNetLite, ModelArch, defect_scores
from aoideft.spec_settings import TrainSettings

DEFAULT_ALIGN_REACH_PX = 4.0
METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class TrainOptions:
    """Embedded-trainer options outside the TAO spec."""

    device: str | None = None  # cpu | cuda | None (CUDA when visible)
    threads: int | None = None  # torch CPU threads; None: SLURM_CPUS_PER_TASK or os.cpu_count()
    base_width: int = 16  # backbone widths w/2w/4w/8w
    light_stacking: str = "spec"  # spec (TAO concat_type) | channels
    compile: bool = False  # torch.compile the training forward (benchmarks/README.md: when it pays)
    ema_epochs: float = 1.5  # time constant of the weight average that is validated and saved, epochs; 0: off
    warm_start_warmup_epochs: float = 0.0  # a warm-started run ramps its LR up from 0 over these epochs; 0: off
    decode_cache: str | None = None  # folder of the run's decode cache (decode_cache.py); None: no cache
    align: str = "phase_blur"  # golden-to-test registration when pairs are decoded (model.ModelArch): phase_blur | phase | none
    align_max_shift_px: float | None = None  # registration's reach, input pixels; None: 4, at most a quarter side
    shift_tolerance_px: float = 0.0  # shift-tolerant feature difference (model.ModelArch); 0: off
    verbose: bool = True  # one progress line per epoch on stdout

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> TrainOptions:
        options = dict(options or {})
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InputError(f"unknown trainer options {unknown}; known options are {sorted(known)}.")
        return cls(**options)


def default_threads() -> int:
    return int(os.environ.get("SLURM_CPUS_PER_TASK") or os.cpu_count() or 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def arch_from_settings(settings: TrainSettings, options: TrainOptions) -> ModelArch:
    augmentation = settings.augmentation
    return ModelArch(
        lights=tuple(settings.lights),
        image_ext=settings.image_ext,
        image_width=int(settings.image_width),
        image_height=int(settings.image_height),
        light_stacking=options.light_stacking,
        concat_type=settings.concat_type,
        grid=(int(settings.grid_x), int(settings.grid_y)),
        base_width=int(options.base_width),
        difference_module=settings.difference_module,
        learnable_difference_modules=int(settings.learnable_difference_modules),
        embed_dec=int(settings.embed_dec),
        rgb_mean=tuple(float(value) for value in augmentation.rgb_mean),
        rgb_std=tuple(float(value) for value in augmentation.rgb_std),
        align=options.align,
        align_max_shift_px=float(options.align_max_shift_px if options.align_max_shift_px is not None
                                 else min(DEFAULT_ALIGN_REACH_PX, settings.image_width / 4, settings.image_height / 4)),
        shift_tolerance_px=float(options.shift_tolerance_px),
    )


def load_pairs(
    csv_path: str | None, images_dir: str | None, arch: ModelArch, threads: int, split: str,
    cache: DecodeCache | None = None, device: torch.device | None = None,
) -> PairTensors:
    """Decode the ``split`` ('train' or 'validation') CSV into memory; both classes must be present."""
    if not csv_path or not images_dir:
        raise InputError(
            f"spec keys dataset.classify.{split}_dataset.csv_path and .images_dir must both be set to train."
        )
    _, decoded = decode_for_arch(arch, csv_path, images_dir, threads=threads, cache=cache, device=device)
    labels = decoded.labels
    num_defects = int(labels.sum())
    if num_defects == 0 or num_defects == len(labels):
        missing = "defect (non-PASS)" if num_defects == 0 else "PASS"
        raise InputError(
            f"{split} CSV {csv_path} has no {missing} rows; training and validation need both PASS and "
            "defect rows."
        )
    return PairTensors(decoded.golden, decoded.test, labels)


def evaluate(
    model: ChangeNetLite, criterion: nn.Module, data: PairTensors, *, batch_size: int, device: torch.device
) -> dict[str, Any]:
    logits = predict(model, data.golden, data.test, batch_size=batch_size, device=device)
    assert isinstance(logits, torch.Tensor)  # output="logits": one tensor
    labels = data.labels.cpu()
    predicted = logits.argmax(dim=1)
    is_defect = labels.numpy().astype(bool)
    num_defect_predictions = int(predicted.sum())
    return {
        "val_loss": float(criterion(logits.to(device), labels.to(device)).item()),
        "val_accuracy": float((predicted == labels).float().mean()),
        **kpi.validation_metrics(is_defect, defect_scores(logits).numpy()),
        "val_pred_counts": {"PASS": len(labels) - num_defect_predictions, "NO_PASS": num_defect_predictions},
    }


def progress_line(metrics: dict[str, Any], num_epochs: int, best: dict[str, Any], elapsed: float) -> str:
    """One epoch's line: loss, validation FAR, the best epoch so far, its seconds and the ETA of the
    remaining epochs (``elapsed``: seconds since the first epoch started)."""
    counts = metrics["val_pred_counts"]
    done = metrics["epoch"] + 1
    return (
        f"epoch {done}/{num_epochs} loss {metrics['loss']:.3f} acc {metrics['accuracy']:.2f} "
        f"val_loss {metrics['val_loss']:.3f} val_FAR@100%R {metrics['val_far_pct']:.1f}% "
        f"(expected {metrics['val_expected_far_pct']:.1f}%) "
        f"best {best['val_far_pct']:.1f}% (epoch {best['epoch'] + 1}) "
        f"pred PASS/NO_PASS {counts['PASS']}/{counts['NO_PASS']} lr {metrics['lr']:.1e} {metrics['seconds']:.1f}s "
        f"ETA {progress.fmt_duration(progress.eta_seconds(done, num_epochs, elapsed))}"
    )


def is_better(candidate: dict[str, Any], best: dict[str, Any] | None) -> bool:
    """The lower validation selection score (``kpi.selection_score``) wins; ties go to the lower
    val_loss, then the earlier epoch."""
    return best is None or kpi.validation_order(candidate) < kpi.validation_order(best)


def train(
    settings: TrainSettings,
    results_dir: str | Path,
    *,
    pretrained: str | Path | None = None,
    options: TrainOptions | dict[str, Any] | None = None,
    spec_notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Train from ``spec.TrainSettings``; writes checkpoints and metrics to ``results_dir``; returns the summary.

    ``spec_notes`` (what the spec asked for that the embedded trainer does not do) go into the summary.
    """
    started = time.perf_counter()
    options = options if isinstance(options, TrainOptions) else TrainOptions.from_dict(options)
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(options.device)
    threads = int(options.threads or default_threads())
    torch.set_num_threads(threads)
    # TAO's seed -1 means "not seeded": draw one, and record it in the summary so the run can be repeated.
    seed = settings.seed if settings.seed >= 0 else random.SystemRandom().randrange(2**31)
    seed_everything(seed)

    arch = arch_from_settings(settings, options)
    decode_started = time.perf_counter()
    cache = DecodeCache(Path(options.decode_cache)) if options.decode_cache else None
    train_data = load_pairs(settings.train_csv, settings.train_images_dir, arch, threads, "train", cache, device).to(device)
    val_data = load_pairs(settings.val_csv, settings.val_images_dir, arch, threads, "validation", cache, device).to(device)
    decode_seconds = time.perf_counter() - decode_started

    model = ChangeNetLite(arch)
    pretrained = pretrained or settings.pretrained_model_path
    if pretrained:
        load_pretrained_weights(model, pretrained)
    model = prepare_model(model, device)
    forward = torch.compile(model) if options.compile else model

    criterion = nn.CrossEntropyLoss(weight=torch.tensor(settings.cls_weight, dtype=torch.float32, device=device))
    optimizer = make_optimizer(model, settings)
    steps_per_epoch = len(batch_bounds(len(train_data), settings.batch_size))
    # A fresh AdamW at the full LR moves every weight by about the LR in its first steps: a warm start
    # lost what it knew in its first epoch (default demo, base rows only: validation FAR 7% -> 74%).
    # A warmup keeps it (8%), but did not end better (benchmarks/README.md, retrain dynamics): off.
    warmup_steps = round(options.warm_start_warmup_epochs * steps_per_epoch) if pretrained else 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor(settings.policy, settings.num_epochs, steps_per_epoch, warmup_steps)
    )
    averaged = weight_average(model, options.ema_epochs, steps_per_epoch)
    # what is validated and saved: the model, or the weight average's copy of it
    evaluated = model if averaged is None else averaged.module
    weights = sampler_weights(train_data.labels.cpu().numpy().astype(bool), settings.fpratio_sampling)
    sampler_generator = torch.Generator().manual_seed(seed)
    augment_generator = torch.Generator().manual_seed(seed + 1)

    history: list[dict[str, Any]] = []
    epoch_checkpoints: list[str] = []
    best: dict[str, Any] | None = None
    step, train_seconds, train_pairs = 0, 0.0, 0
    epochs_started = time.perf_counter()
    for epoch in range(settings.num_epochs):
        epoch_started = time.perf_counter()
        indices = epoch_indices(weights, sampler_generator)
        trained = train_one_epoch(
            model,
            criterion,
            optimizer,
            scheduler,
            train_data,
            indices,
            batch_size=settings.batch_size,
            augmentation=settings.augmentation,
            generator=augment_generator,
            device=device,
            forward=forward,
            averaged=averaged,
        )
        epoch_train_seconds = time.perf_counter() - epoch_started
        train_seconds += epoch_train_seconds
        train_pairs += int(trained["pairs"])
        step += steps_per_epoch
        recalibrate_batchnorm(evaluated, train_data, batch_size=settings.batch_size, device=device)
        validated = evaluate(evaluated, criterion, val_data, batch_size=max(settings.batch_size, 64), device=device)
        metrics = {
            "epoch": epoch,
            "step": step,
            "loss": trained["loss"],
            "accuracy": trained["accuracy"],
            "lr": trained["lr"],
            **validated,
            "train_seconds": epoch_train_seconds,
            "seconds": time.perf_counter() - epoch_started,
        }
        history.append(metrics)
        _write_epoch_outputs(results_dir, evaluated, metrics, history, settings, epoch_checkpoints)
        if best is None or is_better(metrics, best):
            best = metrics
            save_checkpoint(results_dir / "best_val.pth", evaluated, epoch=epoch, step=step, metrics=metrics)
        if options.verbose:
            progress.log(progress_line(metrics, settings.num_epochs, best, time.perf_counter() - epochs_started))

    if best is None:
        raise InputError("train.num_epochs must be at least 1")  # the spec check refuses 0 earlier
    summary = {
        "best_epoch": best["epoch"],
        "best_val_far_pct": best["val_far_pct"],
        "best_val_selection": best["val_selection"],
        "best_val_expected_far_pct": best["val_expected_far_pct"],
        "best_val_margin": best["val_margin"],
        "best_val_loss": best["val_loss"],
        "best_val_threshold": best["val_threshold"],
        "final": history[-1],
        "epochs_run": len(history),
        "checkpoints": {"best_val": "best_val.pth", "latest": "latest.pth", "epochs": epoch_checkpoints},
        "collapsed": min(best["val_pred_counts"].values()) == 0,
        "device": str(device),
        "threads": threads,
        "seed": seed,
        "pretrained": str(pretrained) if pretrained else None,
        "weight_average": {"ema_epochs": options.ema_epochs} if averaged is not None else None,
        "warmup_steps": warmup_steps,
        "num_train_pairs": len(train_data),
        "num_val_pairs": len(val_data),
        "decode_seconds": decode_seconds,
        "decode_cache": {"hits": cache.hits, "misses": cache.misses} if cache else None,
        "seconds": time.perf_counter() - started,
        "pairs_per_second": train_pairs / train_seconds if train_seconds > 0 else None,
        "spec_notes": list(spec_notes),
    }
    fsutil.write_json(results_dir / "train_summary.json", summary)
    return summary


def _write_epoch_outputs(
    results_dir: Path,
    model: ChangeNetLite,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    settings: TrainSettings,
    epoch_checkpoints: list[str],
) -> None:
    epoch, step = metrics["epoch"], metrics["step"]
    interval = settings.checkpoint_interval or 0
    if epoch == settings.num_epochs - 1 or (interval >= 1 and (epoch + 1) % interval == 0):
        name = checkpoint_name(epoch, step)
        save_checkpoint(results_dir / name, model, epoch=epoch, step=step, metrics=metrics)
        epoch_checkpoints.append(name)
    save_checkpoint(results_dir / "latest.pth", model, epoch=epoch, step=step, metrics=metrics)
    write_metrics(results_dir, history)


def write_metrics(results_dir: Path, history: Sequence[dict[str, Any]]) -> None:
    """``metrics.jsonl``, one row per epoch: what every backend writes and downstream rules read."""
    fsutil.write_jsonl(Path(results_dir) / METRICS_FILE, history)


def train_from_spec(
    spec: dict[str, Any],
    results_dir: str | Path,
    *,
    spec_base_dir: str | Path | None = None,
    pretrained: str | Path | None = None,
    options: TrainOptions | dict[str, Any] | None = None,
    source: str = "spec",
) -> dict[str, Any]:
    """Train from a spec dict (relative paths resolve against ``spec_base_dir``); returns the summary."""
    options = options if isinstance(options, TrainOptions) else TrainOptions.from_dict(options)
    notes = spec_module.validate_spec(spec, source)
    if options.verbose:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    settings = spec_settings.train_settings(spec, base_dir=spec_base_dir, source=source)
    return train(settings, results_dir, pretrained=pretrained, options=options, spec_notes=notes)
