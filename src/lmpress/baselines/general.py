"""General-purpose byte codecs: gzip, bzip2, xz (LZMA2), zstd, brotli, PPMd, zpaq (a context mixer)."""

from __future__ import annotations

import bz2
import gzip
import lzma

from lmpress.baselines.base import BYTES, Compressor, Layout


class Gzip(Compressor):
    name = "gzip -9"

    def compress(self, data: bytes, layout: Layout = BYTES) -> bytes:
        return gzip.compress(data, compresslevel=9, mtime=0)

    def decompress(self, blob: bytes, layout: Layout = BYTES) -> bytes:
        return gzip.decompress(blob)

    def container_bytes(self, layout: Layout = BYTES) -> int:
        return 18  # RFC 1952: 10-byte member header + CRC32 and ISIZE trailer


class Bzip2(Compressor):
    name = "bzip2 -9"

    def compress(self, data: bytes, layout: Layout = BYTES) -> bytes:
        return bz2.compress(data, 9)

    def decompress(self, blob: bytes, layout: Layout = BYTES) -> bytes:
        return bz2.decompress(blob)


class Xz(Compressor):
    name = "xz -9e"

    def compress(self, data: bytes, layout: Layout = BYTES) -> bytes:
        return lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)

    def decompress(self, blob: bytes, layout: Layout = BYTES) -> bytes:
        return lzma.decompress(blob)


class Zstd(Compressor):
    name = "zstd -19"

    def compress(self, data: bytes, layout: Layout = BYTES) -> bytes:
        import zstandard

        return zstandard.ZstdCompressor(level=19).compress(data)

    def decompress(self, blob: bytes, layout: Layout = BYTES) -> bytes:
        import zstandard

        return zstandard.ZstdDecompressor().decompress(blob)


class Brotli(Compressor):
    name = "brotli 11"

    def compress(self, data: bytes, layout: Layout = BYTES) -> bytes:
        import brotli

        return brotli.compress(data, quality=11)

    def decompress(self, blob: bytes, layout: Layout = BYTES) -> bytes:
        import brotli

        return brotli.decompress(blob)


class Ppmd(Compressor):
    """PPMd variant I, order 6, 16 MiB model (7-Zip's defaults for its PPMd method at level 5)."""

    name = "PPMd o6"
    ORDER, MEMORY = 6, 16 << 20

    def compress(self, data: bytes, layout: Layout = BYTES) -> bytes:
        import pyppmd

        return pyppmd.compress(data, max_order=self.ORDER, mem_size=self.MEMORY)

    def decompress(self, blob: bytes, layout: Layout = BYTES) -> bytes:
        import pyppmd

        return pyppmd.decompress(blob, max_order=self.ORDER, mem_size=self.MEMORY)


class Zpaq(Compressor):
    """zpaq method 5 (libzpaq's strongest: a context-mixing model of many orders with an SSE stage), one thread
    so the whole input is one block and the result does not depend on the machine's core count."""

    name = "zpaq m5"
    LEVEL = 5

    def compress(self, data: bytes, layout: Layout = BYTES) -> bytes:
        import zpaq

        return zpaq.compress(data, level=self.LEVEL, threads=1, hints=False)

    def decompress(self, blob: bytes, layout: Layout = BYTES) -> bytes:
        import zpaq

        return zpaq.decompress(blob)
