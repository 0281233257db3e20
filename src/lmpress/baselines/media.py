"""Domain codecs, each given the data in its true shape: PNG, JPEG 2000, JPEG XL (lossless), FLAC."""

from __future__ import annotations

import io
import struct

import numpy as np

from lmpress.baselines.base import Compressor, Layout


def _pixels(data: bytes, layout: Layout) -> np.ndarray:
    if layout.width * layout.height != len(data):
        raise ValueError(f"{len(data)} bytes are not a {layout.height}x{layout.width} image")
    return np.frombuffer(data, dtype=np.uint8).reshape(layout.height, layout.width)


class Png(Compressor):
    """PNG through Pillow with ``optimize=True`` (zlib level 9, best filter search Pillow offers)."""

    name = "PNG"
    modalities = ("image",)

    def compress(self, data: bytes, layout: Layout) -> bytes:
        from PIL import Image

        out = io.BytesIO()
        Image.fromarray(_pixels(data, layout), mode="L").save(out, format="PNG", optimize=True)
        return out.getvalue()

    def decompress(self, blob: bytes, layout: Layout) -> bytes:
        from PIL import Image

        with Image.open(io.BytesIO(blob)) as im:
            return np.asarray(im.convert("L")).tobytes()

    def container_bytes(self, layout: Layout) -> int:
        """Signature (8) + every chunk's framing that is not image data: IHDR (25), IEND (12)."""
        blob = self.compress(bytes(layout.width * layout.height), layout)
        pos, fixed = 8, 8
        while pos < len(blob):
            (length,) = struct.unpack(">I", blob[pos:pos + 4])
            kind = blob[pos + 4:pos + 8]
            if kind != b"IDAT":
                fixed += 12 + length
            pos += 12 + length
        return fixed


class Jpeg2000(Compressor):
    """Lossless (reversible 5/3 wavelet) JPEG 2000 codestream via OpenJPEG (imagecodecs)."""

    name = "JPEG 2000"
    modalities = ("image",)

    def compress(self, data: bytes, layout: Layout) -> bytes:
        import imagecodecs

        return imagecodecs.jpeg2k_encode(_pixels(data, layout), level=0, reversible=True, codecformat="J2K")

    def decompress(self, blob: bytes, layout: Layout) -> bytes:
        import imagecodecs

        return np.ascontiguousarray(imagecodecs.jpeg2k_decode(blob), dtype=np.uint8).tobytes()

    def container_bytes(self, layout: Layout) -> int:
        """Main header up to the first tile-part (SOT marker 0xFF90) plus the EOC marker."""
        blob = self.compress(bytes(layout.width * layout.height), layout)
        return blob.index(b"\xff\x90") + 2


class JpegXl(Compressor):
    """Lossless JPEG XL via libjxl (imagecodecs), effort 9."""

    name = "JPEG XL"
    modalities = ("image",)

    def compress(self, data: bytes, layout: Layout) -> bytes:
        import imagecodecs

        return imagecodecs.jpegxl_encode(_pixels(data, layout), lossless=True, effort=9)

    def decompress(self, blob: bytes, layout: Layout) -> bytes:
        import imagecodecs

        return np.ascontiguousarray(imagecodecs.jpegxl_decode(blob), dtype=np.uint8).tobytes()

    def container_bytes(self, layout: Layout) -> int:
        return 0  # a bare codestream: its small header is part of every coded image


class Flac(Compressor):
    """FLAC at the highest compression level via libsndfile, 16-bit mono at the real sample rate."""

    name = "FLAC"
    modalities = ("audio",)

    def compress(self, data: bytes, layout: Layout) -> bytes:
        import soundfile

        samples = np.frombuffer(data, dtype="<i2")
        out = io.BytesIO()
        soundfile.write(out, samples, layout.sample_rate, subtype="PCM_16", format="FLAC", compression_level=1.0)
        return out.getvalue()

    def decompress(self, blob: bytes, layout: Layout) -> bytes:
        import soundfile

        samples, _ = soundfile.read(io.BytesIO(blob), dtype="int16")
        return samples.astype("<i2").tobytes()

    def container_bytes(self, layout: Layout) -> int:
        """The "fLaC" marker and every metadata block (STREAMINFO, VORBIS_COMMENT, ...) before the frames."""
        blob = self.compress(bytes(2048), layout)
        pos = 4
        while True:
            last, length = blob[pos] & 0x80, int.from_bytes(blob[pos + 1:pos + 4], "big")
            pos += 4 + length
            if last:
                return pos
