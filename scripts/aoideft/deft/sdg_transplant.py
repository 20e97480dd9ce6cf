"""SDG by transplant: defects of any label, and PASS variants, made from the workspace's own pairs.

A defect is what its test image adds to its golden. ``extract_residual`` registers the donor's golden
to its test (registration.py: phase correlation, sub-pixel), matches each light's gain, and keeps the
residual test - golden where it stands clearly above the pair's own noise and above what the
workspace's PASS pairs differ by (``nuisance_floor``: placement tolerance, solder volume, drift), with
hysteresis, small specks dropped, feathered at its rim. ``transplant`` places that residual
on a recipient PASS pair of the same component type (the caller picks, among a few, the one whose
test best shows the donor's structure around the defect: ``placement``'s score): at the donor's position,
moved by up to ``SEARCH_PX`` to where the recipient's test looks most like the donor's golden around
the defect (normalised cross-correlation: the same local structure), scaled per light by the ratio of
the two boards' brightness there, and added to the recipient's *test* image, so the synthetic pair
keeps a real pair's nuisance (its misregistration, gain, noise) and only the defect is new.

PASS variants (``pass_variant``): the target PASS pair's nuisance is measured (``measure_nuisance``:
shift, per-light gain, blur, noise of test against golden) and given to a recipient PASS pair, on top
of what it has; a residual of the PASS target (dust, an alternate part's marking) is transplanted too.
Everything is in pixels of the images as stored; arrays are float32 H x W x C in [0, 255].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from aoideft import csvdata
from aoideft.errors import InputError

from .sdg_images import blur, load_image

if TYPE_CHECKING:
    import torch

REFERENCE_SIZE = 64.0  # the pixel figures below are for a 64-px crop and scale with the crop
MAX_SHIFT_PX = 4.0  # largest golden misregistration registration looks for
SEARCH_PX = 6  # how far the defect may move from the donor's position to find the same structure
CONTEXT_PX = 4  # ring around the defect compared between donor and recipient
THRESHOLD_SIGMAS = 6.0  # the residual must stand this many robust sigmas above the pair's difference noise
MIN_RESIDUAL = 8.0  # ... and at least this many grey levels
MIN_AREA = 4  # pixels (at 64 px) of the smallest defect region kept
FLOOR_QUANTILE = 0.9  # nuisance_floor: of the PASS pairs' largest difference
FLOOR_PAIRS = 64  # PASS training pairs nuisance_floor measures
MARGIN_PX = 2  # border pixels never taken as defect (resampling repeats them)
GAIN_RANGE = (0.5, 2.0)
BLUR_SIGMAS = np.round(np.arange(-1.5, 1.51, 0.25), 2)  # signed: > 0 test blurrier, < 0 golden blurrier
PRE_SMOOTH = 1.0  # sigma both images are smoothed by while the blur is chosen
VARIANT_JITTER = (0.8, 1.2)  # a PASS variant's nuisance is the target's times a factor in this range


@dataclass(frozen=True)
class Pair:
    """A row's images, one H x W x C array per light, and the PIL mode of each light's test image."""

    golden: list[np.ndarray]
    test: list[np.ndarray]
    modes: list[str]


def load_pair(images_dir: str | Path, row: pd.Series, lights: Sequence[str], image_ext: str) -> Pair:
    golden: list[np.ndarray] = []
    test: list[np.ndarray] = []
    modes = []
    for light in lights:
        for column, out in (("golden_path", golden), ("input_path", test)):
            path = csvdata.image_file(images_dir, row[column], row["object_name"], light, image_ext)
            if not path.is_file():
                raise InputError(f"SDG transplant: image {path} (row {row['input_path']}/{row['object_name']}) "
                                 "does not exist; fix the CSV or the images.")
            array, mode = load_image(path)
            out.append(array)
            if column == "input_path":
                modes.append(mode)
    if any(g.shape != t.shape for g, t in zip(golden, test)):
        raise InputError(f"SDG transplant: row {row['input_path']}/{row['object_name']} has golden and test "
                         "images of different sizes.")
    return Pair(golden, test, modes)


def _scale(shape: tuple[int, ...]) -> float:
    return min(shape[:2]) / REFERENCE_SIZE


def register(pair: Pair) -> tuple[float, float]:
    """(dy, dx) of the pair's golden against its test (registration.py's convention), all lights at once."""
    import torch  # here, not at the top: the loop's data jobs import this module and need no torch (~1.5 s)

    from aoideft import registration

    def stack(images: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack([image.transpose(2, 0, 1) for image in images]))[None]

    shift = registration.estimate_shifts(stack(pair.golden), stack(pair.test),
                                         max_shift=MAX_SHIFT_PX * _scale(pair.golden[0].shape))
    return float(shift[0, 0]), float(shift[0, 1])


def shifted(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """``image`` sampled at (y + dy, x + dx) (registration.shift_images)."""
    if shift == (0.0, 0.0):
        return image
    import torch

    from aoideft import registration

    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    moved = registration.shift_images(tensor, torch.tensor([shift], dtype=torch.float32))[0]
    return moved.numpy().transpose(1, 2, 0)


def _gain(golden: np.ndarray, test: np.ndarray) -> float:
    """Least-squares gain of test against golden over the whole image, within GAIN_RANGE."""
    return float(np.clip((golden * test).sum() / max(float((golden * golden).sum()), 1e-6), *GAIN_RANGE))


@dataclass(frozen=True)
class Residual:
    """What a donor's test adds to its registered golden: per light H x W x C, already times ``alpha``."""

    planes: list[np.ndarray]
    alpha: np.ndarray  # H x W in [0, 1]
    box: tuple[int, int, int, int]  # (y0, y1, x0, x1) of the region
    golden: list[np.ndarray]  # the donor's registered golden per light (its structure around the defect)


