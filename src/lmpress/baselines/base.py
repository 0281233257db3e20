"""One interface for every classical codec: compress / decompress a piece of data laid out in its true shape."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    """What the bytes are, so a codec can see them in their true shape.

    * ``bytes``: a plain byte string;
    * ``image``: 8-bit grayscale pixels, row-major, ``height`` rows of ``width``
      (a 2048-byte patch is 32 rows x 64 columns);
    * ``audio``: 16-bit little-endian mono PCM at ``sample_rate``.
    """

    modality: str = "bytes"
    width: int = 0
    height: int = 0
    sample_rate: int = 0


BYTES = Layout()


class Compressor(ABC):
    """A classical codec. ``modalities`` lists the layouts it accepts."""

    name: str
    modalities: tuple[str, ...] = ("bytes", "image", "audio")

    @abstractmethod
    def compress(self, data: bytes, layout: Layout = BYTES) -> bytes: ...

    @abstractmethod
    def decompress(self, blob: bytes, layout: Layout = BYTES) -> bytes: ...

    def container_bytes(self, layout: Layout = BYTES) -> int:
        """Bytes of per-file framing that do not depend on the data, counted once in the chunked protocol.

        Default: the size of the codec's output for empty input (the whole
        container with no payload). Codecs whose format defines its framing
        exactly override this.
        """
        return len(self.compress(b"", layout))

    def accepts(self, layout: Layout) -> bool:
        return layout.modality in self.modalities
