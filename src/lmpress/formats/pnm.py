"""Binary PGM (P5) and PPM (P6) images, 8 or 16 bits per sample (Netpbm).

The header is ``P5``/``P6``, width, height and maxval as decimal tokens separated by whitespace (``#``
comments allowed), then one whitespace byte and the raster: rows top to bottom, samples interleaved,
16-bit samples big-endian (maxval above 255). Anything after the raster (a second image) is side data.
"""

from __future__ import annotations

import numpy as np

from lmpress.formats import layout, regions
from lmpress.formats.base import Parsed

NAME = "pnm"
WHITESPACE = b" \t\r\n\v\f"


def claims(head: bytes) -> bool:
    return head[:2] in (b"P5", b"P6") and len(head) > 2 and head[2:3] in WHITESPACE + b"#"


def _header(data: bytes) -> tuple[list[int], int]:
    """(width, height, maxval), and where the raster starts."""
    values, i = [], 2
    while len(values) < 3:
        while data[i:i + 1] in WHITESPACE or data[i:i + 1] == b"#":
            if data[i:i + 1] == b"#":
                i = data.index(b"\n", i)
            i += 1
        start = i
        while data[i:i + 1].isdigit():
            i += 1
        if i == start or i - start > 9:
            raise ValueError("bad header token")
        values.append(int(data[start:i]))
    if data[i:i + 1] not in WHITESPACE:
        raise ValueError("no whitespace after maxval")
    return values, i + 1


def parse(data: bytes) -> Parsed | None:
    (width, height, maxval), start = _header(data)
    channels = 3 if data[:2] == b"P6" else 1
    wide = maxval > 255
    if not (width and height and 0 < maxval < 65536):
        return None
    length = width * height * channels * (1 + wide)
    if start + length > len(data):
        return None  # truncated raster: plain bytes
    side, raster = regions.cut(data, [(start, length)])
    pixels = np.frombuffer(raster, dtype=">u2" if wide else np.uint8).reshape(height, width, channels)
    transform = "subtract-green" if channels == 3 and not wide else "none"
    params = {"width": width, "height": height, "channels": channels, "wide": wide, "transform": transform}
    return layout.image_parsed(pixels, params, side)


def rebuild(params: dict, side: bytes, content: bytes) -> bytes:
    pixels = layout.image_pixels(content, params["height"], params["width"], params["channels"], params["wide"],
                                 params["transform"])
    return regions.paste(side, pixels.astype(">u2" if params["wide"] else np.uint8).tobytes())


def describe(params: dict) -> str:
    kind = "PPM" if params["channels"] == 3 else "PGM"
    return f"{kind} {params['width']}x{params['height']} {16 if params['wide'] else 8}-bit"
