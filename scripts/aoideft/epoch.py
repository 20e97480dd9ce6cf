"""One training epoch and what it is made of: the sampler's draw, the batches, the learning-rate
schedule, the optimiser, the weight average and BatchNorm recalibration (trainer.py runs the job).

Schedules (``train.optim.policy``): ``linear`` scales the LR by ``1 - step / total_steps`` before each
optimiser step, reaching 0 at the end of the run; ``step`` multiplies it by 0.1 from epoch
``ceil(2/3 * num_epochs)`` (0-based) on, e.g. epochs 7-9 of 10.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from aoideft.augment import augment_pairs
from aoideft.errors import InputError
from aoideft.inference import autocast
from aoideft.model import ChangeNetLite
from aoideft.spec_settings import AugmentationSettings, TrainSettings

STEP_POLICY_FACTOR = 0.1
# On a GPU a small batch's data path (gather, uint8 -> float, some forty augmentation kernels) took
# as long as its training step (benchmarks/README.md, GPU speed): batches are prepared together, as
# many as this many bytes of float pairs hold.
GPU_BATCH_GROUP_BYTES = 512 << 20


@dataclass(frozen=True)
class PairTensors:
    """A decoded CSV in memory: uint8 [N, L, C, H, W] golden/test, int64 labels (1 = defect)."""

    golden: torch.Tensor
    test: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device) -> PairTensors:
        return PairTensors(self.golden.to(device), self.test.to(device), self.labels.to(device))


def sampler_weights(is_defect: np.ndarray, fpratio_sampling: float | None) -> np.ndarray:
    """TAO's weights: PASS rows 1, defect rows (num_pass / num_fail) x fpratio_sampling.

    ``fpratio_sampling`` unset or 0 means no re-weighting (every row 1).
    """
    is_defect = np.asarray(is_defect, dtype=bool)
    weights = np.ones(len(is_defect), dtype=np.float64)
    num_fail = int(is_defect.sum())
    if fpratio_sampling and num_fail:
        weights[is_defect] = (len(is_defect) - num_fail) / num_fail * float(fpratio_sampling)
    return weights


def epoch_indices(weights: np.ndarray, generator: torch.Generator) -> torch.Tensor:
    """``len(weights)`` row indices drawn with replacement, proportional to ``weights``."""
    return torch.multinomial(torch.as_tensor(weights), len(weights), replacement=True, generator=generator)


def batch_bounds(num_samples: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, end) of each batch; a last batch of a single pair is dropped (BatchNorm needs two)."""
    bounds = [(start, min(start + batch_size, num_samples)) for start in range(0, num_samples, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds.pop()
    return bounds


def lr_factor(policy: str, num_epochs: int, steps_per_epoch: int, warmup_steps: int = 0) -> Callable[[int], float]:
    """LR multiplier as a function of the number of optimiser steps already taken; over the first
    ``warmup_steps`` it also ramps linearly up from 1/warmup_steps to 1."""
    total_steps = num_epochs * steps_per_epoch
    milestone = math.ceil(2 * num_epochs / 3)

    def linear(step: int) -> float:
        return max(0.0, 1.0 - step / total_steps)

    def stepped(step: int) -> float:
        return STEP_POLICY_FACTOR if step // steps_per_epoch >= milestone else 1.0

    policies = {"linear": linear, "step": stepped}
    if policy not in policies:
        raise InputError(f"train.optim.policy must be 'linear' or 'step', got {policy!r}.")
    decay = policies[policy]
    if warmup_steps <= 0:
        return decay
    return lambda step: min(1.0, (step + 1) / warmup_steps) * decay(step)


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
        )
    raise InputError(f"train.optim.optim must be 'adamw' or 'sgd', got {settings.optimizer!r}.")


def train_one_epoch(
    model: ChangeNetLite,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    data: PairTensors,
    indices: torch.Tensor,
    *,
    batch_size: int,
    augmentation: AugmentationSettings,
    generator: torch.Generator,
    device: torch.device,
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    averaged: WeightAverage | None = None,
) -> dict[str, float]:
    """One pass over ``indices``; ``forward`` is the model's compiled forward when there is one;
    ``averaged`` (the weight average) is updated after every optimiser step."""
    forward = model if forward is None else forward  # a compiled module refuses bool()
    model.train()
    # Sums stay on the device: reading one back per batch (loss.item()) would make the CPU wait for
    # the GPU every step instead of queueing the next batch; one read at the end of the epoch.
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen, lr = 0, optimizer.param_groups[0]["lr"]
    indices = indices.to(data.labels.device)  # one copy per epoch; a copy per batch would wait for the GPU
    pair_bytes = 2 * 4 * data.golden[0].numel()  # golden and test as float32
    for group in batch_groups(batch_bounds(len(indices), batch_size), pair_bytes * batch_size, device):
        first = group[0][0]
        rows = indices[first : group[-1][1]]
        goldens = data.golden[rows].to(device, non_blocking=True).float().div_(255.0)
        tests = data.test[rows].to(device, non_blocking=True).float().div_(255.0)
        targets = data.labels[rows].to(device, non_blocking=True)
        goldens, tests = augment_pairs(goldens, tests, augmentation, generator, [end - start for start, end in group])
        for start, end in group:
            batch = slice(start - first, end - first)
            target = targets[batch]
            with autocast(device):
                logits = forward(goldens[batch], tests[batch])
            loss = criterion(logits.float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            if averaged is not None:
                averaged.update_parameters(model)
            loss_sum += loss.detach() * (end - start)
            correct += (logits.argmax(dim=1) == target).sum()
            seen += end - start
    return {"loss": loss_sum.item() / max(seen, 1), "accuracy": correct.item() / max(seen, 1), "lr": lr,
            "pairs": seen}


def batch_groups(bounds: list[tuple[int, int]], batch_bytes: int,
                 device: torch.device) -> list[list[tuple[int, int]]]:
    """Consecutive batches whose data are gathered and augmented together: one by one on the CPU,
    where kernel launches cost little (and its figures stay those of batch-by-batch augmentation);
    on a GPU as many as ``GPU_BATCH_GROUP_BYTES`` hold, at least one."""
    per_group = 1 if device.type != "cuda" else max(1, GPU_BATCH_GROUP_BYTES // max(batch_bytes, 1))
    return [bounds[start : start + per_group] for start in range(0, len(bounds), per_group)]


class WeightAverage:
    """The exponential moving average of a model's weights: ``module`` is the copy that is validated
    and saved; ``update_parameters`` after each optimiser step (the first copies the weights).

    torch.optim.swa_utils.AveragedModel does the same arithmetic (one foreach lerp a step) but also
    copies every buffer and regroups the parameters at every step: on a GPU some thirty small copies a
    step for BatchNorm statistics that recalibrate_batchnorm recomputes before they are used."""

    def __init__(self, model: ChangeNetLite, decay: float) -> None:
        self.module = copy.deepcopy(model)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update_parameters(self, model: ChangeNetLite) -> None:
        averaged = [parameter.detach() for parameter in self.module.parameters()]
        current = [parameter.detach() for parameter in model.parameters()]
        if self.updates == 0:
            torch._foreach_copy_(averaged, current)
        else:
            torch._foreach_lerp_(averaged, current, 1 - self.decay)
        self.updates += 1


def weight_average(model: ChangeNetLite, ema_epochs: float, steps_per_epoch: int) -> WeightAverage | None:
    """The exponential moving average of ``model``'s weights (decay per step for a time constant of
    ``ema_epochs``); None when ``ema_epochs`` is 0. Its BatchNorm statistics are recomputed before use."""
    if ema_epochs <= 0:
        return None
    return WeightAverage(model, math.exp(-1.0 / (ema_epochs * max(steps_per_epoch, 1))))


def recalibrate_batchnorm(
    model: ChangeNetLite, data: PairTensors, *, batch_size: int, device: torch.device, max_batches: int = 32
) -> None:
    """Recompute BatchNorm running statistics for the current weights from un-augmented training pairs.

    BatchNorm's running averages (momentum 0.1) lag the weights; on a few hundred AOI pairs a short run
    validated in eval mode then looked collapsed (all PASS) although its training loss had converged.
    A cumulative average over up to ``max_batches`` batches makes eval mode match the trained weights.
    Only the layers up to the difference maps run: every BatchNorm is there, and the fusion and head
    after them were a third of this pass's time for statistics they do not change.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for module in norms:
        module.reset_running_stats()
        module.momentum = None  # cumulative average of the batches below
    model.train()
    with torch.no_grad():
        for start, end in batch_bounds(min(len(data), batch_size * max_batches), batch_size):
            golden = data.golden[start:end].to(device, non_blocking=True).float().div_(255.0)
            test = data.test[start:end].to(device, non_blocking=True).float().div_(255.0)
            with autocast(device):
                model.difference_maps(golden, test)
    for module, momentum in zip(norms, momenta):
        module.momentum = momentum
    model.eval()
