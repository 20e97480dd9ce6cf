"""Training augmentation of golden/test pairs, TAO's ``augmentation_config``, applied per batch.

Works on float tensors in [0, 1] shaped [B, L, C, H, W] (one image per light, before the lights are
stacked), on whatever device they live. Each pair draws its random parameters once and they are applied
identically to its golden and test images and to all its lights: a flip or a colour shift must not
itself look like a change between golden and test. Random numbers come from a CPU ``torch.Generator``,
so a seed gives the same augmentation on CPU and GPU; the chosen pairs' indices and parameters reach
the GPU as small non-blocking copies, so the CPU never waits for the GPU here.
Normalisation (rgb mean/std) is the model's job.

Order: scale-random-crop, horizontal/vertical flip, rotation by a multiple of 90 degrees, colour
jitter (brightness, contrast, saturation, hue; one ``color_probability`` draw decides all four).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from aoideft.errors import InputError
from aoideft.spec_settings import AugmentationSettings

_GRAY = (0.299, 0.587, 0.114)
# RGB -> YIQ; a hue shift is a rotation of the (I, Q) chroma plane, one 3x3 matrix per pair.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def augment_pairs(
    golden: torch.Tensor, test: torch.Tensor, settings: AugmentationSettings, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch of pairs ([B, L, C, H, W] floats in [0, 1]); returns new (golden, test)."""
    if not settings.augment:
        return golden, test
    pairs = torch.stack([golden, test], dim=1)  # [B, 2, L, C, H, W]: one draw per pair
    batch = pairs.shape[0]
    if settings.scale_crop_enabled:
        pairs = random_scale_crop(pairs, settings.scale_range, generator)
    if settings.flip_enabled:
        pairs = _apply_to(pairs, _rand(generator, batch) < settings.hflip_probability, lambda x: x.flip(-1))
        pairs = _apply_to(pairs, _rand(generator, batch) < settings.vflip_probability, lambda x: x.flip(-2))
    if settings.rotate_enabled:
        pairs = random_rot90(pairs, settings.rotate_probability, settings.angle_list, generator)
    if settings.color_enabled and pairs.shape[-3] == 3:
        pairs = random_color(pairs, settings, generator)
    return pairs[:, 0], pairs[:, 1]


def random_scale_crop(pairs: torch.Tensor, scale_range: Sequence[float], generator: torch.Generator) -> torch.Tensor:
    """Zoom in: crop a random window whose side is a fraction f ~ U(scale_range) of the image side
    (``AugmentationSettings.scale_range``, 0 < low <= high <= 1) and resize it back (bilinear)."""
    batch, height, width = pairs.shape[0], pairs.shape[-2], pairs.shape[-1]
    fraction = _uniform(generator, batch, float(scale_range[0]), float(scale_range[1]))
    slack = (1.0 - fraction).clamp(min=0.0)  # how far the window centre may move, in [-1, 1] units
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = fraction
    theta[:, 1, 1] = fraction
    theta[:, 0, 2] = (2 * _rand(generator, batch) - 1) * slack
    theta[:, 1, 2] = (2 * _rand(generator, batch) - 1) * slack
    flat = pairs.reshape(batch, -1, height, width)
    grid = F.affine_grid(_to_device(theta, flat.device).to(flat.dtype), list(flat.shape), align_corners=False)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(pairs.shape)


def random_rot90(
    pairs: torch.Tensor, probability: float, angle_list: Sequence[float], generator: torch.Generator
) -> torch.Tensor:
    """With ``probability`` rotate by an angle drawn from ``angle_list`` (multiples of 90 degrees).

    On non-square images 90 and 270 would change the image size, so only 180 is used there.
    """
    quarter_turns = rotation_quarter_turns(angle_list)
    if pairs.shape[-1] != pairs.shape[-2]:
        quarter_turns = [turns for turns in quarter_turns if turns % 2 == 0]
    batch = pairs.shape[0]
    rotate = _rand(generator, batch) < probability
    choice = torch.randint(max(len(quarter_turns), 1), (batch,), generator=generator)
    for index, turns in enumerate(quarter_turns):
        pairs = _apply_to(pairs, rotate & (choice == index), lambda x, k=turns: torch.rot90(x, k, dims=(-2, -1)))
    return pairs


