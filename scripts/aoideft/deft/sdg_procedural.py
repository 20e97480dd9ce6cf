"""Procedural SDG operations: defects drawn in image space on any golden crop, for the SMT labels.

NVIDIA synthesises defects with a diffusion inpainting model (Cosmos AnomalyGen) that cannot ship
offline; these operations draw them *procedurally* with generic operations that need no scene model:
the component is assumed centred in the crop, as in AOI crops, and bright regions are taken as
pads/solder. Each operation draws its geometry ONCE per pair (``plan_defect``) and applies it to every
light with a light-dependent appearance (``render``: solder is specular in SolderLight, duller
elsewhere), so the lights of a pair stay consistent. PASS targets get nuisance variants
(misregistration, gain/gamma drift, noise, JPEG, dust, small rotation) that must still read as PASS.
Labels without a dedicated operation get a generic anomaly (``operation_for``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .sdg_images import blend, blur, ellipse, encode_image, gray, paste, stroke, transform_planes

PASS_LABEL = "PASS"
# How strongly solder/metal reflects under each light (1 = fully specular).
LIGHT_SPECULAR = {"SolderLight": 1.0, "WhiteLight": 0.7, "UniformLight": 0.5, "LowAngleLight": 0.35}
DEFAULT_SPECULAR = 0.5
REFERENCE_SIZE = 64.0  # geometry ranges below are in pixels of a 64-px crop and scale with the crop


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
    return blend(image, filled, np.clip(blur(mask, 0.7) * 1.5, 0, 1))




def _paint_solder(image: np.ndarray, coverage: np.ndarray, highlight: np.ndarray, specular: float) -> np.ndarray:
    """Solder over ``coverage`` (0..1): bright, opaque grey with a hot spot at ``highlight`` under
    SolderLight; duller and more see-through under diffuse lights."""
    colour = ((120 + 120 * specular) * (0.8 + 0.2 * highlight * specular))[..., None]
    return blend(image, colour, coverage * (0.6 + 0.4 * specular))


def _bright_mask(guide: np.ndarray, level: float) -> np.ndarray:
    """Pixels brighter than ``level`` of the way from the median to the top of the crop's range (pads, solder)."""
    smooth = blur(guide, 0.7)
    median, top = np.median(smooth), np.percentile(smooth, 99)
    return smooth >= median + level * max(top - median, 1.0)


def _bright_point(guide: np.ndarray, region: tuple[int, int, int, int]) -> tuple[float, float]:
    """(y, x) of the brightest smoothed pixel inside ``region`` of the guide (a pad, usually)."""
    y0, y1, x0, x1 = region
    smooth = blur(guide, 1.5)[y0:y1, x0:x1]
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
    coverage = ellipse(shape, params["centre"], params["radii"], params["angle"])
    highlight = ellipse(shape, params["highlight"], tuple(r * 0.4 for r in params["radii"]), softness=2.0)
    return _paint_solder(image, coverage, highlight, specular)


def _bridge_ends(guide: np.ndarray, rng, scale) -> tuple[tuple[float, float], tuple[float, float]]:
    """Two bright regions (pads/leads) with a darker gap between them, both near the crop centre.

    The first end is the brightest smoothed pixel of the central band; the second is drawn among the
    bright pixels at least a few pixels away, favouring those behind the darkest gap.
    """
    height, width = guide.shape
    smooth = blur(guide, 1.0)
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
        smooth[int(y), int(x)]
        - smooth[(start[0] + samples * (y - start[0])).astype(int), (start[1] + samples * (x - start[1])).astype(int)].mean()
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
    coverage = stroke(shape, params["start"], params["end"], params["radius"])
    mid = tuple((a + b) / 2 for a, b in zip(params["start"], params["end"]))
    highlight = ellipse(shape, mid, (params["radius"] * 2, params["radius"] * 2), softness=2.0)
    return _paint_solder(image, coverage, highlight, specular)


def _plan_box(rng, guide, scale):
    return {"box": _central_box(guide.shape, rng, scale)}


def _plan_missing(rng, guide, scale):
    # The body goes, its pads stay: the brightest pixels (pads, solder) are kept as bare pads.
    bright = _bright_mask(guide, 0.5).astype(np.float32)
    pads = blur(bright, 1.5 * scale) > 0.5  # drops small bright marks (body print), keeps pad-sized areas
    return {"box": _central_box(guide.shape, rng, scale), "keep": pads}


def _apply_missing(image, params, specular, seed):
    keep = blur(params["keep"].astype(np.float32), 0.5)
    return blend(_with_box_cleared(image, params["box"], seed), image, keep)


def _plan_insufficient(rng, guide, scale):
    return {"mask": _bright_mask(guide, rng.uniform(0.4, 0.6)), "strength": rng.uniform(0.45, 0.7)}


def _apply_insufficient(image, params, specular, seed):
    # Thin solder reflects less: darken the brightest (pad) regions towards the substrate level,
    # most under SolderLight, and shrink them (the rim of each pad goes fully to substrate).
    mask = params["mask"].astype(np.float32)
    core = blur(mask, 1.0) > 0.85
    alpha = np.where(core, 0.5, 1.0) * mask * params["strength"] * (0.4 + 0.6 * specular)
    substrate = np.median(image.reshape(-1, image.shape[2]), axis=0)
    return blend(image, substrate, blur(alpha, 0.6))


