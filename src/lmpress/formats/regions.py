"""Cutting a file's sample bytes out of it, and putting them back.

The side part of a file is a table of regions followed by every byte outside them. The table
holds (gap, length) pairs as little-endian u32: ``gap`` bytes of side data, then ``length`` bytes of
samples, and so on; what follows the last region is the rest of the side data. A BMP's rows with
their padding, a TIFF's strips or a WAV's data chunk are all such regions; regular tables (every
row the same) shrink to almost nothing under zlib.
"""

from __future__ import annotations

import struct

import numpy as np


def cut(data: bytes, regions: list[tuple[int, int]]) -> tuple[bytes, bytes]:
    """(side, samples) of ``data``; ``regions``: (offset, length) pairs in increasing, non-overlapping order."""
    table = np.zeros((len(regions), 2), dtype="<u4")
    outside, inside = [], []
    position = 0
    for i, (offset, length) in enumerate(regions):
        if offset < position or length < 0 or offset + length > len(data):
            raise ValueError("regions overlap or leave the file")
        table[i] = offset - position, length
        outside.append(data[position:offset])
        inside.append(data[offset:offset + length])
        position = offset + length
    outside.append(data[position:])
    return struct.pack("<I", len(regions)) + table.tobytes() + b"".join(outside), b"".join(inside)


def paste(side: bytes, samples: bytes) -> bytes:
    """The inverse of ``cut``."""
    (count,) = struct.unpack_from("<I", side)
    table = np.frombuffer(side, dtype="<u4", count=2 * count, offset=4).reshape(count, 2).astype(np.int64)
    if int(table[:, 1].sum()) != len(samples):
        raise ValueError("the samples do not fill their regions")
    rest = memoryview(side)[4 + 8 * count:]
    out, used_side, used_samples = [], 0, 0
    for gap, length in table.tolist():
        if used_side + gap > len(rest):
            raise ValueError("side data too short")
        out += [rest[used_side:used_side + gap], samples[used_samples:used_samples + length]]
        used_side += gap
        used_samples += length
    out.append(rest[used_side:])
    return b"".join(bytes(part) for part in out)
