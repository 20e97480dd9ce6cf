"""Training augmentation of golden/test pairs, TAO's ``augmentation_config``, drawn per batch.

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
    golden: torch.Tensor, test: torch.Tensor, settings: AugmentationSettings, generator: torch.Generator,
    batch_sizes: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment pairs ([B, L, C, H, W] floats in [0, 1]); returns new (golden, test).

    ``batch_sizes`` (default: one batch of all B rows) are the training batches the rows form, in order:
    each batch draws its parameters as if augmented alone, so a GPU can augment several batches in one
    set of kernel launches and every pair still gets the parameters it gets one batch at a time."""
    if not settings.augment:
        return golden, test
    pairs = torch.stack([golden, test], dim=1)  # [B, 2, L, C, H, W]: one draw per pair
    batch_sizes = list(batch_sizes or [len(pairs)])
    if sum(batch_sizes) != len(pairs):
        raise ValueError(f"batch sizes {batch_sizes} do not add up to the {len(pairs)} pairs given")
    square, rgb = pairs.shape[-1] == pairs.shape[-2], pairs.shape[-3] == 3
    draws = [draw_parameters(size, settings, generator, square=square, rgb=rgb) for size in batch_sizes]
    drawn = {key: torch.cat([draw[key] for draw in draws]) for key in draws[0]}
    if settings.scale_crop_enabled:
        pairs = random_scale_crop(pairs, drawn["crop_fraction"], drawn["crop_x"], drawn["crop_y"])
    if settings.flip_enabled:
        pairs = _apply_to(pairs, drawn["hflip"], lambda x: x.flip(-1))
        pairs = _apply_to(pairs, drawn["vflip"], lambda x: x.flip(-2))
    if settings.rotate_enabled:
        for index, turns in enumerate(_quarter_turns(settings.angle_list, square)):
            pairs = _apply_to(pairs, drawn["rotate"] & (drawn["quarter_turns"] == index),
                              lambda x, k=turns: torch.rot90(x, k, dims=(-2, -1)))
    if "color" in drawn:
        pairs = random_color(pairs, drawn)
    return pairs[:, 0], pairs[:, 1]


def draw_parameters(
    batch: int, settings: AugmentationSettings, generator: torch.Generator, *, square: bool, rgb: bool
) -> dict[str, torch.Tensor]:
    """The random parameters of one batch of ``batch`` pairs, [batch] CPU tensors each, drawn from
    ``generator`` in a fixed order (a seed's augmentation must not change with the device or the code
    path): crop (fraction, x, y), flips (h, v), rotation (whether, which of the quarter turns), colour
    (whether, brightness, contrast, saturation, hue)."""
    drawn: dict[str, torch.Tensor] = {}
    if settings.scale_crop_enabled:
        low, high = float(settings.scale_range[0]), float(settings.scale_range[1])
        drawn["crop_fraction"] = _uniform(generator, batch, low, high)
        drawn["crop_x"], drawn["crop_y"] = _rand(generator, batch), _rand(generator, batch)
    if settings.flip_enabled:
        drawn["hflip"] = _rand(generator, batch) < settings.hflip_probability
        drawn["vflip"] = _rand(generator, batch) < settings.vflip_probability
    if settings.rotate_enabled:
        drawn["rotate"] = _rand(generator, batch) < settings.rotate_probability
        choices = max(len(_quarter_turns(settings.angle_list, square)), 1)
        drawn["quarter_turns"] = torch.randint(choices, (batch,), generator=generator)
    if settings.color_enabled and rgb:
        drawn["color"] = _rand(generator, batch) < settings.color_probability
        for name in ("brightness", "contrast", "saturation"):
            spread = getattr(settings, name)
            drawn[name] = _uniform(generator, batch, max(0.0, 1 - spread), 1 + spread)
        drawn["hue"] = _uniform(generator, batch, -settings.hue, settings.hue)
    return drawn


def random_scale_crop(pairs: torch.Tensor, fraction: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Zoom in: crop a window whose side is ``fraction`` of the image side (drawn from
    ``AugmentationSettings.scale_range``, 0 < low <= high <= 1), its centre at ``x``, ``y`` in [0, 1]
    of the room it has, and resize it back (bilinear)."""
    batch, height, width = pairs.shape[0], pairs.shape[-2], pairs.shape[-1]
    slack = (1.0 - fraction).clamp(min=0.0)  # how far the window centre may move, in [-1, 1] units
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = fraction
    theta[:, 1, 1] = fraction
    theta[:, 0, 2] = (2 * x - 1) * slack
    theta[:, 1, 2] = (2 * y - 1) * slack
    flat = pairs.reshape(batch, -1, height, width)
    grid = F.affine_grid(_to_device(theta, flat.device).to(flat.dtype), list(flat.shape), align_corners=False)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(pairs.shape)


def _quarter_turns(angle_list: Sequence[float], square: bool) -> list[int]:
    """The rotations ``angle_list`` allows, in quarter turns; on non-square images 90 and 270 would
    change the image size, so only 180 is used there."""
    turns = rotation_quarter_turns(angle_list)
    return turns if square else [turn for turn in turns if turn % 2 == 0]


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


def random_color(pairs: torch.Tensor, drawn: dict[str, torch.Tensor]) -> torch.Tensor:
    """Colour jitter of the pairs ``drawn["color"]`` selects (torchvision semantics: factor ranges
    [1-x, 1+x], hue shift in [-hue, hue] turns; ``draw_parameters`` draws them)."""
    index = drawn["color"].nonzero().squeeze(1)
    if index.numel() == 0:
        return pairs
    rows = _to_device(index, pairs.device)
    x = pairs[rows]
    shape = (-1,) + (1,) * (x.dim() - 1)
    factors = torch.stack([drawn["brightness"], drawn["contrast"], drawn["saturation"]])[:, index]
    factors = _to_device(factors, x.device).to(x.dtype)
    x = (x * factors[0].view(shape)).clamp(0, 1)
    mean = _gray(x).mean(dim=(-3, -2, -1), keepdim=True)
    x = ((x - mean) * factors[1].view(shape) + mean).clamp(0, 1)
    gray = _gray(x)
    x = ((x - gray) * factors[2].view(shape) + gray).clamp(0, 1)
    x = torch.einsum("nij,nsljhw->nslihw", _to_device(_hue_matrices(drawn["hue"][index]), x.device).to(x.dtype), x)
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
