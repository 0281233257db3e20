"""The ``.lmpz`` container, format versions 3 and 4 (reads 1 to 4).

All integers little-endian. Laid out so that it can be written and read as a
stream (stdin/stdout), and still be indexed for random access::

    header   magic "LMPZ" | version u8 | settings length u16 | settings (JSON) | model id (32 bytes)
             | [coded soft prompt, settings["prompt"]["code_bytes"] bytes, if any]
             | [front end's side data, zlib, settings["layout"]["side_bytes"] bytes (version 4)]
             | header crc32 u32 (of everything before it)
    block*   frame: raw length u32 | payload length u32 | raw crc32 u32 | payload crc32 u32
             | method u8 (version 3) | frame crc32 u32 (of the bytes before it) ; then the payload
    trailer  end mark u32 = 0xFFFFFFFF | block count u32 | original length u64 | data crc32 u32
             | block offsets u64 * count | file crc32 u32 (of every byte before it)

The settings JSON names the model and its shape, the chunk size, the number of
chunks per block, the coder and (version 2) the arithmetic that computed the
probabilities: ``{"name": "exact-int/v1", "id": <SHA-256 of the integer model>}``
for the integer-exact path, which decodes on any CPU, or ``{"name": "float32"}``
/ ``"bfloat16"`` for float kernels, which decode only where the same kernels
run. Version 1 archives are all float (their ``model_info`` may name the
precision); every block holds whole chunks, so its chunk
count is ``ceil(raw length / chunk size)``. Each block decodes on its own.
A block's method (version 3; earlier versions code every block) is ``CODED``
(range-coded by the model) or ``STORED``: the payload is the raw bytes, written
when coding would not make the block smaller (random or already-compressed
data), as xz and zstd do, so no input grows by more than the frames.
An archive made with a soft prompt names it in the settings (``prompt``: id,
tokens) and, when the prompt is part of the code, carries it quantized and
range-coded (``coding/hyperprior.py``) in the header.

Version 4 is version 3 plus a front end (``lmpress.formats``): the blocks hold the file's samples in a
model's layout, and the header's ``layout`` names the front end, its parameters, the original file's
length and CRC-32, and carries the file's other bytes (side data). Archives without a front end are
written as version 3, so earlier lmpress versions keep reading them.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from lmpress.errors import LmpressError

MAGIC = b"LMPZ"
VERSION = 3
LAYOUT_VERSION = 4  # version 3 plus a front end's layout and side data
READS = (1, 2, 3, 4)
MAX_SIDE = 1 << 30
END_MARK = 0xFFFFFFFF
SUFFIX = ".lmpz"
MAX_PROMPT_CODE = 1 << 24

_FRAME = struct.Struct("<IIII")  # versions 1 and 2; version 3 adds the method byte
STORED, CODED = 0, 1  # block methods
_TRAILER_HEAD = struct.Struct("<IIQI")


@dataclass
class Header:
    model_name: str
    model_id: str  # hex
    model_info: dict
    chunk_size: int
    block_chunks: int
    coder: str
    prompt: dict | None = None  # the soft prompt's id, tokens and (if embedded) how it is coded
    prompt_code: bytes = b""  # the embedded prompt (hyper-prior code), counted in the archive size
    arithmetic: dict = field(default_factory=lambda: {"name": "float32"})  # what computed the probabilities
    version: int = VERSION
    layout: dict | None = None  # the front end that split the file (version 4), see lmpress.formats
    side: bytes = b""  # the file's bytes outside the coded samples (stored zlib-compressed)

    def to_bytes(self) -> bytes:
        settings = {"model": self.model_name, "model_info": self.model_info, "chunk_size": self.chunk_size,
                    "block_chunks": self.block_chunks, "coder": self.coder, "arithmetic": self.arithmetic}
        if self.prompt is not None:
            settings["prompt"] = {**self.prompt, **({"code_bytes": len(self.prompt_code)} if self.prompt_code else {})}
        side = b""
        if self.layout is not None:
            side = zlib.compress(self.side, 9)
            settings["layout"] = {**self.layout, "side_bytes": len(side)}
        raw = json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()
        version = LAYOUT_VERSION if self.layout is not None else self.version
        body = (MAGIC + bytes([version]) + struct.pack("<H", len(raw)) + raw + bytes.fromhex(self.model_id)
                + self.prompt_code + side)
        return body + struct.pack("<I", zlib.crc32(body))


@dataclass
class BlockFrame:
    raw_length: int
    payload_length: int
    raw_crc: int
    payload_crc: int
    method: int = CODED

    @property
    def stored(self) -> bool:
        return self.method == STORED

    def to_bytes(self) -> bytes:
        body = _FRAME.pack(self.raw_length, self.payload_length, self.raw_crc, self.payload_crc) + bytes([self.method])
        return body + struct.pack("<I", zlib.crc32(body))


@dataclass
class Trailer:
    original_length: int
    data_crc: int
    block_offsets: list[int] = field(default_factory=list)

    def to_bytes(self, file_crc_so_far: int) -> bytes:
        body = _TRAILER_HEAD.pack(END_MARK, len(self.block_offsets), self.original_length, self.data_crc)
        body += struct.pack(f"<{len(self.block_offsets)}Q", *self.block_offsets)
        return body + struct.pack("<I", zlib.crc32(body, file_crc_so_far))


class ArchiveWriter:
    """Writes an archive to a binary stream block by block, keeping the running checksums."""

    def __init__(self, stream: BinaryIO, header: Header) -> None:
        self._stream = stream
        self._crc = 0
        self._data_crc = 0
        self.offset = 0
        self.raw_length = 0
        self.offsets: list[int] = []
        self._write(header.to_bytes())

    def _write(self, b: bytes) -> None:
        self._stream.write(b)
        self._crc = zlib.crc32(b, self._crc)
        self.offset += len(b)

    def write_block(self, data: bytes, payload: bytes) -> bool:
        """Write a block coded as ``payload``, or stored raw where that is no smaller; True if stored."""
        stored = len(payload) >= len(data)
        if stored:
            payload = data
        self.offsets.append(self.offset)
        frame = BlockFrame(len(data), len(payload), zlib.crc32(data), zlib.crc32(payload), STORED if stored else CODED)
        self._write(frame.to_bytes())
        self._write(payload)
        self._data_crc = zlib.crc32(data, self._data_crc)
        self.raw_length += len(data)
        return stored

    def finish(self) -> None:
        self._write(Trailer(self.raw_length, self._data_crc, self.offsets).to_bytes(self._crc))


class ArchiveReader:
    """Reads an archive front to back from any binary stream, checking as it goes.

    ``strict_end``: the archive must be the whole stream (trailing bytes are an
    error); otherwise reading stops after the trailer and leaves the rest unread.
    """

    def __init__(self, stream: BinaryIO, strict_end: bool = True) -> None:
        self._stream = stream
        self._strict_end = strict_end
        self._crc = 0
        self.offset = 0
        self._offsets: list[int] = []
        self.trailer: Trailer | None = None
        self.header = self._read_header()

    def _read(self, n: int, what: str) -> bytes:
        data = self._stream.read(n)
        if len(data) != n:
            raise LmpressError(f"archive is truncated (ends inside the {what})")
        self._crc = zlib.crc32(data, self._crc)
        self.offset += n
        return data

    def _read_header(self) -> Header:
        start = self._stream.read(4)
        if start != MAGIC:
            if len(start) < 4 and MAGIC.startswith(start):
                raise LmpressError("archive is truncated (ends inside the header)")
            raise LmpressError("not an lmpress archive (bad magic bytes)")
        self._crc = zlib.crc32(start)
        self.offset = 4
        version = self._read(1, "header")[0]
        if version not in READS:
            raise LmpressError(f"unsupported archive format version {version} (this lmpress reads "
                               f"{', '.join(map(str, READS))}; a newer lmpress made it)")
        (n,) = struct.unpack("<H", self._read(2, "header"))
        settings_raw = self._read(n, "header")
        model_id = self._read(32, "header").hex()
        try:
            s = json.loads(settings_raw)
            prompt = s.get("prompt")
            code_bytes = int(prompt.get("code_bytes", 0)) if prompt is not None else 0
            layout = s.get("layout") if version >= LAYOUT_VERSION else None
            side_bytes = int(layout["side_bytes"]) if layout is not None else 0
        except (ValueError, KeyError, TypeError, AttributeError):
            raise LmpressError("archive is corrupted (unreadable header settings)") from None
        if not 0 <= code_bytes <= MAX_PROMPT_CODE or not 0 <= side_bytes <= MAX_SIDE:
            raise LmpressError("archive is corrupted (impossible sizes in the header)")
        prompt_code = self._read(code_bytes, "header")
        side = self._read(side_bytes, "header")
        body_crc = self._crc
        (stored,) = struct.unpack("<I", self._read(4, "header"))
        if stored != body_crc:
            raise LmpressError("archive is corrupted (header checksum mismatch)")
        if layout is not None:
            try:
                side = zlib.decompress(side)
            except zlib.error:
                raise LmpressError("archive is corrupted (side data of the front end)") from None
            layout = {k: v for k, v in layout.items() if k != "side_bytes"}
        try:
            # version 1: float arithmetic, at the precision model_info names (float32 if none)
            arithmetic = s.get("arithmetic") or {"name": s["model_info"].get("precision", "float32")}
            return Header(s["model"], model_id, s["model_info"], int(s["chunk_size"]),
                          int(s["block_chunks"]), s["coder"], prompt, prompt_code, dict(arithmetic), version,
                          layout, side)
        except (KeyError, TypeError):
            raise LmpressError("archive is corrupted (unreadable header settings)") from None

    def snapshot(self) -> tuple[int, int, int]:
        """Reader state before a step, for ``restore`` (incremental decompression)."""
        return self._crc, self.offset, len(self._offsets)

    def restore(self, state: tuple[int, int, int]) -> None:
        self._crc, self.offset, n = state
        del self._offsets[n:]

    def next_block(self) -> tuple[BlockFrame, bytes] | None:
        """The next block's frame and checked payload; None once the trailer is read and checked."""
        index, offset = len(self._offsets), self.offset
        first = self._read(4, "block table")
        (raw_length,) = struct.unpack("<I", first)
        if raw_length == END_MARK:
            self.trailer = self._read_trailer()
            return None
        with_method = self.header.version >= 3
        rest = self._read(_FRAME.size - 4 + with_method, f"frame of block {index}")
        frame = BlockFrame(*_FRAME.unpack(first + rest[:_FRAME.size - 4]), *rest[_FRAME.size - 4:])
        (stored,) = struct.unpack("<I", self._read(4, f"frame of block {index}"))
        if stored != zlib.crc32(first + rest):
            raise LmpressError(f"archive is corrupted (frame of block {index} fails its checksum)")
        if frame.method not in (STORED, CODED):
            raise LmpressError(f"archive is corrupted (block {index} has an unknown method)")
        if frame.stored and frame.payload_length != frame.raw_length:
            raise LmpressError(f"archive is corrupted (stored block {index} has two lengths)")
        if frame.raw_length == 0 or frame.raw_length > self.header.chunk_size * self.header.block_chunks:
            raise LmpressError(f"archive is corrupted (block {index} has an impossible length)")
        payload = self._read(frame.payload_length, f"block {index}")
        if zlib.crc32(payload) != frame.payload_crc:
            raise LmpressError(f"archive is corrupted (block {index} fails its checksum)")
        self._offsets.append(offset)
        return frame, payload

    def blocks(self) -> Iterator[tuple[int, BlockFrame, bytes]]:
        """Yield (index, frame, payload) for every block, then read and check the trailer."""
        index = 0
        while (block := self.next_block()) is not None:
            yield index, *block
            index += 1

    def _read_trailer(self) -> Trailer:
        offsets = self._offsets
        rest = self._read(_TRAILER_HEAD.size - 4, "trailer")
        count, original_length, data_crc = struct.unpack("<IQI", rest)
        if count != len(offsets):
            raise LmpressError("archive is corrupted (block count in the trailer does not match)")
        stored_offsets = list(struct.unpack(f"<{count}Q", self._read(8 * count, "trailer")))
        expected_crc = self._crc
        (file_crc,) = struct.unpack("<I", self._read(4, "trailer"))
        if file_crc != expected_crc:
            raise LmpressError("archive is corrupted (whole-file checksum mismatch)")
        if stored_offsets != offsets:
            raise LmpressError("archive is corrupted (block index does not match the blocks)")
        if self._strict_end and self._stream.read(1):
            raise LmpressError("archive has trailing garbage after its end")
        return Trailer(original_length, data_crc, stored_offsets)


def n_chunks(raw_length: int, chunk_size: int) -> int:
    return -(-raw_length // chunk_size)
