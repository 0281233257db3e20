"""Uncompressed TIFF (one image, strips, samples interleaved): grey or RGB(A), 8 or 16 bits per sample.

tifffile reads the directory; the strips' bytes are the regions, everything else (header,
directories, tags, other data) is side data. Compressed, tiled, planar-separate, multi-page,
palette, bilevel or float TIFFs go through the byte path.
"""

from __future__ import annotations

import io

import numpy as np

from lmpress.formats import layout, regions
from lmpress.formats.base import Parsed

NAME = "tiff"


def claims(head: bytes) -> bool:
    return head[:4] in (b"II*\x00", b"MM\x00*")


def parse(data: bytes) -> Parsed | None:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            if len(tif.pages) != 1:
                return None
            page = tif.pages[0]
            photometric = int(page.photometric)
            ok = (int(page.compression) == 1 and not page.is_tiled and page.bitspersample in (8, 16)
                  and int(page.sampleformat) == 1 and photometric in (1, 2)  # MINISBLACK, RGB
                  and (page.samplesperpixel == 1 or (photometric == 2 and page.samplesperpixel in (3, 4)))
                  and (page.samplesperpixel == 1 or int(page.planarconfig) == 1))  # CONTIG
            if not ok:
                return None
            height, width, channels = page.imagelength, page.imagewidth, page.samplesperpixel
            wide, big_endian = page.bitspersample == 16, tif.byteorder == ">"
            strips = list(zip(page.dataoffsets, page.databytecounts))
    except (tifffile.TiffFileError, ValueError, IndexError, KeyError, OSError, TypeError):
        return None
    length = height * width * channels * (1 + wide)
    if not (height and width) or sum(n for _, n in strips) != length or any(n <= 0 for _, n in strips):
        return None
    side, raster = regions.cut(data, sorted(strips))
    if sorted(strips) != strips:
        return None  # strips out of file order: their samples would not be in raster order
    dtype = (">u2" if big_endian else "<u2") if wide else np.uint8
    pixels = np.frombuffer(raster, dtype=dtype).reshape(height, width, channels)
    transform = "subtract-green" if channels >= 3 and not wide else "none"
    params = {"width": width, "height": height, "channels": channels, "wide": wide, "big_endian": big_endian,
              "transform": transform}
    return layout.image_parsed(pixels, params, side)


def rebuild(params: dict, side: bytes, content: bytes) -> bytes:
    pixels = layout.image_pixels(content, params["height"], params["width"], params["channels"], params["wide"],
                                 params["transform"])
    dtype = (">u2" if params["big_endian"] else "<u2") if params["wide"] else np.uint8
    return regions.paste(side, pixels.astype(dtype).tobytes())


def describe(params: dict) -> str:
    kind = {1: "grey", 3: "RGB", 4: "RGBA"}[params["channels"]]
    return f"TIFF {params['width']}x{params['height']} {kind} {16 if params['wide'] else 8}-bit"
