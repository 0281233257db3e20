"""The neural codec: chunks -> lockstep predictor steps -> range coder -> container, and back.

A *block* is up to ``block_chunks`` consecutive chunks of ``chunk_size`` bytes.
All chunks of a block advance together, one batched predictor step per byte
position, and share one range-coded stream. Blocks are independent, so they
can be coded by several worker processes; each worker runs torch with one
thread, so every block is computed exactly as a single process would compute
it and the archive does not depend on the number of workers.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import itertools
import multiprocessing
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import torch

from lmpress.coding import entropy
from lmpress.coding.container import ArchiveReader, ArchiveWriter, BlockFrame, Header, Trailer
from lmpress.errors import LmpressError
from lmpress.models.base import Predictor
from lmpress.models.registry import load_predictor

DEFAULT_CHUNK_SIZE = 2048
DEFAULT_BLOCK_CHUNKS = 64
CODER = f"constriction-range/p{entropy.PRECISION}/{entropy.QUANTIZER}"
CODING_THREADS = 1  # per process; fixed so that probabilities never depend on the machine's load

# Called as progress(raw_bytes_done, bits_spent) while coding.
ProgressFn = Callable[[int, float], None]


@contextlib.contextmanager
def coding_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(CODING_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _chunk_matrix(data: bytes, chunk_size: int) -> np.ndarray:
    """Chunks as the rows of a zero-padded [n, width] matrix (width = chunk size, or less for one short chunk)."""
    n = -(-len(data) // chunk_size)
    width = min(chunk_size, len(data))
    padded = np.zeros(n * width, dtype=np.uint8)
    padded[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    return padded.reshape(n, width)


def _lockstep(predictor: Predictor, raw_length: int, chunk_size: int,
              code_column: Callable[[int, int, np.ndarray], np.ndarray],
              symbols: np.ndarray, progress: ProgressFn | None) -> None:
    """Drive the predictor over all chunks of a block, one byte position per step.

    ``code_column(t, active, weights)`` codes position ``t`` of the first ``active``
    chunks and returns their symbols; ``symbols`` [n, width] receives them. Only the
    last chunk can be shorter, so the active chunks are always a prefix of the rows.
    """
    n, width = symbols.shape
    last_length = raw_length - (n - 1) * chunk_size
    probs = predictor.begin(n)
    for t in range(width):
        active = n if t < last_length else n - 1
        weights = entropy.frequencies(probs[:active])
        column = symbols[:active, t] = code_column(t, active, weights)
        if progress is not None:  # live bits/byte costs a little; only when someone watches
            progress(active, float(entropy.code_lengths(weights, column).sum()))
        if t + 1 < width:
            probs = predictor.advance(symbols[:, t])


def encode_block(predictor: Predictor, data: bytes, chunk_size: int,
                 progress: ProgressFn | None = None) -> bytes:
    """The range-coded payload of one block."""
    symbols = _chunk_matrix(data, chunk_size)
    encoder = entropy.Encoder()

    def code_column(t: int, active: int, weights: np.ndarray) -> np.ndarray:
        encoder.encode(symbols[:active, t], weights)
        return symbols[:active, t]

    with coding_threads():
        _lockstep(predictor, len(data), chunk_size, code_column, symbols, progress)
    return encoder.finish()


def decode_block(predictor: Predictor, payload: bytes, raw_length: int, chunk_size: int,
                 progress: ProgressFn | None = None) -> bytes:
    symbols = _chunk_matrix(bytes(raw_length), chunk_size)  # filled column by column
    try:
        decoder = entropy.Decoder(payload)
    except ValueError as e:
        raise LmpressError(f"archive is corrupted ({e})") from None

    def code_column(t: int, active: int, weights: np.ndarray) -> np.ndarray:
        try:
            return decoder.decode(weights)
        except Exception as e:  # constriction reports an exhausted or invalid stream
            raise LmpressError(f"archive is corrupted (range decoder failed: {e})") from None

    with coding_threads():
        _lockstep(predictor, raw_length, chunk_size, code_column, symbols, progress)
    return symbols.reshape(-1)[:raw_length].tobytes()


# ---------------------------------------------------------------------------------------------
# Parallel block coding: worker processes, each with its own copy of the model.

_worker_predictor: Predictor | None = None


def _init_worker(model: str) -> None:
    global _worker_predictor
    torch.set_num_threads(CODING_THREADS)
    _worker_predictor = load_predictor(model)


def _encode_in_worker(data: bytes, chunk_size: int) -> bytes:
    assert _worker_predictor is not None
    return encode_block(_worker_predictor, data, chunk_size)


def _decode_in_worker(payload: bytes, raw_length: int, chunk_size: int) -> bytes:
    assert _worker_predictor is not None
    return decode_block(_worker_predictor, payload, raw_length, chunk_size)


@dataclass
class _Runner:
    """Runs block jobs in this process (workers=1) or in a pool, yielding results in order."""

    model: str
    workers: int
    pooled: bool = False  # whether the results come from worker processes (they report no live progress)

    def map(self, local: Callable, remote: Callable, jobs: Iterator[tuple]) -> Iterator:
        jobs = iter(jobs)
        head = [job for job in (next(jobs, None), next(jobs, None)) if job is not None]
        jobs = itertools.chain(head, jobs)  # lazily: never read the whole input ahead
        if self.workers <= 1 or len(head) < 2:  # one block: starting processes would only cost time
            for job in jobs:
                yield local(*job)
            return
        self.pooled = True
        context = multiprocessing.get_context("spawn")  # fork after torch threads start is unsafe
        with futures.ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker,
                                         initargs=(self.model,)) as pool:
            pending: list[futures.Future] = []
            for job in jobs:
                pending.append(pool.submit(remote, *job))
                while len(pending) > 2 * self.workers:  # bounded memory: a few blocks in flight
                    yield pending.pop(0).result()
            for f in pending:
                yield f.result()


def _read_blocks(src: BinaryIO, block_bytes: int) -> Iterator[bytes]:
    while True:
        data = src.read(block_bytes)
        while data and len(data) < block_bytes:  # pipes may return short reads
            more = src.read(block_bytes - len(data))
            if not more:
                break
            data += more
        if not data:
            return
        yield data


@dataclass
class CodingStats:
    raw_bytes: int = 0
    archive_bytes: int = 0


def make_header(predictor: Predictor, chunk_size: int, block_chunks: int) -> Header:
    if not 1 <= chunk_size <= 1 << 20:
        raise LmpressError(f"chunk size must be between 1 and {1 << 20} bytes")
    if not 1 <= block_chunks <= 4096:
        raise LmpressError("block size must be between 1 and 4096 chunks")
    return Header(predictor.name, predictor.model_id, predictor.describe(), chunk_size, block_chunks, CODER)


def compress_stream(src: BinaryIO, dst: BinaryIO, model: str = "default", *,
                    chunk_size: int = DEFAULT_CHUNK_SIZE, block_chunks: int = DEFAULT_BLOCK_CHUNKS,
                    workers: int = 1, progress: ProgressFn | None = None) -> CodingStats:
    """Compress everything readable from ``src`` into ``dst`` as one archive."""
    predictor = load_predictor(model)
    writer = ArchiveWriter(dst, make_header(predictor, chunk_size, block_chunks))
    stats = CodingStats()
    blocks: list[bytes] = []

    def jobs() -> Iterator[tuple]:
        for data in _read_blocks(src, chunk_size * block_chunks):
            blocks.append(data)
            yield (data, chunk_size)

    local = lambda data, cs: encode_block(predictor, data, cs, progress)  # noqa: E731
    runner = _Runner(model, workers)
    for payload in runner.map(local, _encode_in_worker, jobs()):
        data = blocks.pop(0)
        writer.write_block(data, payload)
        if progress is not None and runner.pooled:
            progress(len(data), 8.0 * len(payload))
    writer.finish()
    stats.raw_bytes, stats.archive_bytes = writer.raw_length, writer.offset
    return stats


def predictor_for_archive(header: Header, model: str | None) -> Predictor:
    """The predictor that decodes an archive: the one it names, or ``model``; refuse any other weights."""
    if header.coder != CODER:
        raise LmpressError(f"archive uses coder {header.coder!r}, this lmpress has {CODER!r}")
    try:
        predictor = load_predictor(model or header.model_name)
    except LmpressError:
        if model is None:
            raise LmpressError(f"archive needs model {header.model_name!r} (id {header.model_id[:12]}), "
                               "which is not available here; pass --model") from None
        raise
    if predictor.model_id != header.model_id:
        raise LmpressError(
            f"archive was made with model {header.model_name!r} (id {header.model_id[:12]}), "
            f"not {predictor.name!r} (id {predictor.model_id[:12]})")
    return predictor


class DecodedCheck:
    """Checks decoded blocks against their frames, and the whole against the trailer."""

    def __init__(self) -> None:
        self.raw_bytes = 0
        self._crc = 0
        self._index = 0

    def block(self, frame: BlockFrame, data: bytes) -> None:
        if zlib.crc32(data) != frame.raw_crc:
            raise LmpressError(f"archive is corrupted (block {self._index} decodes to data failing its checksum)")
        self._crc = zlib.crc32(data, self._crc)
        self.raw_bytes += len(data)
        self._index += 1

    def end(self, trailer: Trailer) -> None:
        if trailer.original_length != self.raw_bytes or trailer.data_crc != self._crc:
            raise LmpressError("archive is corrupted (decoded data does not match the recorded length and checksum)")


def decompress_stream(src: BinaryIO, dst: BinaryIO, model: str | None = None, *,
                      workers: int = 1, progress: ProgressFn | None = None) -> CodingStats:
    """Decode one archive from ``src`` into ``dst``; raise LmpressError on any mismatch."""
    reader = ArchiveReader(src)
    header = reader.header
    predictor = predictor_for_archive(header, model)
    check = DecodedCheck()
    frames: list[BlockFrame] = []

    def jobs() -> Iterator[tuple]:
        for _, frame, payload in reader.blocks():
            frames.append(frame)
            yield (payload, frame.raw_length, header.chunk_size)

    local = lambda p, n, cs: decode_block(predictor, p, n, cs, progress)  # noqa: E731
    runner = _Runner(model or header.model_name, workers)
    for data in runner.map(local, _decode_in_worker, jobs()):
        frame = frames.pop(0)
        check.block(frame, data)
        dst.write(data)
        if progress is not None and runner.pooled:
            progress(len(data), 8.0 * frame.payload_length)
    assert reader.trailer is not None  # the blocks() generator ran to its end
    check.end(reader.trailer)
    return CodingStats(raw_bytes=check.raw_bytes, archive_bytes=reader.offset)
