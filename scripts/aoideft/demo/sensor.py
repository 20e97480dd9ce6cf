"""The camera side of both demo worlds: defocus blur, per-light gain and gamma, sensor noise,
8-bit quantisation and JPEG encoding of rendered linear images."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image


def blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of [L, H, W, C] images (edge-replicated borders)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).astype(np.float32)
    kernel /= kernel.sum()
    for axis in (1, 2):
        padded = np.pad(images, [(radius, radius) if a == axis else (0, 0) for a in range(images.ndim)], mode="edge")
        images = sum(w * np.take(padded, range(i, i + images.shape[axis]), axis=axis) for i, w in enumerate(kernel))
    return images


def capture(linear: np.ndarray, gains: Sequence[float], gammas: Sequence[float], noise_sigma: float,
            rng: np.random.Generator, blur_sigma: float = 0.0) -> np.ndarray:
    """Sensor response of the lights of one image (linear [L, H, W, 3], 0..255): defocus blur,
    per-light gain and gamma, additive noise, 8-bit quantisation."""
    if blur_sigma > 0:
        linear = blur(linear, blur_sigma)
    value = np.clip(linear * (np.asarray(gains, np.float32).reshape(-1, 1, 1, 1) / 255.0), 0.0, 1.0)
    if any(g != 1.0 for g in gammas):
        value **= np.asarray(gammas, np.float32).reshape(-1, 1, 1, 1)
    value *= 255.0
    value += rng.standard_normal(value.shape, dtype=np.float32) * noise_sigma
    return np.clip(value + 0.5, 0, 255).astype(np.uint8)  # + 0.5 then truncation: rounding


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, "JPEG", quality=int(quality))
    return buffer.getvalue()
