"""The Python API, in the shape of the standard ``lzma`` module."""

from __future__ import annotations

import builtins
import io
import os
from typing import BinaryIO

from lmpress import formats
from lmpress.codec import (
    DEFAULT_BLOCK_CHUNKS,
    DEFAULT_PROMPT_LEVELS,
    DecodedCheck,
    check_chunking,
    compress_stream,
    decode_frame,
    decompress_stream,
    default_chunk_size,
    encode_block,
    lookahead_bytes,
    make_header,
    model_options,
    plan_input,
    predictor_for_archive,
    prefix_for_archive,
    prompted_model,
    rebuild_file,
    steering,
)
from lmpress.coding.container import ArchiveReader, ArchiveWriter
from lmpress.models.prompt import SoftPrompt
from lmpress.models.registry import AUTO, load_predictor


def compress(data: bytes, model: str = AUTO, *, chunk_size: int | None = None,
             block_chunks: int = DEFAULT_BLOCK_CHUNKS, window: int | None = None, precision: str | None = None,
             mix: bool | str | None = None, workers: int = 1, ray: str | None = None,
             prompt: SoftPrompt | None = None,
             embed_prompt: str | None = None, prompt_levels: int = DEFAULT_PROMPT_LEVELS,
             front_ends: bool = True) -> bytes:
    """Compress ``data`` into a self-describing ``.lmpz`` archive.

    ``model``: a model's name or path; "auto": the shipped model for the data's kind (text, image, audio).
    ``front_ends``: code WAV, PGM/PPM, BMP and TIFF files in the models' layouts (``lmpress.formats``),
    rebuilt byte for byte on decompression; False: the data's bytes as they are.

    ``chunk_size``: bytes per chunk (each batch row's segment); None: whole-file segments for mixed byte
    models (the input in 64 segments), 2048 otherwise (the studies' chunks).
    ``window``: an LLM's attention window in tokens (for chunks longer than it).
    ``precision``: the arithmetic; None is the model's default: "exact" integer arithmetic for byte models
    (decodes on any CPU), or float kernels for comparison ("float32"; "bfloat16" for LLMs): not portable.
    ``mix``: context mixing with the byte models (None: wherever it applies, with the image or colour
    contexts for a front end's pixels; False: the network alone; or a mixer's name, as ``cm/v1``).
    ``workers`` / ``ray``: where blocks are coded (``lmpress.parallel``); the archive is the same.
    ``prompt``: a soft prompt (``SoftPrompt.load(path)``); ``embed_prompt`` ("gaussian",
    "histogram", "lloyd-max") stores it in the archive, quantized to ``prompt_levels`` levels.
    """
    out = io.BytesIO()
    compress_stream(io.BytesIO(bytes(data)), out, model, chunk_size=chunk_size, block_chunks=block_chunks,
                    length=len(data),
                    window=window, precision=precision, mix=mix, workers=workers, ray=ray, prompt=prompt,
                    embed_prompt=embed_prompt, prompt_levels=prompt_levels, front_ends=front_ends)
    return out.getvalue()


def decompress(data: bytes, model: str | None = None, *, workers: int = 1, ray: str | None = None,
               prompt: SoftPrompt | None = None) -> bytes:
    """Decode an archive; the model is the one the archive names unless given; ``prompt``: the
    soft prompt the archive names (not needed when the archive embeds it)."""
    out = io.BytesIO()
    decompress_stream(io.BytesIO(bytes(data)), out, model, workers=workers, ray=ray, prompt=prompt)
    return out.getvalue()


class LmpressCompressor:
    """Incremental compression, like ``lzma.LZMACompressor``: ``compress()`` pieces, then ``flush()``.

    The archive is the one ``compress()`` makes of the whole input: coding starts once one block (for
    whole-file segments, the largest block) has come in; an input that starts like a file a front end
    reads (WAV, PGM/PPM, BMP, TIFF) is held until ``flush()`` (up to ``formats.MAX_FILE_BYTES``).
    """

    def __init__(self, model: str = AUTO, *, chunk_size: int | None = None,
                 block_chunks: int = DEFAULT_BLOCK_CHUNKS, window: int | None = None, precision: str | None = None,
                 mix: bool | str | None = None, prompt: SoftPrompt | None = None, embed_prompt: str | None = None,
                 prompt_levels: int = DEFAULT_PROMPT_LEVELS, front_ends: bool = True) -> None:
        check_chunking(chunk_size, block_chunks)
        self._model = prompted_model(model, prompt)
        self._settings = {"chunk_size": chunk_size, "block_chunks": block_chunks, "window": window,
                          "precision": precision, "mix": mix, "prompt": prompt, "embed_prompt": embed_prompt,
                          "prompt_levels": prompt_levels, "front_ends": front_ends}
        model_options(window, precision, mix)  # bad settings fail here, not at the first block
        self._lookahead = lookahead_bytes(chunk_size, block_chunks)
        self._out = io.BytesIO()
        self._writer: ArchiveWriter | None = None
        self._pending = bytearray()
        self._flushed = False

    def _ready(self) -> bool:
        """Whether coding can start before the input ends: longer than the look-ahead, and no front end's."""
        if len(self._pending) < self._lookahead:
            return False
        head = bytes(self._pending[:formats.HEAD_BYTES])
        return not (self._settings["front_ends"] and formats.claims(head)
                    and len(self._pending) <= formats.MAX_FILE_BYTES)

    def _start(self) -> None:
        s = self._settings
        plan = plan_input(io.BytesIO(bytes(self._pending[:self._lookahead])), self._model, None, self._lookahead,
                          front_ends=False)
        predictor = load_predictor(plan.model, **model_options(s["window"], s["precision"], s["mix"]))
        self._prefix, prompt_info, prompt_code = steering(predictor, s["prompt"], s["embed_prompt"],
                                                          s["prompt_levels"])
        chunk_size = s["chunk_size"] or default_chunk_size(predictor, None, s["block_chunks"])
        self._predictor, self._chunk_size = predictor, chunk_size
        self._block_bytes = chunk_size * s["block_chunks"]
        header = make_header(predictor, chunk_size, s["block_chunks"])
        header.prompt, header.prompt_code = prompt_info, prompt_code
        self._writer = ArchiveWriter(self._out, header)

    def _take_output(self) -> bytes:
        out = self._out.getvalue()
        self._out.seek(0)
        self._out.truncate()
        return out

    def _code(self, data: bytes) -> None:
        assert self._writer is not None
        payload = encode_block(self._predictor, data, self._chunk_size, prefix=self._prefix)
        self._writer.write_block(data, payload)

    def compress(self, data: bytes) -> bytes:
        if self._flushed:
            raise ValueError("compressor already flushed")
        self._pending += data
        if self._writer is None:
            if not self._ready():
                return b""
            self._start()
        while len(self._pending) >= self._block_bytes:
            self._code(bytes(self._pending[: self._block_bytes]))
            del self._pending[: self._block_bytes]
        return self._take_output()

    def flush(self) -> bytes:
        if self._flushed:
            raise ValueError("repeated call to flush()")
        self._flushed = True
        if self._writer is None:  # the whole input is here: exactly what compress() makes of it
            return compress(bytes(self._pending), self._model, **self._settings)
        if self._pending:
            self._code(bytes(self._pending))
            self._pending.clear()
        self._writer.finish()
        return self._take_output()