def difference_map(pair: Pair) -> tuple[np.ndarray, list[np.ndarray]]:
    """(smoothed mean |test - gain x registered golden| H x W with a zero border, the registered goldens)."""
    shift = register(pair)
    golden = [shifted(image, shift) for image in pair.golden]
    raw = [test - _gain(g, test) * g for g, test in zip(golden, pair.test)]
    magnitude = blur(np.mean([np.abs(plane).mean(axis=2) for plane in raw], axis=0), 1.0)
    border = max(1, int(round(MARGIN_PX * _scale(magnitude.shape))))
    magnitude[:border], magnitude[-border:], magnitude[:, :border], magnitude[:, -border:] = 0, 0, 0, 0
    return magnitude, golden


def nuisance_floor(pairs: Sequence[Pair]) -> float:
    """How far PASS pairs differ at most, typically: the ``FLOOR_QUANTILE`` of their largest smoothed
    difference (placement tolerance, solder volume, gain and gamma drift). A defect residual is what
    stands above it; 0 without pairs."""
    peaks = [float(difference_map(pair)[0].max()) for pair in pairs]
    return float(np.quantile(peaks, FLOOR_QUANTILE)) if peaks else 0.0


def extract_residual(pair: Pair, floor: float = 0.0) -> Residual | None:
    """The donor's defect residual, or None when nothing stands above its noise and ``floor``.

    Hysteresis: pixels above max(median + THRESHOLD_SIGMAS robust sigmas, MIN_RESIDUAL, floor) seed
    the regions, which grow over connected pixels above half that; regions under MIN_AREA are dropped.
    """
    from scipy import ndimage  # here: every DEFT data job imports this module, few extract residuals

    magnitude, golden = difference_map(pair)
    median = float(np.median(magnitude))
    spread = 1.4826 * float(np.median(np.abs(magnitude - median)))
    high = max(median + THRESHOLD_SIGMAS * spread, MIN_RESIDUAL, floor)
    regions, count = ndimage.label(magnitude > high / 2)
    if count:
        index = np.arange(1, count + 1)
        seeded = ndimage.maximum(magnitude, regions, index=index) > high
        large = ndimage.sum(np.ones_like(magnitude), regions, index=index) >= MIN_AREA * _scale(magnitude.shape) ** 2
        mask = np.isin(regions, index[seeded & large])
    else:
        mask = np.zeros(magnitude.shape, bool)
    if not mask.any():
        return None
    alpha = np.clip(np.maximum(mask.astype(np.float32), blur(mask.astype(np.float32), 1.0) * 1.5), 0.0, 1.0)
    ys, xs = np.nonzero(alpha > 0.05)
    box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    planes = [(test - _gain(g, test) * g) * alpha[..., None] for g, test in zip(golden, pair.test)]
    return Residual(planes, alpha, box, golden)


