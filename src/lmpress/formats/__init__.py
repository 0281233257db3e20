"""Front ends: files as users have them (WAV, PGM/PPM, BMP, TIFF), coded in the models' own layouts.

A front end splits a file into

* **content**: its samples in the layout the models learned, which the model codes:
  images as 64-pixel-wide stripes, each stripe's rows top to bottom, its planes one after another
  (``layout.py``); audio as 16-bit little-endian streams, one channel after another;
* **side**: every other byte of the file (headers, extra chunks, row padding, trailing bytes) and
  where the sample bytes sat between them (``regions.py``); the archive keeps it zlib-compressed;
* **params**: the little that turns content back into sample bytes (JSON in the archive's header).

``rebuild(params, side, content)`` gives back the file byte for byte. ``parse`` runs it before it
answers, so a file that a front end reads but could not rebuild exactly goes through the byte path.
"""

from __future__ import annotations

import struct
import zlib

from lmpress.errors import LmpressError
from lmpress.formats import bmp, pnm, tiff, wav
from lmpress.formats.base import Parsed

FRONT_ENDS = {m.NAME: m for m in (pnm, bmp, tiff, wav)}
MAX_FILE_BYTES = 1 << 30  # larger files are coded as plain bytes (a front end holds the whole file in memory)
HEAD_BYTES = 16  # enough of a file's start to recognize any of the formats


def claims(head: bytes) -> bool:
    """Whether ``head`` (a file's first HEAD_BYTES bytes) starts like a format that a front end reads."""
    return any(front_end.claims(head) for front_end in FRONT_ENDS.values())


def parse(data: bytes) -> Parsed | None:
    """The file split by the front end that reads it, or None: plain bytes (unknown format, a variant the
    front ends do not read, or content they could not give back exactly)."""
    if len(data) > MAX_FILE_BYTES:
        return None
    for name, front_end in FRONT_ENDS.items():
        if not front_end.claims(data[:HEAD_BYTES]):
            continue
        try:
            parsed = front_end.parse(data)
        except (ValueError, IndexError, KeyError, TypeError, struct.error, zlib.error):
            return None  # a header that lies about the data: plain bytes, which always round-trip
        if parsed is None:
            return None
        parsed.params = {"format": name, **parsed.params}
        try:
            same = rebuild(parsed.params, parsed.side, parsed.content) == data
        except LmpressError:
            same = False
        return parsed if same else None
    return None


def rebuild(params: dict, side: bytes, content: bytes) -> bytes:
    """The file's bytes from its parts; LmpressError where they do not fit together (a corrupted archive)."""
    front_end = FRONT_ENDS.get(params.get("format", ""))
    if front_end is None:
        raise LmpressError(f"archive needs the {params.get('format')!r} front end, which this lmpress lacks; "
                           "a newer lmpress made it")
    try:
        return front_end.rebuild(params, side, content)
    except (ValueError, IndexError, KeyError, TypeError, struct.error) as e:
        raise LmpressError(f"archive is corrupted (its {params['format']} parts do not fit together: {e})") from None


def describe(params: dict) -> str:
    """One line for ``lmpress info`` and the progress bar, e.g. ``PPM 768x512 RGB 8-bit``."""
    front_end = FRONT_ENDS.get(params.get("format", ""))
    return front_end.describe(params) if front_end is not None else str(params.get("format"))
