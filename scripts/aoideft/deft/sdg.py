"""SDG: synthetic (golden, test) pairs for the routed weak labels.

NVIDIA synthesises defects with a diffusion inpainting model (Cosmos AnomalyGen) that cannot ship
offline, so this module draws them *procedurally*, in image space, with generic operations that work
on any golden crop (no scene model): the component is assumed centred in the crop, as in AOI crops,
and bright regions are taken as pads/solder. Each operation draws its geometry ONCE per pair and
applies it to every light with a light-dependent appearance (solder is specular in SolderLight,
duller elsewhere), so the lights of a pair stay consistent. PASS targets get nuisance variants
(misregistration, gain/gamma drift, noise, JPEG, dust, small rotation) that must still read as PASS.

Customer pre-generated pairs (``augmentation/synthetic/``) are ingested by ``ingest_pregenerated``.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection

import numpy as np
import pandas as pd
from PIL import Image

from aoideft import csvdata, fsutil
from aoideft.decode_cache import eight_bit
from aoideft.errors import InputError
from aoideft.progress import Progress

PASS_LABEL = "PASS"
MANDATORY_COLUMNS = ("input_path", "golden_path", "label", "object_name")
SDG_COLUMNS = ("sdg_source", "sdg_target", "sdg_method", "sdg_mode", "sdg_strength", "sdg_change")
# Metadata a synthetic row must not inherit from its source row (per-stage outputs, not sample facts).
NOT_METADATA = frozenset(MANDATORY_COLUMNS) | frozenset(SDG_COLUMNS) | {
    "row_key", "siamese_score", "weakness", "misclassified", "filepath", "light",
    "similarity", "target_key", "target_label", "drop_reason", "failure_mode", "side", "severity", "mode_quota",
}
DEFAULT_MATCH_COLUMNS = ("comp_type_1",)
# How strongly solder/metal reflects under each light (1 = fully specular).
LIGHT_SPECULAR = {"SolderLight": 1.0, "WhiteLight": 0.7, "UniformLight": 0.5, "LowAngleLight": 0.35}
DEFAULT_SPECULAR = 0.5
REFERENCE_SIZE = 64.0  # geometry ranges below are in pixels of a 64-px crop and scale with the crop
PREGENERATED_TEST_DIR = "reconstructed_image"
PREGENERATED_GOLDEN_DIR = "original_image"
PREGENERATED_MANIFEST = "manifest.csv"


# ---------------------------------------------------------------------------------------------
# Paths and names


def sdg_dirs(iteration: int) -> tuple[str, str]:
    """(input_path, golden_path) of iteration N's synthetic rows, relative to ``<run>/images``."""
    return f"sdg/iter{iteration}/test", f"sdg/iter{iteration}/golden"


def sdg_object_name(iteration: int, index: int) -> str:
    return f"sdg_iter{iteration}_{index:04d}"


# ---------------------------------------------------------------------------------------------
# Image helpers (float32 arrays H x W x C in [0, 255]; C = 1 for grey images)


def load_image(path: Path) -> tuple[np.ndarray, str]:
    """The image as float32 H x W x C and the PIL mode to write it back in ("L" or "RGB")."""
    with Image.open(path) as image:
        mode = "L" if image.mode in ("L", "1", "I", "I;16", "F") else "RGB"
        array = np.asarray(eight_bit(image).convert(mode), dtype=np.float32)
    return (array[..., None] if array.ndim == 2 else array), mode


def encode_image(array: np.ndarray, mode: str, image_ext: str, *, jpeg_quality: int = 95) -> bytes:
    """Encode ``array`` (clipped to 0..255) in the format ``image_ext`` names."""
    pixels = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode=mode)
    fmt = Image.registered_extensions().get(image_ext.lower())
    if fmt is None:
        raise InputError(f"image_ext {image_ext!r} is not an image format Pillow can write; use e.g. .jpg or .png.")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": jpeg_quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _gray(array: np.ndarray) -> np.ndarray:
    return array.mean(axis=2)


