"""Image helpers of SDG: float32 arrays H x W x C in [0, 255] (C = 1 for grey images), read and
written in the workspace's format; soft shapes (ellipse, stroke), blending, pasting and blur."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from aoideft.decode_cache import eight_bit
from aoideft.errors import InputError


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


def gray(array: np.ndarray) -> np.ndarray:
    return array.mean(axis=2)


def blur(plane: np.ndarray, sigma: float) -> np.ndarray:
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


def grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    return rows, cols


def ellipse(shape, centre, radii, angle_deg: float = 0.0, softness: float = 1.0) -> np.ndarray:
    """Soft-edged filled ellipse, values in [0, 1]."""
    yy, xx = grid(shape)
    theta = np.deg2rad(angle_deg)
    dy, dx = yy - centre[0], xx - centre[1]
    u = (dx * np.cos(theta) + dy * np.sin(theta)) / max(radii[1], 0.5)
    v = (-dx * np.sin(theta) + dy * np.cos(theta)) / max(radii[0], 0.5)
    distance = (np.sqrt(u**2 + v**2) - 1.0) * min(radii)  # ~ pixels outside the rim
    return np.clip(0.5 - distance / (2 * softness), 0.0, 1.0)


def stroke(shape, start, end, radius: float) -> np.ndarray:
    """Soft capsule (thick line segment) from ``start`` to ``end`` (y, x), values in [0, 1]."""
    yy, xx = grid(shape)
    p0, p1 = np.asarray(start, np.float32), np.asarray(end, np.float32)
    seg = p1 - p0
    t = ((yy - p0[0]) * seg[0] + (xx - p0[1]) * seg[1]) / max(float(seg @ seg), 1e-6)
    t = np.clip(t, 0.0, 1.0)
    distance = np.hypot(yy - (p0[0] + t * seg[0]), xx - (p0[1] + t * seg[1]))
    return np.clip(radius + 0.5 - distance, 0.0, 1.0)


def blend(image: np.ndarray, colour: np.ndarray | float, alpha: np.ndarray) -> np.ndarray:
    alpha = alpha[..., None] if alpha.ndim == 2 else alpha
    return image * (1 - alpha) + colour * alpha




def paste(canvas: np.ndarray, patch: np.ndarray, top: int, left: int, alpha: np.ndarray | None = None) -> np.ndarray:
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
        out[y0:y1, x0:x1] = blend(out[y0:y1, x0:x1], part, alpha[y0 - top : y1 - top, x0 - left : x1 - left])
    return out


def transform_planes(patch: np.ndarray, op: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    """Apply a PIL geometric op to each channel of a float patch (mode "F" keeps full precision)."""
    return np.stack([np.asarray(op(Image.fromarray(patch[..., c], mode="F")), np.float32) for c in range(patch.shape[2])], axis=2)