def rotation_quarter_turns(angle_list: Sequence[float]) -> list[int]:
    turns = []
    for angle in angle_list:
        if float(angle) % 90 != 0:
            raise InputError(
                "dataset.classify.augmentation_config.random_rotate.angle_list may only hold multiples of "
                f"90 degrees, got {angle}."
            )
        turns.append(int(float(angle) // 90) % 4)
    return turns


def random_color(pairs: torch.Tensor, settings: AugmentationSettings, generator: torch.Generator) -> torch.Tensor:
    """Colour jitter (torchvision semantics: factor ranges [1-x, 1+x], hue shift in [-hue, hue] turns)."""
    batch = pairs.shape[0]
    selected = _rand(generator, batch) < settings.color_probability
    brightness = _uniform(generator, batch, max(0.0, 1 - settings.brightness), 1 + settings.brightness)
    contrast = _uniform(generator, batch, max(0.0, 1 - settings.contrast), 1 + settings.contrast)
    saturation = _uniform(generator, batch, max(0.0, 1 - settings.saturation), 1 + settings.saturation)
    hue = _uniform(generator, batch, -settings.hue, settings.hue)
    index = selected.nonzero().squeeze(1)
    if index.numel() == 0:
        return pairs
    rows = _to_device(index, pairs.device)
    x = pairs[rows]
    shape = (-1,) + (1,) * (x.dim() - 1)
    factors = _to_device(torch.stack([brightness, contrast, saturation])[:, index], x.device).to(x.dtype)
    x = (x * factors[0].view(shape)).clamp(0, 1)
    mean = _gray(x).mean(dim=(-3, -2, -1), keepdim=True)
    x = ((x - mean) * factors[1].view(shape) + mean).clamp(0, 1)
    gray = _gray(x)
    x = ((x - gray) * factors[2].view(shape) + gray).clamp(0, 1)
    x = torch.einsum("nij,nsljhw->nslihw", _to_device(_hue_matrices(hue[index]), x.device).to(x.dtype), x)
    pairs[rows] = x.clamp(0, 1)
    return pairs


def _hue_matrices(shift: torch.Tensor) -> torch.Tensor:
    """[n, 3, 3] RGB->RGB matrices rotating chroma by ``shift`` turns."""
    angle = shift * 2 * math.pi
    rotation = torch.zeros(len(shift), 3, 3)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1] = torch.cos(angle)
    rotation[:, 1, 2] = -torch.sin(angle)
    rotation[:, 2, 1] = torch.sin(angle)
    rotation[:, 2, 2] = torch.cos(angle)
    return torch.linalg.inv(_RGB_TO_YIQ) @ rotation @ _RGB_TO_YIQ


def _gray(x: torch.Tensor) -> torch.Tensor:
    weights = _to_device(torch.tensor(_GRAY), x.device).to(x.dtype).view(3, 1, 1)
    return (x * weights).sum(dim=-3, keepdim=True)


def _apply_to(x: torch.Tensor, mask: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Replace the rows of ``x`` selected by the boolean CPU ``mask`` with ``transform`` of them (only
    those rows are read and written: on a GPU-bound batch a whole-batch torch.where cost ~7% more)."""
    index = mask.nonzero().squeeze(1)
    if index.numel():
        rows = _to_device(index, x.device)
        x[rows] = transform(x[rows])
    return x


def _to_device(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor on ``device`` without making the CPU wait for the GPU: a blocking copy
    synchronises the stream (the profiler showed three such waits per batch)."""
    return values.to(device, non_blocking=True)


def _rand(generator: torch.Generator, n: int) -> torch.Tensor:
    return torch.rand(n, generator=generator)


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * _rand(generator, n)