def _blur(plane: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D array, edges replicated."""
    if sigma <= 0:
        return plane
    radius = max(1, int(round(3 * sigma)))
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    padded = np.pad(plane.astype(np.float32), radius, mode="edge")
    rows = np.lib.stride_tricks.sliding_window_view(padded, kernel.size, axis=0) @ kernel
    return np.lib.stride_tricks.sliding_window_view(rows, kernel.size, axis=1) @ kernel


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)


def _ellipse(shape, centre, radii, angle_deg: float = 0.0, softness: float = 1.0) -> np.ndarray:
    """Soft-edged filled ellipse, values in [0, 1]."""
    yy, xx = _grid(shape)
    theta = np.deg2rad(angle_deg)
    dy, dx = yy - centre[0], xx - centre[1]
    u = (dx * np.cos(theta) + dy * np.sin(theta)) / max(radii[1], 0.5)
    v = (-dx * np.sin(theta) + dy * np.cos(theta)) / max(radii[0], 0.5)
    distance = (np.sqrt(u**2 + v**2) - 1.0) * min(radii)  # ~ pixels outside the rim
    return np.clip(0.5 - distance / (2 * softness), 0.0, 1.0)


def _stroke(shape, start, end, radius: float) -> np.ndarray:
    """Soft capsule (thick line segment) from ``start`` to ``end`` (y, x), values in [0, 1]."""
    yy, xx = _grid(shape)
    p0, p1 = np.asarray(start, np.float32), np.asarray(end, np.float32)
    seg = p1 - p0
    t = ((yy - p0[0]) * seg[0] + (xx - p0[1]) * seg[1]) / max(float(seg @ seg), 1e-6)
    t = np.clip(t, 0.0, 1.0)
    distance = np.hypot(yy - (p0[0] + t * seg[0]), xx - (p0[1] + t * seg[1]))
    return np.clip(radius + 0.5 - distance, 0.0, 1.0)


def _blend(image: np.ndarray, colour: np.ndarray | float, alpha: np.ndarray) -> np.ndarray:
    alpha = alpha[..., None] if alpha.ndim == 2 else alpha
    return image * (1 - alpha) + colour * alpha


def _central_box(shape, rng: np.random.Generator, scale: float, frac=(0.38, 0.55)) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of a box around the crop centre: where an AOI crop puts its component."""
    height, width = shape
    box_h = int(round(height * rng.uniform(*frac)))
    box_w = int(round(width * rng.uniform(*frac)))
    jitter = int(round(2 * scale))
    cy = height // 2 + int(rng.integers(-jitter, jitter + 1))
    cx = width // 2 + int(rng.integers(-jitter, jitter + 1))
    y0 = int(np.clip(cy - box_h // 2, 1, height - box_h - 1))
    x0 = int(np.clip(cx - box_w // 2, 1, width - box_w - 1))
    return y0, y0 + box_h, x0, x0 + box_w


def _substrate(image: np.ndarray, out_shape: tuple[int, int], seed: int) -> np.ndarray:
    """Texture of ``out_shape`` tiled from random blocks of the crop's border ring (bare board)."""
    height, width, channels = image.shape
    block = max(2, min(height, width) // 8)
    rng = np.random.default_rng(seed)  # same seed for every light -> same blocks in every light
    rows, cols = -(-out_shape[0] // block), -(-out_shape[1] // block)
    texture = np.empty((rows * block, cols * block, channels), np.float32)
    for r in range(rows):
        for c in range(cols):
            side = rng.integers(4)
            along = int(rng.integers(0, (width if side < 2 else height) - block + 1))
            y, x = [(0, along), (height - block, along), (along, 0), (along, width - block)][side]
            texture[r * block : (r + 1) * block, c * block : (c + 1) * block] = image[y : y + block, x : x + block]
    return texture[: out_shape[0], : out_shape[1]]


def _with_box_cleared(image: np.ndarray, box, seed: int) -> np.ndarray:
    """``image`` with ``box`` replaced by substrate texture (soft 1-px seam)."""
    y0, y1, x0, x1 = box
    filled = image.copy()
    filled[y0:y1, x0:x1] = _substrate(image, (y1 - y0, x1 - x0), seed)
    mask = np.zeros(image.shape[:2], np.float32)
    mask[y0:y1, x0:x1] = 1.0
    return _blend(image, filled, np.clip(_blur(mask, 0.7) * 1.5, 0, 1))


def _paste(canvas: np.ndarray, patch: np.ndarray, top: int, left: int, alpha: np.ndarray | None = None) -> np.ndarray:
    """Paste ``patch`` with its top-left at (top, left), clipped to the canvas."""
    out = canvas.copy()
    height, width = canvas.shape[:2]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + patch.shape[0], height), min(left + patch.shape[1], width)
    if y1 <= y0 or x1 <= x0:
        return out
    part = patch[y0 - top : y1 - top, x0 - left : x1 - left]
    if alpha is None:
        out[y0:y1, x0:x1] = part
    else:
        out[y0:y1, x0:x1] = _blend(out[y0:y1, x0:x1], part, alpha[y0 - top : y1 - top, x0 - left : x1 - left])
    return out


def _transform_planes(patch: np.ndarray, op: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    """Apply a PIL geometric op to each channel of a float patch (mode "F" keeps full precision)."""
    return np.stack([np.asarray(op(Image.fromarray(patch[..., c], mode="F")), np.float32) for c in range(patch.shape[2])], axis=2)


def _paint_solder(image: np.ndarray, coverage: np.ndarray, highlight: np.ndarray, specular: float) -> np.ndarray:
    """Solder over ``coverage`` (0..1): bright, opaque grey with a hot spot at ``highlight`` under
    SolderLight; duller and more see-through under diffuse lights."""
    colour = ((120 + 120 * specular) * (0.8 + 0.2 * highlight * specular))[..., None]
    return _blend(image, colour, coverage * (0.6 + 0.4 * specular))


def _bright_mask(guide: np.ndarray, level: float) -> np.ndarray:
    """Pixels brighter than ``level`` of the way from the median to the top of the crop's range (pads, solder)."""
    smooth = _blur(guide, 0.7)
    median, top = np.median(smooth), np.percentile(smooth, 99)
    return smooth >= median + level * max(top - median, 1.0)


def _bright_point(guide: np.ndarray, region: tuple[int, int, int, int]) -> tuple[float, float]:
    """(y, x) of the brightest smoothed pixel inside ``region`` of the guide (a pad, usually)."""
    y0, y1, x0, x1 = region
    smooth = _blur(guide, 1.5)[y0:y1, x0:x1]
    y, x = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    return float(y0 + y), float(x0 + x)


# ---------------------------------------------------------------------------------------------
# Defect operations: plan_* draws the geometry once per pair; apply_* renders it for one light.


@dataclass(frozen=True)
class DefectPlan:
    kind: str
    params: dict = field(default_factory=dict)
    seed: int = 0  # texture/noise seed shared by all lights of the pair


def _plan_solder_blob(rng, guide, scale):
    # Excess solder spills over a pad's edge: a dome centred a few pixels off the brightest pad.
    height, width = guide.shape
    band = (height // 8, height - height // 8, width // 8, width - width // 8)
    cy, cx = _bright_point(guide, band)
    direction = rng.uniform(0, 2 * np.pi)
    reach = rng.uniform(2, 4) * scale
    cy, cx = cy + reach * np.sin(direction), cx + reach * np.cos(direction)
    radii = (rng.uniform(6, 10) * scale, rng.uniform(6, 10) * scale)
    return {"centre": (cy, cx), "radii": radii, "angle": rng.uniform(0, 180),
            "highlight": (cy - radii[0] * 0.3, cx - radii[1] * 0.3)}


def _apply_solder_blob(image, params, specular, seed):
    shape = image.shape[:2]
    coverage = _ellipse(shape, params["centre"], params["radii"], params["angle"])
    highlight = _ellipse(shape, params["highlight"], tuple(r * 0.4 for r in params["radii"]), softness=2.0)
    return _paint_solder(image, coverage, highlight, specular)


def _bridge_ends(guide: np.ndarray, rng, scale) -> tuple[tuple[float, float], tuple[float, float]]:
    """Two bright regions (pads/leads) with a darker gap between them, both near the crop centre.

    The first end is the brightest smoothed pixel of the central band; the second is drawn among the
    bright pixels at least a few pixels away, favouring those behind the darkest gap.
    """
    height, width = guide.shape
    smooth = _blur(guide, 1.0)
    y0, y1, x0, x1 = height // 6, height - height // 6, width // 6, width - width // 6
    start = _bright_point(guide, (y0, y1, x0, x1))
    band = np.zeros(guide.shape, bool)
    band[y0:y1, x0:x1] = True
    ys, xs = np.nonzero(band & (smooth >= np.percentile(smooth[band], 80)))
    far = np.hypot(ys - start[0], xs - start[1]) >= 6 * scale
    if not far.any():
        return (height / 2, x0), (height / 2, x1)
    ys, xs = ys[far], xs[far]
    samples = np.linspace(0.2, 0.8, 7)
    gap = np.array([
        smooth[int(y), int(x)] - smooth[(start[0] + samples * (y - start[0])).astype(int), (start[1] + samples * (x - start[1])).astype(int)].mean()
        for y, x in zip(ys, xs)
    ])
    best = np.flatnonzero(gap >= np.percentile(gap, 90))
    pick = int(rng.choice(best))
    return start, (float(ys[pick]), float(xs[pick]))


def _plan_bridge(rng, guide, scale):
    start, end = _bridge_ends(guide, rng, scale)
    return {"start": start, "end": end, "radius": rng.uniform(1.5, 3.0) * scale}


def _apply_bridge(image, params, specular, seed):
    shape = image.shape[:2]
    coverage = _stroke(shape, params["start"], params["end"], params["radius"])
    mid = tuple((a + b) / 2 for a, b in zip(params["start"], params["end"]))
    highlight = _ellipse(shape, mid, (params["radius"] * 2, params["radius"] * 2), softness=2.0)
    return _paint_solder(image, coverage, highlight, specular)


def _plan_box(rng, guide, scale):
    return {"box": _central_box(guide.shape, rng, scale)}


def _plan_missing(rng, guide, scale):
    # The body goes, its pads stay: the brightest pixels (pads, solder) are kept as bare pads.
    bright = _bright_mask(guide, 0.5).astype(np.float32)
    pads = _blur(bright, 1.5 * scale) > 0.5  # drops small bright marks (body print), keeps pad-sized areas
    return {"box": _central_box(guide.shape, rng, scale), "keep": pads}


def _apply_missing(image, params, specular, seed):
    keep = _blur(params["keep"].astype(np.float32), 0.5)
    return _blend(_with_box_cleared(image, params["box"], seed), image, keep)


def _plan_insufficient(rng, guide, scale):
    return {"mask": _bright_mask(guide, rng.uniform(0.4, 0.6)), "strength": rng.uniform(0.45, 0.7)}


def _apply_insufficient(image, params, specular, seed):
    # Thin solder reflects less: darken the brightest (pad) regions towards the substrate level,
    # most under SolderLight, and shrink them (the rim of each pad goes fully to substrate).
    mask = params["mask"].astype(np.float32)
    core = _blur(mask, 1.0) > 0.85
    alpha = np.where(core, 0.5, 1.0) * mask * params["strength"] * (0.4 + 0.6 * specular)
    substrate = np.median(image.reshape(-1, image.shape[2]), axis=0)
    return _blend(image, substrate, _blur(alpha, 0.6))


def _plan_shift(rng, guide, scale):
    magnitude = rng.uniform(3, 8) * scale
    angle = rng.uniform(0, 2 * np.pi)
    return {"box": _central_box(guide.shape, rng, scale),
            "offset": (int(round(magnitude * np.sin(angle))), int(round(magnitude * np.cos(angle))))}


def _apply_shift(image, params, specular, seed):
    y0, y1, x0, x1 = params["box"]
    dy, dx = params["offset"]
    return _paste(_with_box_cleared(image, params["box"], seed), image[y0:y1, x0:x1], y0 + dy, x0 + dx)


def _plan_skew(rng, guide, scale):
    return {"box": _central_box(guide.shape, rng, scale), "angle": rng.choice([-1, 1]) * rng.uniform(8, 20)}


def _apply_skew(image, params, specular, seed):
    y0, y1, x0, x1 = params["box"]
    rotate = lambda plane: plane.rotate(params["angle"], resample=Image.Resampling.BILINEAR)
    rotated = _transform_planes(image[y0:y1, x0:x1], rotate)
    alpha = _transform_planes(np.ones((y1 - y0, x1 - x0, 1), np.float32), rotate)[..., 0]
    return _paste(_with_box_cleared(image, params["box"], seed), rotated, y0, x0, alpha)


def _plan_tombstone(rng, guide, scale):
    return {"box": _central_box(guide.shape, rng, scale), "axis": int(rng.integers(2)),
            "lift_far_end": bool(rng.integers(2)), "foreshorten": rng.uniform(0.55, 0.75)}


def _apply_tombstone(image, params, specular, seed):
    # One end lifts: seen from above the part looks shorter along its axis (anchored at the end that
    # stays on its pad), the lifted end catches more light, and the vacated pad shows bare board.
    y0, y1, x0, x1 = params["box"]
    patch = image[y0:y1, x0:x1]
    axis = params["axis"]
    length = patch.shape[axis]
    new_length = max(2, int(round(length * params["foreshorten"])))
    size = (patch.shape[1], new_length) if axis == 0 else (new_length, patch.shape[0])
    short = _transform_planes(patch, lambda plane: plane.resize(size, Image.Resampling.BILINEAR))
    ramp = np.linspace(0.0, 1.0, new_length, dtype=np.float32)
    if not params["lift_far_end"]:
        ramp = ramp[::-1]
    # only the part catches the light, not the board around it inside the box
    board = np.median(np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]), axis=0)
    on_part = np.clip(np.abs(short - board).mean(axis=2, keepdims=True) / 40.0, 0.0, 1.0)
    shade = 1.0 + (0.2 + 0.35 * specular) * on_part * (ramp[:, None, None] if axis == 0 else ramp[None, :, None])
    offset = length - new_length if not params["lift_far_end"] else 0
    top, left = (y0 + offset, x0) if axis == 0 else (y0, x0 + offset)
    return _paste(_with_box_cleared(image, params["box"], seed), short * shade, top, left)


def _apply_polarity(image, params, specular, seed):
    y0, y1, x0, x1 = params["box"]
    return _paste(image, image[y0:y1, x0:x1][::-1, ::-1], y0, x0)


def _plan_scratch(rng, guide, scale):
    height, width = guide.shape
    centre = np.array([height / 2, width / 2]) + rng.uniform(-0.15, 0.15, 2) * np.array([height, width])
    half = rng.uniform(0.25, 0.45) * min(height, width)
    angle = rng.uniform(0, np.pi)
    direction = np.array([np.sin(angle), np.cos(angle)]) * half
    return {"start": tuple(centre - direction), "end": tuple(centre + direction),
            "radius": rng.uniform(0.5, 1.0) * scale, "delta": rng.choice([-1, 1]) * rng.uniform(60, 100)}


def _plan_surface(rng, guide, scale):
    if rng.random() < 0.5:
        return {"scratch": _plan_scratch(rng, guide, scale)}
    height, width = guide.shape
    centre = (height / 2 + rng.uniform(-0.2, 0.2) * height, width / 2 + rng.uniform(-0.2, 0.2) * width)
    radii = (rng.uniform(0.12, 0.25) * height, rng.uniform(0.12, 0.25) * width)
    return {"stain": {"centre": centre, "radii": radii, "angle": rng.uniform(0, 180), "darken": rng.uniform(0.35, 0.55)}}


def _apply_scratch(image, scratch, specular):
    # Scratches and stains scatter light: most visible under grazing (low-angle) light.
    alpha = _stroke(image.shape[:2], scratch["start"], scratch["end"], scratch["radius"])
    return image + (scratch["delta"] * (1.2 - 0.5 * specular) * alpha)[..., None]


def _apply_surface(image, params, specular, seed):
    if "scratch" in params:
        return _apply_scratch(image, params["scratch"], specular)
    stain = params["stain"]
    alpha = _ellipse(image.shape[:2], stain["centre"], stain["radii"], stain["angle"], softness=2.0)
    mottle = 1.0 + 0.15 * _blur(np.random.default_rng(seed).standard_normal(image.shape[:2]).astype(np.float32), 1.5)
    return _blend(image, image * (1 - stain["darken"] * (1.2 - 0.5 * specular)) * mottle[..., None], alpha)


def _plan_generic(rng, guide, scale):
    height, width = guide.shape
    centre = (height / 2 + rng.uniform(-0.2, 0.2) * height, width / 2 + rng.uniform(-0.2, 0.2) * width)
    return {"centre": centre, "radii": (rng.uniform(4, 9) * scale, rng.uniform(4, 9) * scale),
            "angle": rng.uniform(0, 180), "delta": rng.choice([-1, 1]) * rng.uniform(60, 110),
            "scratch": _plan_scratch(rng, guide, scale)}


def _apply_generic(image, params, specular, seed):
    alpha = _ellipse(image.shape[:2], params["centre"], params["radii"], params["angle"], softness=1.5)
    blob = image + (params["delta"] * alpha)[..., None]
    return _apply_scratch(blob, params["scratch"], specular)


def _plan_nuisance(rng, guide, scale):
    """PASS stays PASS: only acquisition nuisances, each at most what a real line sees."""
    height, width = guide.shape
    return {
        "offset": (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))),
        "rotation": float(rng.uniform(-1.5, 1.5)) if rng.random() < 0.5 else 0.0,
        "gain": float(rng.uniform(0.95, 1.05)),
        "gamma": float(rng.uniform(0.95, 1.05)),
        "noise": float(rng.uniform(0.5, 3.0)),
        "jpeg_quality": int(rng.integers(70, 91)) if rng.random() < 0.5 else None,
        "dust": [((rng.uniform(0, height), rng.uniform(0, width)), rng.uniform(0.5, 1.2), rng.choice([-1, 1]) * rng.uniform(20, 50))
                 for _ in range(int(rng.integers(0, 4)))],
    }


def _apply_nuisance(image, params, specular, seed):
    dy, dx = params["offset"]
    pad = 4
    out = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    if params["rotation"]:
        out = _transform_planes(out, lambda plane: plane.rotate(params["rotation"], resample=Image.Resampling.BILINEAR))
    height, width = image.shape[:2]
    out = out[pad - dy : pad - dy + height, pad - dx : pad - dx + width]
    out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** params["gamma"] * params["gain"]
    for centre, radius, delta in params["dust"]:
        out = out + (delta * _ellipse((height, width), centre, (radius, radius), softness=0.7))[..., None]
    out = out + np.random.default_rng(seed).normal(0.0, params["noise"], out.shape).astype(np.float32)
    if params["jpeg_quality"] is not None:
        mode = "L" if out.shape[2] == 1 else "RGB"
        with Image.open(io.BytesIO(encode_image(out, mode, ".jpg", jpeg_quality=params["jpeg_quality"]))) as decoded:
            out = np.asarray(decoded.convert(mode), np.float32).reshape(out.shape)
    return out


OPERATIONS: dict[str, tuple[Callable, Callable]] = {
    "solder_blob": (_plan_solder_blob, _apply_solder_blob),
    "bridge": (_plan_bridge, _apply_bridge),
    "missing": (_plan_missing, _apply_missing),
    "insufficient": (_plan_insufficient, _apply_insufficient),
    "shift": (_plan_shift, _apply_shift),
    "skew": (_plan_skew, _apply_skew),
    "tombstone": (_plan_tombstone, _apply_tombstone),
    "polarity": (_plan_box, _apply_polarity),
    "surface": (_plan_surface, _apply_surface),
    "generic": (_plan_generic, _apply_generic),
    "nuisance": (_plan_nuisance, _apply_nuisance),
}
LABEL_OPERATION = {
    "EXCESS_SOLDER": "solder_blob", "BRIDGE": "bridge", "MISSING": "missing",
    "INSUFFICIENT_SOLDER": "insufficient", "SHIFT": "shift", "SKEW": "skew", "TOMBSTONE": "tombstone",
    "POLARITY": "polarity", "SURFACE_ANOMALY": "surface", PASS_LABEL: "nuisance",
}


def operation_for(label: str) -> str:
    """The procedural operation for a label; labels without a dedicated one get a generic anomaly."""
    return LABEL_OPERATION.get(label, "generic")


def plan_defect(label: str, goldens: list[np.ndarray], rng: np.random.Generator) -> DefectPlan:
    """Draw one defect geometry for a pair from the mean brightness of all its lights."""
    guide = np.mean([_gray(image) for image in goldens], axis=0)
    scale = min(guide.shape) / REFERENCE_SIZE
    kind = operation_for(label)
    return DefectPlan(kind, OPERATIONS[kind][0](rng, guide, scale), int(rng.integers(2**31)))


def render(golden: np.ndarray, plan: DefectPlan, light: str) -> np.ndarray:
    """The synthetic test image for one light (float32, clipped to 0..255)."""
    specular = LIGHT_SPECULAR.get(light, DEFAULT_SPECULAR)
    return np.clip(OPERATIONS[plan.kind][1](golden, plan.params, specular, plan.seed), 0, 255).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Budget and source choice


def split_budget(counts: dict[str, int], num_sdg: int) -> dict[str, int]:
    """Spread ``num_sdg`` over labels proportionally to ``counts``, at least one per label while budget lasts.

    Largest-remainder apportionment; then every label left at zero takes one pair from the label
    most above its proportional quota. Labels are ordered by count (desc), then name.
    """
    labels = sorted((label for label, n in counts.items() if n > 0), key=lambda label: (-counts[label], label))
    if num_sdg <= 0 or not labels:
        return {}
    if num_sdg <= len(labels):
        return {label: 1 for label in labels[:num_sdg]}
    total = sum(counts[label] for label in labels)
    quotas = {label: num_sdg * counts[label] / total for label in labels}
    alloc = {label: int(np.floor(quota)) for label, quota in quotas.items()}
    by_remainder = sorted(labels, key=lambda label: (-(quotas[label] - alloc[label]), labels.index(label)))
    for label in by_remainder[: num_sdg - sum(alloc.values())]:
        alloc[label] += 1
    for label in [label for label in labels if alloc[label] == 0]:
        donor = max((l for l in labels if alloc[l] > 1), key=lambda l: (alloc[l] - quotas[l], -labels.index(l)))
        alloc[donor] -= 1
        alloc[label] = 1
    return alloc


class _SourcePicker:
    """Source rows for targets: same values in the match columns when possible, relaxed one column at
    a time from the least important (a mode's defining columns come first, then ``match_columns``),
    else any row.

    Within a candidate group rows are drawn without replacement (one shuffled cycle at a time) so a
    golden is reused only when its group is exhausted.
    """

    def __init__(self, sources: pd.DataFrame, match_columns: Collection[str], rng: np.random.Generator):
        self.sources, self.rng = sources, rng
        self.columns = [c for c in match_columns if c in sources.columns]
        self.cycles: dict[tuple, list[int]] = {}

    def pick(self, target: pd.Series, extra_columns: Collection[str] = ()) -> int:
        columns = [*(c for c in extra_columns if c in self.sources.columns), *self.columns]
        group = tuple(dict.fromkeys((c, target[c]) for c in columns if c in target.index and pd.notna(target[c])))
        candidates = self._candidates(group)
        while not candidates and group:
            group = group[:-1]
            candidates = self._candidates(group)
        queue = self.cycles.get(group)
        if not queue:
            queue = [candidates[i] for i in self.rng.permutation(len(candidates))]
            self.cycles[group] = queue
        return queue.pop()

    def _candidates(self, group: tuple) -> list[int]:
        mask = np.ones(len(self.sources), bool)
        for column, value in group:
            mask &= (self.sources[column] == value).to_numpy()
        return list(np.flatnonzero(mask))


# ---------------------------------------------------------------------------------------------
# Synthesis


@dataclass(frozen=True)
class Slot:
    """One pair to synthesise: its target row, how strong the change is, the mode it serves."""

    target: pd.Series
    strength: float = 1.0  # 1 = the full drawn defect; lower blends it toward the golden (subtler)
    mode: str = ""
    match_columns: tuple[str, ...] = ()  # besides DEFAULT_MATCH_COLUMNS, e.g. the mode's defining column


MIN_STRENGTH = 0.5  # a missed defect at the bottom of the score range is drawn at half strength


def label_slots(targets: pd.DataFrame, num_sdg: int) -> list[Slot]:
    """TAO's allocation: ``num_sdg`` pairs split over the targets' labels (see ``split_budget``)."""
    unique_targets = _unique_targets(targets)
    counts = unique_targets["label"].value_counts().to_dict()
    budget = split_budget({str(k): int(v) for k, v in counts.items()}, num_sdg)
    return [Slot(target) for target in _target_slots(unique_targets, budget)]


def mode_slots(targets: pd.DataFrame, modes: list[dict], *, oversample: int = 1) -> list[Slot]:
    """``oversample`` x each mode's quota, cycling the mode's weakest rows first.

    ``targets`` carry ``failure_mode``, ``mode_quota``, ``weakness`` and ``severity`` (failure_modes
    targets). Conditioning: the target's label and component type (source goldens are matched on
    them and on the mode's defining column), and for missed defects the severity: a defect the model
    scored lowest is drawn at ``MIN_STRENGTH``, one near the target threshold at full strength.
    """
    definitions = {mode["id"]: mode for mode in modes}
    slots = []
    for mode_id, rows in targets.groupby("failure_mode", sort=True):
        rows = rows.sort_values(["weakness", "row_key"], ascending=[False, True], kind="stable")
        count = int(rows["mode_quota"].iloc[0]) * max(1, oversample)
        extra = tuple(definitions.get(mode_id, {}).get("definition", {}).keys() - {"cluster", "label"})
        for i in range(count):
            target = rows.iloc[i % len(rows)]
            severity = target.get("severity")
            graded = target["label"] != PASS_LABEL and severity is not None and not pd.isna(severity)
            strength = MIN_STRENGTH + (1 - MIN_STRENGTH) * float(severity) if graded else 1.0
            slots.append(Slot(target, strength, str(mode_id), extra))
    return slots


def synthesize(
    targets: pd.DataFrame,
    sources: pd.DataFrame,
    *,
    source_images_dir: str | Path,
    lights: list[str] | tuple[str, ...],
    image_ext: str,
    run_images_root: str | Path,
    iteration: int,
    num_sdg: int = 20,
    seed: int = 0,
    match_columns: Collection[str] = DEFAULT_MATCH_COLUMNS,
    slots: list[Slot] | None = None,
) -> pd.DataFrame:
    """Write synthetic pairs for the routed ``targets`` and return their CSV rows.

    ``slots`` (one per pair, e.g. ``mode_slots``) decide what is drawn; without them, ``num_sdg``
    pairs split over the targets' labels (TAO's rule). ``targets``: SDG-routed gap rows (per light is
    fine; de-duplicated by row key), weakest first per label when a ``weakness`` column is present.
    ``sources``: training rows whose golden images are used (relative to ``source_images_dir``).
    Deterministic in (seed, iteration).
    """
    if slots is None:
        slots = label_slots(targets, num_sdg)
    if not slots:
        return _as_rows([], sources)
    if sources.empty:
        raise InputError("SDG has targets but the training data has no rows to take golden images from.")
    sources = sources.reset_index(drop=True)
    source_keys = csvdata.row_key(sources)
    picker = _SourcePicker(sources, match_columns, np.random.default_rng([seed, iteration]))
    test_dir, golden_dir = sdg_dirs(iteration)
    out_root = Path(run_images_root)
    rows = []
    progress = Progress(f"SDG iteration {iteration}", len(slots), unit="pairs").start(f"x {len(lights)} lights")
    for index, slot in enumerate(slots):
        target = slot.target
        source = sources.iloc[picker.pick(target, slot.match_columns)]
        name = sdg_object_name(iteration, index)
        golden_files = [
            csvdata.image_file(source_images_dir, source["golden_path"], source["object_name"], light, image_ext)
            for light in lights
        ]
        goldens = [_load_golden(path, source_keys.iloc[source.name]) for path in golden_files]
        plan = plan_defect(target["label"], [image for image, _ in goldens], np.random.default_rng([seed, iteration, index]))
        change = 0.0
        for light, path, (golden, mode) in zip(lights, golden_files, goldens):
            fsutil.write_bytes(csvdata.image_file(out_root, golden_dir, name, light, image_ext), path.read_bytes())
            drawn = render(golden, plan, light)
            if slot.strength != 1.0:
                drawn = golden + slot.strength * (drawn - golden)
            change = max(change, float(np.abs(drawn - golden).mean()))
            fsutil.write_bytes(csvdata.image_file(out_root, test_dir, name, light, image_ext),
                               encode_image(drawn, mode, image_ext))
        rows.append({
            "input_path": test_dir, "golden_path": golden_dir, "label": target["label"], "object_name": name,
            **_metadata(source),
            "sdg_source": source_keys.iloc[source.name], "sdg_target": target["row_key"],
            "sdg_method": f"procedural:{plan.kind}", "sdg_mode": slot.mode,
            "sdg_strength": round(slot.strength, 4), "sdg_change": round(change, 4),
        })
        progress.advance()
    progress.finish()
    return _as_rows(rows, sources)


@dataclass(frozen=True)
class VerifyRules:
    """When a synthetic pair teaches nothing: see ``verify``."""

    pass_threshold: float  # the KPI threshold (100% recall): PASS pairs far below it are already right
    defect_threshold: float  # the target-FAR threshold: defects far above it are already caught
    margin: float = 0.15
    near_duplicate_cosine: float = 0.995
    min_change: float = 0.5  # mean |test - golden| in grey levels, worst light


def verify(candidates: pd.DataFrame, scores: np.ndarray, embeddings: np.ndarray, rules: VerifyRules,
           quotas: dict[str, int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(accepted, rejected + reject_reason/reject_detail) in candidate order, scored by the current model.

    Rejected, in this order: no visible change; a defect the model scores ``margin`` above the
    defect threshold or a PASS pair ``margin`` below the PASS threshold (the model already gets it
    right with a wide margin); a near-duplicate (embedding cosine >= ``near_duplicate_cosine``) of
    an accepted pair; surplus beyond its mode's quota (``quotas`` by ``sdg_mode``).
    """
    if len(candidates) != len(scores) or len(candidates) != len(embeddings):
        raise ValueError(f"{len(candidates)} candidates but {len(scores)} scores and {len(embeddings)} embeddings")
    frame = candidates.reset_index(drop=True).assign(sdg_score=np.asarray(scores, dtype=float))
    vectors = np.asarray(embeddings, dtype=np.float64)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    is_pass = (frame["label"] == PASS_LABEL).to_numpy()
    accepted: list[int] = []
    taken: dict[str, int] = {}
    rejected: dict[int, tuple[str, str]] = {}  # row -> (reason code, detail)
    for i, row in frame.iterrows():
        score, mode, change = float(row["sdg_score"]), str(row.get("sdg_mode", "")), float(row["sdg_change"])
        similarity = vectors[accepted] @ vectors[i] if accepted else np.zeros(1)
        if change < rules.min_change:
            rejected[i] = ("no_visible_change", f"mean |test - golden| {change:.2f} < {rules.min_change}")
        elif is_pass[i] and score <= rules.pass_threshold - rules.margin:
            rejected[i] = ("already_passed", f"score {score:.3f} <= {rules.pass_threshold - rules.margin:.3f}")
        elif not is_pass[i] and score >= rules.defect_threshold + rules.margin:
            rejected[i] = ("already_flagged", f"score {score:.3f} >= {rules.defect_threshold + rules.margin:.3f}")
        elif similarity.max() >= rules.near_duplicate_cosine:
            twin = frame.at[accepted[int(similarity.argmax())], "object_name"]
            rejected[i] = ("near_duplicate", f"of {twin} (cosine {similarity.max():.4f})")
        elif quotas is not None and taken.get(mode, 0) >= quotas.get(mode, 0):
            rejected[i] = ("surplus", f"mode {mode} already has its {quotas.get(mode, 0)} pair(s)")
        else:
            accepted.append(i)
            taken[mode] = taken.get(mode, 0) + 1
    order = sorted(rejected)
    rejected_rows = frame.loc[order].assign(reject_reason=[rejected[i][0] for i in order],
                                           reject_detail=[rejected[i][1] for i in order])
    return frame.loc[accepted].drop(columns="sdg_score").reset_index(drop=True), rejected_rows.reset_index(drop=True)


def delete_pairs(rows: pd.DataFrame, *, run_images_root: str | Path, lights, image_ext: str) -> None:
    """Remove the images of synthetic ``rows`` (rejected candidates) from this iteration's SDG folders."""
    for row in rows.itertuples():
        for rel_dir in (row.input_path, row.golden_path):
            for light in lights:
                csvdata.image_file(run_images_root, rel_dir, row.object_name, light, image_ext).unlink(missing_ok=True)


def _unique_targets(targets: pd.DataFrame) -> pd.DataFrame:
    frame = targets.copy()
    if "row_key" not in frame.columns:
        frame["row_key"] = csvdata.row_key(frame)
    if "weakness" in frame.columns:
        frame = frame.sort_values(["label", "weakness", "row_key"], ascending=[True, False, True], kind="stable")
    return frame.drop_duplicates("row_key").reset_index(drop=True)


def _target_slots(targets: pd.DataFrame, budget: dict[str, int]) -> list[pd.Series]:
    """Budgeted targets in pair order: label by label (as budgeted), cycling its weakest rows first."""
    slots = []
    for label, count in budget.items():
        rows = targets[targets["label"] == label]
        slots.extend(rows.iloc[i % len(rows)] for i in range(count))
    return slots


def _load_golden(path: Path, source_key: str) -> tuple[np.ndarray, str]:
    if not path.is_file():
        raise InputError(f"SDG source golden image {path} (training row {source_key}) does not exist; fix the training CSV or the images.")
    return load_image(path)


def _metadata(source: pd.Series) -> dict:
    return {column: value for column, value in source.items() if column not in NOT_METADATA}


def _as_rows(rows: list[dict], sources: pd.DataFrame) -> pd.DataFrame:
    metadata = [c for c in sources.columns if c not in NOT_METADATA]
    return pd.DataFrame(rows, columns=[*MANDATORY_COLUMNS, *metadata, *SDG_COLUMNS])


# ---------------------------------------------------------------------------------------------
# Pre-generated pairs


INGEST_REPORT = "ingest_report"  # key of the ingestion report in the returned frame's ``attrs``


def ingested_before(run_images_root: str | Path, iteration: int, *, lights, image_ext: str) -> set[str]:
    """Object names whose test images earlier iterations wrote under ``sdg/iter<M>/test`` (M < iteration)."""
    names: set[str] = set()
    for test_dir in Path(run_images_root).glob("sdg/iter*/test"):
        match = re.fullmatch(r"iter(\d+)", test_dir.parent.name)
        if match and int(match.group(1)) < iteration:
            names.update(name for name, _ in _split_stems(test_dir, lights, image_ext)[0])
    return names


def pregenerated_to_ingest(
    synthetic_dir: str | Path,
    *,
    lights: list[str] | tuple[str, ...],
    image_ext: str,
    history: Collection[str],
    max_pairs: int | None = None,
) -> tuple[pd.DataFrame, dict]:
    """(manifest rows of the complete pairs not ingested yet, up to ``max_pairs``; the ingest report).

    The report: ingested (count), already_ingested (names), incomplete ({name: missing files}),
    unlisted (stems without a manifest row), deferred (names beyond ``max_pairs``).
    """
    root = Path(synthetic_dir)
    manifest = _read_manifest(root / PREGENERATED_MANIFEST)
    test_pairs, test_other = _split_stems(root / PREGENERATED_TEST_DIR, lights, image_ext)
    golden_pairs, golden_other = _split_stems(root / PREGENERATED_GOLDEN_DIR, lights, image_ext)
    listed = set(manifest["object_name"])
    unlisted = sorted({f"{n}_{light}" for n, light in test_pairs | golden_pairs if n not in listed} | test_other | golden_other)
    chosen, skipped, incomplete, deferred = [], [], {}, []
    for index, entry in manifest.iterrows():
        name = entry["object_name"]
        if name in history:
            skipped.append(name)
            continue
        missing = [f"{folder}/{name}_{light}{image_ext}" for light in lights
                   for folder, present in ((PREGENERATED_TEST_DIR, test_pairs), (PREGENERATED_GOLDEN_DIR, golden_pairs))
                   if (name, light) not in present]
        if missing:
            incomplete[name] = missing
        elif max_pairs is not None and len(chosen) >= max_pairs:
            deferred.append(name)
        else:
            chosen.append(index)
    report = {"ingested": len(chosen), "already_ingested": skipped, "incomplete": incomplete,
              "unlisted": unlisted, "deferred": deferred}
    return manifest.loc[chosen].reset_index(drop=True), report


def ingest_pregenerated(
    synthetic_dir: str | Path,
    *,
    lights: list[str] | tuple[str, ...],
    image_ext: str,
    out_images_root: str | Path,
    iteration: int,
    history: Collection[str] | None = None,
    max_pairs: int | None = None,
) -> pd.DataFrame:
    """Copy complete new pre-generated pairs into ``sdg/iter<N>/`` and return their CSV rows.

    ``history``: object names ingested by earlier iterations (default: found under ``out_images_root``).
    ``max_pairs`` caps one iteration's intake (the rest is deferred to later iterations). What was
    skipped is in ``rows.attrs["ingest_report"]`` (see ``pregenerated_to_ingest``).
    """
    root = Path(synthetic_dir)
    if history is None:
        history = ingested_before(out_images_root, iteration, lights=lights, image_ext=image_ext)
    entries, report = pregenerated_to_ingest(root, lights=lights, image_ext=image_ext, history=history,
                                             max_pairs=max_pairs)
    test_dir, golden_dir = sdg_dirs(iteration)
    out_root = Path(out_images_root)
    rows = []
    for _, entry in entries.iterrows():
        name = entry["object_name"]
        for light in lights:
            for folder, out_dir in ((PREGENERATED_TEST_DIR, test_dir), (PREGENERATED_GOLDEN_DIR, golden_dir)):
                data = csvdata.image_file(root, folder, name, light, image_ext).read_bytes()
                fsutil.write_bytes(csvdata.image_file(out_root, out_dir, name, light, image_ext), data)
        rows.append({**entry.to_dict(), "input_path": test_dir, "golden_path": golden_dir,
                     "sdg_source": f"{PREGENERATED_GOLDEN_DIR}/{name}", "sdg_target": "", "sdg_method": "pregenerated"})
    metadata = [c for c in entries.columns if c not in NOT_METADATA]
    frame = pd.DataFrame(rows, columns=[*MANDATORY_COLUMNS, *metadata, *SDG_COLUMNS])
    frame.attrs[INGEST_REPORT] = report
    return frame


def _read_manifest(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path} does not exist; pre-generated pairs need a manifest.csv with columns object_name,label.")
    manifest = pd.read_csv(path, dtype={"object_name": str, "label": str}, keep_default_na=False)
    missing = [c for c in ("object_name", "label") if c not in manifest.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; the manifest needs object_name,label (+ metadata).")
    for row, (name, label) in enumerate(zip(manifest["object_name"], manifest["label"]), start=1):
        if not name.strip() or not label.strip():
            raise InputError(f"{path} row {row}: empty object_name or label; fill it in or remove the row.")
    duplicated = manifest["object_name"][manifest["object_name"].duplicated()]
    if len(duplicated):
        raise InputError(f"{path}: object_name {duplicated.iloc[0]!r} is listed twice; object names must be unique.")
    return manifest


def _split_stems(folder: Path, lights, image_ext: str) -> tuple[set[tuple[str, str]], set[str]]:
    """(object_name, light) pairs of ``<object_name>_<light><ext>`` files, and stems naming no light."""
    pairs, other = set(), set()
    if not folder.is_dir():
        return pairs, other
    for path in folder.iterdir():
        if path.suffix.lower() != image_ext.lower() or not path.is_file():
            continue
        light = next((light for light in lights if path.stem.endswith(f"_{light}")), None)
        if light is None:
            other.add(path.stem)
        else:
            pairs.add((path.stem[: -len(light) - 1], light))
    return pairs, other


# ---------------------------------------------------------------------------------------------
# Outputs


def write_sdg_manifest(rows: pd.DataFrame, out_dir: str | Path, *, details: dict | None = None) -> None:
    """``sdg_rows.csv`` and ``sdg_summary.json`` (per-label and per-method counts, + ``details``)."""
    out = Path(out_dir)
    fsutil.write_csv(out / "sdg_rows.csv", rows)
    counts = lambda column: ({str(k): int(v) for k, v in rows[column].value_counts().sort_index().items()}
                             if column in rows.columns else {})
    summary = {
        "total": len(rows),
        "per_label": counts("label"),
        "per_method": counts("sdg_method"),
        **(details or {}),
    }
    fsutil.write_json(out / "sdg_summary.json", summary)
