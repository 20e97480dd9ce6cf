"""Images of the report: PNG encoding in memory and the only image references a page may hold,
``data:image/png;base64,`` URIs checked to be PNGs (so no foreign reference reaches the page)."""

from __future__ import annotations

import base64
import binascii
import io
import re

import numpy as np
from PIL import Image

PNG_URI_PREFIX = "data:image/png;base64,"
_B64_RE = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


def png_base64(image: np.ndarray) -> str:
    """Encode an HxW or HxWxC (C = 1, 3, 4) uint8 array as base64 PNG, in memory."""
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected a uint8 HxW or HxWxC (C in 1, 3, 4) array, got {array.dtype} {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_data_uri(image: np.ndarray) -> str:
    return PNG_URI_PREFIX + png_base64(image)


def checked_png_uri(value: str, what: str) -> str:
    """A data URI for a base64 PNG (bare or already a URI); anything else is refused."""
    payload = value[len(PNG_URI_PREFIX):] if value.startswith(PNG_URI_PREFIX) else value
    if not payload or not _B64_RE.match(payload):
        raise ValueError(f"{what}: not a base64 PNG")
    try:
        head = base64.b64decode(payload[:24] + "=" * (-len(payload[:24]) % 4), validate=True)
    except binascii.Error as error:
        raise ValueError(f"{what}: not a base64 PNG ({error})") from None
    if not head.startswith(b"\x89PNG"):
        raise ValueError(f"{what}: base64 data is not a PNG")
    return PNG_URI_PREFIX + payload
