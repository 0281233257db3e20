"""The one error type of lmpress (as ``lzma.LZMAError`` is for lzma)."""


class LmpressError(Exception):
    """Bad input: a corrupted, truncated or foreign archive, a missing model, unreadable data."""
