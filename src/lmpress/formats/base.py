"""What a front end makes of a file."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Parsed:
    """A file split by a front end; ``params["format"]`` names the front end."""

    modality: str  # "image" or "audio": which kind of model suits the content
    params: dict
    side: bytes
    content: bytes
    chunk_size: int | None  # bytes per batch row (images: whole stripes); None: the codec's segments
