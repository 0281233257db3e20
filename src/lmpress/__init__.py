"""lmpress: lossless compression with predictive models and arithmetic coding.

The API follows the standard ``lzma`` module::

    import lmpress
    blob = lmpress.compress(data)            # bytes -> bytes, default model
    assert lmpress.decompress(blob) == data
    c = lmpress.LmpressCompressor(); out = c.compress(part1) + c.compress(part2) + c.flush()
    d = lmpress.LmpressDecompressor(); data = d.decompress(out[:10]) + d.decompress(out[10:]); assert d.eof

Every problem with the input (corrupted, truncated or foreign archive, missing
model, unreadable data) raises ``LmpressError``.
"""

from lmpress.api import LmpressCompressor, LmpressDecompressor, compress, decompress, open
from lmpress.errors import LmpressError
from lmpress.models.prompt import SoftPrompt

__all__ = ["LmpressCompressor", "LmpressDecompressor", "LmpressError", "SoftPrompt", "compress", "decompress", "open"]
__version__ = "0.1.0"