def _context(box: tuple[int, int, int, int], offset: tuple[int, int], shape: tuple[int, int],
             ring: int) -> tuple[slice, slice] | None:
    y0, y1, x0, x1 = box
    dy, dx = offset
    top, bottom, left, right = y0 + dy - ring, y1 + dy + ring, x0 + dx - ring, x1 + dx + ring
    if top < 0 or left < 0 or bottom > shape[0] or right > shape[1]:
        return None
    return slice(top, bottom), slice(left, right)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / max(float(np.sqrt((a * a).sum() * (b * b).sum())), 1e-6))


def placement(residual: Residual, recipient: Pair) -> tuple[tuple[int, int], float]:
    """(integer (dy, dx) from the donor's position to where the recipient's test shows the structure
    the donor's golden has around the defect, that NCC): the highest NCC within SEARCH_PX, ties to
    the nearer offset; ((0, 0), -inf) when the context does not fit in the image."""
    shape = recipient.test[0].shape[:2]
    scale = _scale(shape)
    reach, ring = int(round(SEARCH_PX * scale)), max(1, int(round(CONTEXT_PX * scale)))
    donor_view = _context(residual.box, (0, 0), residual.golden[0].shape[:2], ring)
    if donor_view is None or residual.golden[0].shape[:2] != shape:
        return (0, 0), -np.inf
    donor = np.mean([image[donor_view].mean(axis=2) for image in residual.golden], axis=0)
    target = np.mean([image.mean(axis=2) for image in recipient.test], axis=0)
    offsets = sorted(((dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)),
                     key=lambda offset: offset[0] ** 2 + offset[1] ** 2)
    best, best_score = (0, 0), -np.inf
    for offset in offsets:
        view = _context(residual.box, offset, shape, ring)
        if view is None:
            continue
        score = _ncc(donor, target[view])
        if score > best_score + 1e-6:
            best, best_score = offset, score
    return best, best_score