def _plan_shift(rng, guide, scale):
    magnitude = rng.uniform(3, 8) * scale
    angle = rng.uniform(0, 2 * np.pi)
    return {"box": _central_box(guide.shape, rng, scale),
            "offset": (int(round(magnitude * np.sin(angle))), int(round(magnitude * np.cos(angle))))}


def _apply_shift(image, params, specular, seed):
    y0, y1, x0, x1 = params["box"]
    dy, dx = params["offset"]
    return paste(_with_box_cleared(image, params["box"], seed), image[y0:y1, x0:x1], y0 + dy, x0 + dx)


def _plan_skew(rng, guide, scale):
    return {"box": _central_box(guide.shape, rng, scale), "angle": rng.choice([-1, 1]) * rng.uniform(8, 20)}


def _apply_skew(image, params, specular, seed):
    y0, y1, x0, x1 = params["box"]
    def rotate(plane: Image.Image) -> Image.Image:
        return plane.rotate(params["angle"], resample=Image.Resampling.BILINEAR)

    rotated = transform_planes(image[y0:y1, x0:x1], rotate)
    alpha = transform_planes(np.ones((y1 - y0, x1 - x0, 1), np.float32), rotate)[..., 0]
    return paste(_with_box_cleared(image, params["box"], seed), rotated, y0, x0, alpha)


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
    short = transform_planes(patch, lambda plane: plane.resize(size, Image.Resampling.BILINEAR))
    ramp = np.linspace(0.0, 1.0, new_length, dtype=np.float32)
    if not params["lift_far_end"]:
        ramp = ramp[::-1]
    # only the part catches the light, not the board around it inside the box
    board = np.median(np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]), axis=0)
    on_part = np.clip(np.abs(short - board).mean(axis=2, keepdims=True) / 40.0, 0.0, 1.0)
    shade = 1.0 + (0.2 + 0.35 * specular) * on_part * (ramp[:, None, None] if axis == 0 else ramp[None, :, None])
    offset = length - new_length if not params["lift_far_end"] else 0
    top, left = (y0 + offset, x0) if axis == 0 else (y0, x0 + offset)
    return paste(_with_box_cleared(image, params["box"], seed), short * shade, top, left)


def _apply_polarity(image, params, specular, seed):
    y0, y1, x0, x1 = params["box"]
    return paste(image, image[y0:y1, x0:x1][::-1, ::-1], y0, x0)


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
    alpha = stroke(image.shape[:2], scratch["start"], scratch["end"], scratch["radius"])
    return image + (scratch["delta"] * (1.2 - 0.5 * specular) * alpha)[..., None]


def _apply_surface(image, params, specular, seed):
    if "scratch" in params:
        return _apply_scratch(image, params["scratch"], specular)
    stain = params["stain"]
    alpha = ellipse(image.shape[:2], stain["centre"], stain["radii"], stain["angle"], softness=2.0)
    mottle = 1.0 + 0.15 * blur(np.random.default_rng(seed).standard_normal(image.shape[:2]).astype(np.float32), 1.5)
    return blend(image, image * (1 - stain["darken"] * (1.2 - 0.5 * specular)) * mottle[..., None], alpha)


def _plan_generic(rng, guide, scale):
    height, width = guide.shape
    centre = (height / 2 + rng.uniform(-0.2, 0.2) * height, width / 2 + rng.uniform(-0.2, 0.2) * width)
    return {"centre": centre, "radii": (rng.uniform(4, 9) * scale, rng.uniform(4, 9) * scale),
            "angle": rng.uniform(0, 180), "delta": rng.choice([-1, 1]) * rng.uniform(60, 110),
            "scratch": _plan_scratch(rng, guide, scale)}


def _apply_generic(image, params, specular, seed):
    alpha = ellipse(image.shape[:2], params["centre"], params["radii"], params["angle"], softness=1.5)
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
        "dust": [((rng.uniform(0, height), rng.uniform(0, width)), rng.uniform(0.5, 1.2),
                  rng.choice([-1, 1]) * rng.uniform(20, 50)) for _ in range(int(rng.integers(0, 4)))],
    }


def _apply_nuisance(image, params, specular, seed):
    dy, dx = params["offset"]
    pad = 4
    out = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    if params["rotation"]:
        out = transform_planes(out, lambda plane: plane.rotate(params["rotation"], resample=Image.Resampling.BILINEAR))
    height, width = image.shape[:2]
    out = out[pad - dy : pad - dy + height, pad - dx : pad - dx + width]
    out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** params["gamma"] * params["gain"]
    for centre, radius, delta in params["dust"]:
        out = out + (delta * ellipse((height, width), centre, (radius, radius), softness=0.7))[..., None]
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
    guide = np.mean([gray(image) for image in goldens], axis=0)
    scale = min(guide.shape) / REFERENCE_SIZE
    kind = operation_for(label)
    return DefectPlan(kind, OPERATIONS[kind][0](rng, guide, scale), int(rng.integers(2**31)))


def render(golden: np.ndarray, plan: DefectPlan, light: str) -> np.ndarray:
    """The synthetic test image for one light (float32, clipped to 0..255)."""
    specular = LIGHT_SPECULAR.get(light, DEFAULT_SPECULAR)
    return np.clip(OPERATIONS[plan.kind][1](golden, plan.params, specular, plan.seed), 0, 255).astype(np.float32)