class _NeedInput(Exception):
    pass


class _Feed:
    """A growing byte buffer read like a stream; a read past its end asks for more input."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.pos = 0

    def read(self, n: int) -> bytes:
        if self.pos + n > len(self.buffer):
            raise _NeedInput
        data = bytes(self.buffer[self.pos:self.pos + n])
        self.pos += n
        return data

    def compact(self) -> None:
        del self.buffer[: self.pos]
        self.pos = 0


class LmpressDecompressor:
    """Incremental decompression, like ``lzma.LZMADecompressor``: feed pieces, get whole blocks back.

    ``eof`` turns true after the trailer has been read and checked; bytes after
    the archive are kept in ``unused_data``.
    """

    def __init__(self, model: str | None = None, prompt: SoftPrompt | None = None) -> None:
        self._model = model
        self._prompt = prompt
        self._prefix = None
        self._feed = _Feed()
        self._reader: ArchiveReader | None = None
        self._predictor = None
        self._check = DecodedCheck()
        self._content = bytearray()  # an archive with a front end: decoded samples, rebuilt into the file at eof
        self.eof = False
        self.unused_data = b""

    @property
    def needs_input(self) -> bool:
        return not self.eof

    def decompress(self, data: bytes) -> bytes:
        if self.eof:
            raise EOFError("already at end of stream")
        self._feed.buffer += data
        out = bytearray()
        if self._reader is None:
            try:
                self._reader = ArchiveReader(self._feed, strict_end=False)  # type: ignore[arg-type]
            except _NeedInput:
                self._feed.pos = 0
                return b""
            self._predictor = predictor_for_archive(self._reader.header, self._model)
            self._prefix = prefix_for_archive(self._reader.header, self._predictor, self._prompt)
            self._feed.compact()
        reader = self._reader
        while True:
            state = reader.snapshot()
            try:
                block = reader.next_block()
            except _NeedInput:
                reader.restore(state)
                self._feed.pos = 0
                break
            self._feed.compact()
            if block is None:
                assert reader.trailer is not None
                self._check.end(reader.trailer)
                self.eof = True
                self.unused_data = bytes(self._feed.buffer)
                if reader.header.layout is not None:
                    out += rebuild_file(reader.header, bytes(self._content))
                break
            frame, payload = block
            decoded = decode_frame(self._predictor, frame, payload, reader.header.chunk_size, prefix=self._prefix)
            self._check.block(frame, decoded)
            if reader.header.layout is not None:
                self._content += decoded
            else:
                out += decoded
        return bytes(out)


class _WriteFile(io.RawIOBase):
    """``open(path, "wb")``: buffers writes, codes whole blocks as they fill."""

    def __init__(self, raw: BinaryIO, compressor: LmpressCompressor, close_raw: bool) -> None:
        self._raw, self._compressor, self._close_raw = raw, compressor, close_raw

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self._raw.write(self._compressor.compress(bytes(b)))
        return len(b)

    def close(self) -> None:
        if not self.closed:
            self._raw.write(self._compressor.flush())
            if self._close_raw:
                self._raw.close()
        super().close()


def open(filename: str | os.PathLike | BinaryIO, mode: str = "rb", *, model: str | None = None):  # noqa: A001
    """Open an archive for reading ("rb": decoded in full on open) or writing ("wb")."""
    if mode not in ("rb", "wb", "r", "w"):
        raise ValueError(f"invalid mode {mode!r}")
    is_path = isinstance(filename, (str, bytes, os.PathLike))
    if mode.startswith("r"):
        if is_path:
            with builtins.open(filename, "rb") as f:
                return io.BytesIO(decompress(f.read(), model))
        return io.BytesIO(decompress(filename.read(), model))
    raw = builtins.open(filename, "wb") if is_path else filename
    return io.BufferedWriter(_WriteFile(raw, LmpressCompressor(model or AUTO), close_raw=is_path))