def _moved(plane: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """``plane`` translated by an integer (dy, dx), zeros where it comes from outside."""
    out = np.zeros_like(plane)
    dy, dx = offset
    height, width = plane.shape[:2]
    src_y, dst_y = slice(max(0, -dy), min(height, height - dy)), slice(max(0, dy), min(height, height + dy))
    src_x, dst_x = slice(max(0, -dx), min(width, width - dx)), slice(max(0, dx), min(width, width + dx))
    out[dst_y, dst_x] = plane[src_y, src_x]
    return out


def transplant(residual: Residual, recipient: Pair, *, strength: float = 1.0) -> list[np.ndarray]:
    """The recipient's test images with the residual placed (see ``placement``), per light scaled by
    the recipient's brightness over the donor's around the defect, times ``strength``; clipped."""
    offset = placement(residual, recipient)[0]
    near_donor = blur((residual.alpha > 0.05).astype(np.float32), 3.0) > 0.01  # the defect and a ring around it
    near_recipient = _moved(near_donor, offset)
    out = []
    for plane, donor_golden, test in zip(residual.planes, residual.golden, recipient.test):
        gain = float(np.clip(test[near_recipient].mean() / max(float(donor_golden[near_donor].mean()), 1.0), *GAIN_RANGE))
        out.append(np.clip(test + strength * gain * _moved(plane, offset), 0, 255).astype(np.float32))
    return out


@dataclass(frozen=True)
class Nuisance:
    """How a pair's test differs from its golden besides content: ``shift`` (dy, dx), per-light
    ``gains`` (test / registered golden), ``blur`` (signed sigma: > 0 test blurrier, < 0 golden
    blurrier), ``noise`` (std of the remaining difference, grey levels)."""

    shift: tuple[float, float]
    gains: tuple[float, ...]
    blur: float
    noise: float


def measure_nuisance(pair: Pair) -> Nuisance:
    """The pair's nuisance; blur to a quarter pixel, chosen on both images smoothed by ``PRE_SMOOTH``
    (otherwise blurring the noisier image always looks like a better fit)."""
    shift = register(pair)
    golden = [shifted(image, shift) for image in pair.golden]
    gains = [_gain(g, t) for g, t in zip(golden, pair.test)]
    border = max(1, int(round(MARGIN_PX * _scale(pair.test[0].shape))))
    inner = (slice(border, -border), slice(border, -border))

    def leftover(sigma: float, smooth: float) -> float:
        """Mean squared test - gain x golden, the sharper of the two blurred by |sigma|, both by ``smooth``."""
        return float(np.mean([
            np.square(_blurred(_blurred(t, -sigma), smooth) - gain * _blurred(_blurred(g, sigma), smooth))[inner].mean()
            for g, t, gain in zip(golden, pair.test, gains)]))

    sigma = float(BLUR_SIGMAS[int(np.argmin([leftover(sigma, PRE_SMOOTH) for sigma in BLUR_SIGMAS]))])
    return Nuisance(shift, tuple(gains), sigma, float(np.sqrt(leftover(sigma, 0.0))))


def pass_variant(target: Nuisance, target_residual: Residual | None, recipient: Pair, recipient_nuisance: Nuisance,
                 rng: np.random.Generator) -> tuple[list[np.ndarray] | None, list[np.ndarray]]:
    """(golden, test) per light: the recipient pair given the target's nuisance (times a jitter in
    VARIANT_JITTER) on top of its own, and the target's residual, if any, transplanted; golden None
    when it stays the recipient's (only a target golden blurrier than its test changes it)."""
    jitter = float(rng.uniform(*VARIANT_JITTER))
    # golden(y) ~ test(y - s): a test sampled at (y + s_target - s_recipient) has the target's shift
    move = tuple(jitter * t - r for t, r in zip(target.shift, recipient_nuisance.shift))
    test_blur = np.sqrt(max((jitter * max(target.blur, 0.0)) ** 2 - max(recipient_nuisance.blur, 0.0) ** 2, 0.0))
    golden_blur = np.sqrt(max((jitter * max(-target.blur, 0.0)) ** 2 - max(-recipient_nuisance.blur, 0.0) ** 2, 0.0))
    noise = np.sqrt(max((jitter * target.noise) ** 2 - recipient_nuisance.noise**2, 0.0))
    tests = transplant(target_residual, recipient) if target_residual is not None else recipient.test
    out = []
    for test, target_gain, recipient_gain in zip(tests, target.gains, recipient_nuisance.gains):
        test = _blurred(shifted(test, move) * (target_gain / recipient_gain), float(test_blur))
        test = test + rng.normal(0.0, float(noise), test.shape).astype(np.float32)
        out.append(np.clip(test, 0, 255).astype(np.float32))
    goldens = [_blurred(golden, float(golden_blur)) for golden in recipient.golden] if golden_blur > 0 else None
    return goldens, out


def _blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([blur(image[..., c], sigma) for c in range(image.shape[2])], axis=2).astype(np.float32)
