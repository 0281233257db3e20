"""Classical codecs behind one interface (``Compressor``), one module per family."""

from lmpress.baselines.base import BYTES, Compressor, Layout
from lmpress.baselines.general import Brotli, Bzip2, Gzip, Ppmd, Xz, Zpaq, Zstd
from lmpress.baselines.media import Flac, Jpeg2000, JpegXl, Png

ALL: dict[str, type[Compressor]] = {
    "gzip": Gzip, "bzip2": Bzip2, "xz": Xz, "zstd": Zstd, "brotli": Brotli, "ppmd": Ppmd, "zpaq": Zpaq,
    "png": Png, "jpeg2000": Jpeg2000, "jpegxl": JpegXl, "flac": Flac,
}

__all__ = ["ALL", "BYTES", "Compressor", "Layout"]
