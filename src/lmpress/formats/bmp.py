"""Uncompressed Windows BMP: 8-bit palette (indices coded as a grey plane), 24-bit BGR, 32-bit BGRA/BGRX.

File header (14 bytes: ``BM``, size, reserved, pixel offset), an info header of 40 bytes or more
(width, height: negative means top-down rows, planes, bits per pixel, compression), palette, then
rows padded to a multiple of 4 bytes, bottom-up unless the height is negative. The rows' samples are
the regions; headers, palette and padding are side data.
"""

from __future__ import annotations

import struct

import numpy as np

from lmpress.formats import layout, regions
from lmpress.formats.base import Parsed

NAME = "bmp"
BI_RGB, BI_BITFIELDS = 0, 3


def claims(head: bytes) -> bool:
    return head[:2] == b"BM"


def parse(data: bytes) -> Parsed | None:
    (offset,) = struct.unpack_from("<I", data, 10)
    info_size, width, height, _planes, bits, compression = struct.unpack_from("<IiiHHI", data, 14)
    if info_size < 40 or width <= 0 or height == 0 or bits not in (8, 24, 32):
        return None
    if not (compression == BI_RGB or (compression == BI_BITFIELDS and bits == 32)):
        return None
    rows, top_down = abs(height), height < 0
    row_bytes = width * bits // 8
    stride = (row_bytes + 3) // 4 * 4
    if offset + stride * (rows - 1) + row_bytes > len(data):
        return None  # truncated pixel array: plain bytes
    side, raster = regions.cut(data, [(offset + r * stride, row_bytes) for r in range(rows)])
    channels = bits // 8
    pixels = np.frombuffer(raster, dtype=np.uint8).reshape(rows, width, channels)
    if not top_down:
        pixels = pixels[::-1]
    if channels >= 3:  # BGR(A) -> RGB(A)
        pixels = pixels[:, :, [2, 1, 0, *range(3, channels)]]
    transform = "subtract-green" if channels >= 3 else "none"
    params = {"width": width, "height": rows, "channels": channels, "top_down": top_down, "transform": transform}
    return layout.image_parsed(pixels, params, side)


def rebuild(params: dict, side: bytes, content: bytes) -> bytes:
    channels = params["channels"]
    pixels = layout.image_pixels(content, params["height"], params["width"], channels, False, params["transform"])
    if channels >= 3:
        pixels = pixels[:, :, [2, 1, 0, *range(3, channels)]]
    if not params["top_down"]:
        pixels = pixels[::-1]
    return regions.paste(side, np.ascontiguousarray(pixels).tobytes())


def describe(params: dict) -> str:
    kind = {1: "8-bit palette", 3: "24-bit", 4: "32-bit"}[params["channels"]]
    return f"BMP {params['width']}x{params['height']} {kind}"
