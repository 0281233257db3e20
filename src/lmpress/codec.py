"""The neural codec: chunks -> lockstep predictor steps -> range coder -> container, and back.

A *block* is up to ``block_chunks`` consecutive chunks of ``chunk_size`` bytes.
All chunks of a block advance together, one batched predictor step per byte
position, and share one range-coded stream. Blocks are independent, so they
can be coded by several worker processes; each worker runs torch with one
thread, so every block is computed exactly as a single process would compute
it and the archive does not depend on the number of workers.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import torch

from lmpress import formats
from lmpress.coding import entropy
from lmpress.coding.container import ArchiveReader, ArchiveWriter, BlockFrame, Header, Trailer
from lmpress.coding.hyperprior import decode_vectors, encode_vectors
from lmpress.errors import LmpressError
from lmpress.models.base import Predictor
from lmpress.models.exact import rows
from lmpress.models.exact.mixer import AUDIO_MIXER, COLOUR_MIXER, IMAGE_MIXER
from lmpress.models.prompt import SoftPrompt
from lmpress.models.registry import AUTO, choose_model, is_llm, load_predictor, shipped_with_id
from lmpress.models.vocab import ByteVocabulary, Vocabulary
from lmpress.parallel import Backend, BlockRunner

DEFAULT_CHUNK_SIZE = 2048  # the studies' chunks; LLMs and the network alone (no mixing) by default
DEFAULT_BLOCK_CHUNKS = 64
SEGMENT_MIN, SEGMENT_MAX = 2048, 65536  # mixed byte models: a file is cut into block_chunks segments of this
PRECISIONS = ("exact", "float32", "bfloat16")  # "exact": integer arithmetic, portable (byte models)
DEFAULT_PROMPT_LEVELS = 16  # quantization levels of an embedded soft prompt
PROMPT_ID_HEX = 32  # an archive names its prompt by the first 128 bits of the prompt's SHA-256 id
CODER = f"constriction-range/p{entropy.PRECISION}/{entropy.QUANTIZER}"
CODING_THREADS = 1  # per process; fixed so that probabilities never depend on the machine's load
RETAIN_FRACTION = 0.875  # drop finished sequences from the batch once this fraction or fewer are left


class DecodeMismatch(LmpressError):
    """A payload whose checksum is intact decoded to wrong data: the decoder's probabilities differ."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"archive is corrupted ({detail})")
        self.detail = detail


# Called as progress(raw_bytes_done, bits_spent) while coding.
ProgressFn = Callable[[int, float], None]
# Called once the coding plan is known, as plan(what: e.g. "text-800k" or "default, PGM 768x512 8-bit",
# bytes the model will code).
PlanFn = Callable[[str, int | None], None]


@contextlib.contextmanager
def coding_threads(threads: int = 1):
    """The threads a block is coded with.

    Torch and numpy's BLAS run at CODING_THREADS: a step's matmuls are too small to share across cores,
    and a second BLAS thread only waits for a core that another worker or process holds (measured under
    cProfile: 128 KB of text coded at 3.2 KB/s with numpy's default two threads beside a busy core, 7.7
    KB/s with one); for float arithmetic another thread count would also sum in another order. An exact
    predictor may use ``threads`` threads for a block coded alone while cores are free: a byte model for
    row ranges of its batch, an LLM for its weight products (``models/exact/rows.py``; the same integers
    on any number of threads)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(CODING_THREADS)
    try:
        with rows.blas_threads(CODING_THREADS), rows.threads(threads):
            yield
    finally:
        torch.set_num_threads(previous)


def _chunk_lengths(raw_length: int, chunk_size: int) -> np.ndarray:
    n = -(-raw_length // chunk_size)
    lengths = np.full(n, chunk_size, dtype=np.int64)
    lengths[-1] = raw_length - (n - 1) * chunk_size
    return lengths


def _lockstep(predictor: Predictor, chunk_lengths: np.ndarray,
              code_step: Callable[[int, np.ndarray, np.ndarray], np.ndarray],
              progress: ProgressFn | None, prefix: np.ndarray | None = None) -> None:
    """Drive the predictor over all chunks of a block, one symbol per chunk per step.

    ``code_step(t, active, weights)`` codes symbol ``t`` of the chunks listed in
    ``active`` (ascending) and returns those symbols. A chunk is active until its
    symbols' pieces reach its byte length, which both sides know, so encoder and
    decoder make the same calls with the same shapes. For byte models every
    symbol is one byte and the active chunks are all of them, or all but a
    shorter last one. ``prefix``: soft-prompt vectors fed to every chunk after BOS.

    Token counts differ between chunks (one chunk of a block may need twice the
    steps of the others), so once a fraction of the batch has finished, the
    predictor drops the finished sequences (``retain``) instead of stepping them
    until the last chunk ends. Both sides drop the same rows at the same step.
    """
    vocab = predictor.vocab
    done = np.zeros(len(chunk_lengths), dtype=np.int64)  # bytes coded so far, per chunk
    rows = np.arange(len(chunk_lengths))  # the chunk each batch row codes
    fed = np.zeros(len(rows), dtype=np.int64)  # per row: last symbol (finished chunks repeat theirs)
    probs = predictor.begin(len(rows), prefix)
    for t in itertools.count():
        live = done[rows] < chunk_lengths[rows]
        active = rows[live]
        weights = entropy.frequencies(probs[live])
        symbols = code_step(t, active, weights)
        done[active] += vocab.piece_lengths[symbols]
        fed[live] = _model_symbols(vocab, symbols)  # an escaped byte is fed as the escape symbol
        if progress is not None:  # live bits/byte costs a little; only when someone watches
            bits = entropy.code_lengths(weights, fed[live]).sum() + 8.0 * (symbols >= vocab.size).sum()
            progress(int(vocab.piece_lengths[symbols].sum()), float(bits))
        unfinished = np.flatnonzero(done[rows] < chunk_lengths[rows])
        if not len(unfinished):
            return
        if len(unfinished) <= RETAIN_FRACTION * len(rows):
            predictor.retain(unfinished)
            rows, fed = rows[unfinished], fed[unfinished]
        probs = predictor.advance(fed)


def _model_symbols(vocab: Vocabulary, symbols: np.ndarray) -> np.ndarray:
    """Symbols as the model sees them: escaped bytes (ids >= size) become the escape symbol."""
    return symbols if vocab.escape is None else np.where(symbols >= vocab.size, vocab.escape, symbols)


def encode_block(predictor: Predictor, data: bytes, chunk_size: int,
                 progress: ProgressFn | None = None, prefix: np.ndarray | None = None, threads: int = 1) -> bytes:
    """The range-coded payload of one block (``threads``: see ``coding_threads``)."""
    lengths = _chunk_lengths(len(data), chunk_size)
    tokens = [predictor.vocab.tokenize(data[i * chunk_size: (i + 1) * chunk_size]) for i in range(len(lengths))]
    matrix = np.zeros((len(tokens), max(len(t) for t in tokens)), dtype=np.int64)
    for row, t in zip(matrix, tokens):
        row[: len(t)] = t
    encoder = entropy.Encoder()

    vocab = predictor.vocab

    def code_step(t: int, active: np.ndarray, weights: np.ndarray) -> np.ndarray:
        symbols = matrix[active, t]
        encoder.encode(_model_symbols(vocab, symbols), weights)
        escaped = symbols[symbols >= vocab.size] - vocab.size
        if len(escaped):  # the bytes behind escape symbols, uniformly
            encoder.encode(escaped, entropy.uniform(len(escaped), 256))
        return symbols

    with coding_threads(threads):
        _lockstep(predictor, lengths, code_step, progress, prefix)
    return encoder.finish()


def decode_block(predictor: Predictor, payload: bytes, raw_length: int, chunk_size: int,
                 progress: ProgressFn | None = None, prefix: np.ndarray | None = None, threads: int = 1) -> bytes:
    lengths = _chunk_lengths(raw_length, chunk_size)
    try:
        decoder = entropy.Decoder(payload)
    except ValueError as e:
        raise LmpressError(f"archive is corrupted ({e})") from None
    columns: list[tuple[np.ndarray, np.ndarray]] = []  # (active chunks, their symbols) per step

    vocab = predictor.vocab

    def code_step(t: int, active: np.ndarray, weights: np.ndarray) -> np.ndarray:
        try:
            symbols = decoder.decode(weights).astype(np.int64)
            if vocab.escape is not None and (escaped := symbols == vocab.escape).any():
                symbols[escaped] = vocab.size + decoder.decode(entropy.uniform(int(escaped.sum()), 256))
        except Exception as e:  # constriction reports an exhausted or invalid stream
            raise DecodeMismatch(f"range decoder failed: {e}") from None
        columns.append((active, symbols))
        return symbols

    with coding_threads(threads):
        _lockstep(predictor, lengths, code_step, progress, prefix)
    return _assemble(predictor, columns, lengths)


def _assemble(predictor: Predictor, columns: list[tuple[np.ndarray, np.ndarray]], lengths: np.ndarray) -> bytes:
    """The block's bytes from the decoded symbols, step by step."""
    if isinstance(predictor.vocab, ByteVocabulary):  # one byte per symbol: fill a matrix column by column
        matrix = np.zeros((len(lengths), len(columns)), dtype=np.uint8)
        for t, (active, symbols) in enumerate(columns):
            matrix[active, t] = symbols
        rows = [matrix[i, :n].tobytes() for i, n in enumerate(lengths)]
    else:
        pieces: list[list[bytes]] = [[] for _ in lengths]
        for active, symbols in columns:
            for i, s in zip(active.tolist(), symbols.tolist()):
                pieces[i].append(predictor.vocab.piece(s))
        rows = [b"".join(p) for p in pieces]
    if any(len(r) != n for r, n in zip(rows, lengths)):
        raise DecodeMismatch("decoded symbols overrun their chunk")
    return b"".join(rows)


# ---------------------------------------------------------------------------------------------
# Block jobs, run by lmpress.parallel in this process, in worker processes or as Ray tasks. The
# predictor is loaded once per process (load_predictor caches it).


def encode_job(model: str, options: dict, prefix: np.ndarray | None, data: bytes, chunk_size: int) -> bytes:
    return encode_block(load_predictor(model, **options), data, chunk_size, prefix=prefix)


def decode_job(model: str, options: dict, prefix: np.ndarray | None, payload: bytes, frame: BlockFrame,
               chunk_size: int) -> bytes:
    return decode_frame(load_predictor(model, **options), frame, payload, chunk_size, prefix=prefix)


def decode_frame(predictor: Predictor, frame: BlockFrame, payload: bytes, chunk_size: int,
                 progress: ProgressFn | None = None, prefix: np.ndarray | None = None, threads: int = 1) -> bytes:
    """One block's bytes: its payload if stored, else decoded by ``predictor``."""
    if frame.stored:
        if progress is not None:
            progress(len(payload), 8.0 * len(payload))
        return payload
    return decode_block(predictor, payload, frame.raw_length, chunk_size, progress, prefix, threads)


def model_options(window: int | None = None, precision: str | None = None, mix: bool | str | None = None) -> dict:
    """How a model runs (``load_predictor``'s keyword arguments); recorded in the archive header.

    ``precision`` None: the model's default arithmetic (``registry.default_precision``), or one of
    ``PRECISIONS``, or an exact arithmetic by the name archives record ("exact-int/v1"); ``mix`` None:
    context mixing wherever it applies; a mixer's name: that one.
    """
    if precision is not None and precision not in PRECISIONS and not precision.startswith("exact-int/"):
        raise LmpressError(f"precision must be one of {', '.join(PRECISIONS)}")
    return {"window": window, "precision": precision, "mix": mix}


def front_end_mixer(parsed: formats.Parsed) -> str:
    """The mixer for a front end's content: image contexts for stripes of pixels (and colour ones for
    several planes), sample predictors for audio streams."""
    if parsed.modality == "audio":
        return AUDIO_MIXER
    return colour_mixer(parsed.params) if parsed.params.get("plane") else IMAGE_MIXER


def colour_mixer(params: dict, name: str = COLOUR_MIXER) -> str:
    """A colour mixer's option (its name and plane distance) for an image front end's parameters or an
    archive's arithmetic (with the mixer the archive names)."""
    return f"{name}@{int(params.get('plane', 0))}"


def archive_options(header: Header) -> dict:
    """The options that decode an archive: its window and the arithmetic it was made with."""
    name = header.arithmetic.get("name", "float32")
    exact = name.startswith("exact")
    mixer_name = name.partition("+")[2]  # "exact-int/v1+cm/v1": the network mixed by mixer cm/v1
    if "plane" in header.arithmetic:  # the colour mixer's plane distance
        mixer_name = colour_mixer(header.arithmetic, mixer_name)
    return model_options(header.model_info.get("window"), name.partition("+")[0],
                         (mixer_name or False) if exact else False)


def _float_failure(header: Header, what: str) -> LmpressError:
    """The error for a float archive that does not decode although its payload checksums are intact."""
    return LmpressError(
        f"cannot decode: the archive was made with {header.arithmetic.get('name', 'float32')} arithmetic, whose "
        f"probabilities depend on the CPU's float kernels, and this machine computes different ones ({what}; "
        "the payload's checksums are intact, so the file is not corrupted). Decode it on the kind of CPU and "
        "with the torch version that made it; archives made by this lmpress use exact integer arithmetic.")


def _read_up_to(src: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes, fewer only at the end of the input (pipes may return short reads)."""
    data = src.read(n)
    while data and len(data) < n:
        more = src.read(n - len(data))
        if not more:
            break
        data += more
    return data


def _read_blocks(src: BinaryIO, block_bytes: int) -> Iterator[bytes]:
    while data := _read_up_to(src, block_bytes):
        yield data


def sniff_modality(head: bytes) -> str:
    """"text" where the input's first bytes read as text (UTF-8 or ASCII, no control bytes but whitespace),
    "bytes" otherwise; picks the model of a file that no front end reads."""
    sample = np.frombuffer(head[:1 << 16], dtype=np.uint8)
    if len(sample) == 0:
        return "bytes"
    control = ((sample < 32) & ~np.isin(sample, (9, 10, 12, 13))) | (sample == 127)
    text = head[:1 << 16].decode("utf-8", errors="replace")
    return "text" if control.mean() < 0.001 and text.count("\ufffd") <= 0.001 * len(sample) + 1 else "bytes"


@dataclass
class Plan:
    """What an archive codes: the input itself, or what a front end made of it; and with which model."""

    model: str
    data: BinaryIO  # the bytes the model codes
    ahead: bytes  # the first of them, already read
    length: int | None  # how many, where known
    parsed: formats.Parsed | None = None
    file_length: int = 0
    file_crc: int = 0


def prompted_model(model: str, prompt: SoftPrompt | None) -> str:
    """AUTO with a soft prompt: the shipped model the prompt was made for, not the one chosen by content."""
    if model != AUTO or prompt is None:
        return model
    name = shipped_with_id(prompt.model_id)
    if name is None:
        raise LmpressError(f"the soft prompt was made for model id {prompt.model_id[:12]}, which is not a shipped "
                           "model; pass it with -m")
    return name


def lookahead_bytes(chunk_size: int | None, block_chunks: int) -> int:
    """How much of an input is read before coding starts: one block (whole-file segments: the largest one)."""
    return max((chunk_size or SEGMENT_MAX) * block_chunks, formats.HEAD_BYTES)


def plan_input(src: BinaryIO, model: str, length: int | None, lookahead: int, front_ends: bool) -> Plan:
    """Read the input's start; split it with a front end where one reads it; choose the model if ``model`` is AUTO.

    A pipe and a file give the same plan: the front ends' formats are recognized by their first bytes, and
    a file that one might read is read whole (up to formats.MAX_FILE_BYTES) whether it comes from a pipe or not.
    """
    ahead = _read_up_to(src, lookahead)
    if length is None and len(ahead) < lookahead:
        length = len(ahead)
    if front_ends and formats.claims(ahead[:formats.HEAD_BYTES]):
        ahead += _read_up_to(src, formats.MAX_FILE_BYTES + 1 - len(ahead))
        parsed = formats.parse(ahead)
        if parsed is not None:
            chosen = choose_model(parsed.modality) if model == AUTO else model
            return Plan(chosen, io.BytesIO(parsed.content), b"", len(parsed.content), parsed, len(ahead),
                        zlib.crc32(ahead))
        if len(ahead) <= formats.MAX_FILE_BYTES:
            length = len(ahead)
    chosen = choose_model(sniff_modality(ahead)) if model == AUTO else model
    return Plan(chosen, src, ahead, length)


@dataclass
class CodingStats:
    raw_bytes: int = 0
    archive_bytes: int = 0


def segment_size(length: int | None, block_chunks: int = DEFAULT_BLOCK_CHUNKS) -> int:
    """The chunk size that cuts an input of ``length`` bytes into ``block_chunks`` segments (1 KiB multiples
    within SEGMENT_MIN..SEGMENT_MAX): up to 4 MiB in one block, whose rows share the mixer's statistics.
    ``length`` None: longer than that (a stream that did not end within one largest block)."""
    if length is None:
        return SEGMENT_MAX
    per_row = -(-length // block_chunks)
    return min(max(-(-per_row // 1024) * 1024, SEGMENT_MIN), SEGMENT_MAX)


def default_chunk_size(predictor: Predictor, length: int | None, block_chunks: int) -> int:
    """Mixed byte models code whole-file segments; the network alone and LLMs (mixed or not: their context
    is the chunk, or a window given with ``--window``) code the studies' chunks."""
    byte_model = isinstance(predictor.vocab, ByteVocabulary)
    return segment_size(length, block_chunks) if byte_model and predictor.mixer is not None else DEFAULT_CHUNK_SIZE


def check_chunking(chunk_size: int | None, block_chunks: int) -> None:
    if chunk_size is not None and not 1 <= chunk_size <= 1 << 20:
        raise LmpressError(f"chunk size must be between 1 and {1 << 20} bytes")
    if not 1 <= block_chunks <= 4096:
        raise LmpressError("block size must be between 1 and 4096 chunks")


def make_header(predictor: Predictor, chunk_size: int, block_chunks: int) -> Header:
    check_chunking(chunk_size, block_chunks)
    arithmetic = predictor.arithmetic or {"name": predictor.precision}
    return Header(predictor.name, predictor.model_id, predictor.describe(), chunk_size, block_chunks, CODER,
                  arithmetic=dict(arithmetic))


def steering(predictor: Predictor, prompt: SoftPrompt | None, embed_prior: str | None = None,
             levels: int = DEFAULT_PROMPT_LEVELS) -> tuple[np.ndarray | None, dict | None, bytes]:
    """(prefix vectors, header description, embedded code) for coding with ``prompt``.

    Embedded (``embed_prior``): the prompt is quantized and coded with that hyper-prior, the
    code goes into the archive, and both sides use the dequantized vectors.
    """
    if prompt is None:
        if embed_prior is not None:
            raise LmpressError("--embed-prompt needs --prompt")
        return None, None, b""
    prompt.check_model(predictor)
    if embed_prior is None:
        return prompt.vectors, {"id": prompt.id[:PROMPT_ID_HEX], "tokens": prompt.tokens}, b""
    coded = encode_vectors(prompt.vectors, embed_prior, levels)
    used = SoftPrompt(coded.values, prompt.model_id)
    info = {"id": used.id[:PROMPT_ID_HEX], "tokens": used.tokens, "prior": embed_prior, "levels": levels}
    return used.vectors, info, coded.code


def compress_stream(src: BinaryIO, dst: BinaryIO, model: str = AUTO, *,
                    chunk_size: int | None = None, block_chunks: int = DEFAULT_BLOCK_CHUNKS, length: int | None = None,
                    window: int | None = None, precision: str | None = None, mix: bool | str | None = None,
                    workers: int = 1, ray: str | None = None,
                    progress: ProgressFn | None = None, prompt: SoftPrompt | None = None,
                    embed_prompt: str | None = None, prompt_levels: int = DEFAULT_PROMPT_LEVELS,
                    front_ends: bool = True, plan: PlanFn | None = None) -> CodingStats:
    """Compress everything readable from ``src`` into ``dst`` as one archive.

    ``model`` AUTO: the shipped model for the input's kind (``registry.choose_model``).
    ``front_ends``: WAV, PGM/PPM, BMP and TIFF files are coded in the models' layouts (``lmpress.formats``);
    False: every input as plain bytes. ``plan``: told what is coded with which model before coding starts.

    ``chunk_size`` None: whole-file segments for mixed byte models (``segment_size`` of ``length``, the
    input's length if known), the studies' 2048-byte chunks otherwise.
    ``window`` (LLMs only): attention window in tokens, for chunks longer than it.
    ``precision``: the arithmetic (None: the model's default; byte models "exact" or "float32", LLMs
    "float32" or "bfloat16" weight matmuls); recorded in the archive.
    ``mix``: context mixing (None: wherever it applies; False: the network alone, the studies' protocol).
    ``workers`` / ``ray``: where blocks are coded (see lmpress.parallel); the archive is the same.
    ``prompt``: steer the model with a soft prompt; the archive names it, or, with
    ``embed_prompt`` (a hyper-prior: gaussian, histogram, lloyd-max), carries it quantized to
    ``prompt_levels`` levels so the prompt's bits are part of the archive.
    """
    check_chunking(chunk_size, block_chunks)
    # read up to one largest block ahead, so that a pipe and a file give the same archive
    model = prompted_model(model, prompt)
    todo = plan_input(src, model, length, lookahead_bytes(chunk_size, block_chunks), front_ends)
    model, src, ahead, length, parsed = todo.model, todo.data, todo.ahead, todo.length, todo.parsed
    if mix is None and parsed is not None and precision in (None, "exact") and not is_llm(model):
        mix = front_end_mixer(parsed)
    options = model_options(window, precision, mix)
    predictor = load_predictor(model, **options)
    prefix, prompt_info, prompt_code = steering(predictor, prompt, embed_prompt, prompt_levels)
    if chunk_size is None:
        chunk_size = parsed.chunk_size if parsed is not None and parsed.chunk_size else None
    if chunk_size is None:
        chunk_size = default_chunk_size(predictor, length, block_chunks)
    header = make_header(predictor, chunk_size, block_chunks)
    header.prompt, header.prompt_code = prompt_info, prompt_code
    if parsed is not None:
        header.layout = {**parsed.params, "file_length": todo.file_length, "file_crc": f"{todo.file_crc:08x}"}
        header.side = parsed.side
    if plan is not None:
        plan(model if parsed is None else f"{model}, {formats.describe(parsed.params)}", length)
    writer = ArchiveWriter(dst, header)
    stats = CodingStats()
    blocks: list[bytes] = []

    def jobs() -> Iterator[tuple]:
        block_bytes = chunk_size * block_chunks
        for data in itertools.chain(_read_blocks(io.BytesIO(ahead), block_bytes), _read_blocks(src, block_bytes)):
            blocks.append(data)
            yield (model, options, prefix, data, chunk_size)

    runner = BlockRunner(Backend(workers, ray))
    local = lambda _m, _w, pre, data, cs: encode_block(predictor, data, cs, progress, pre,  # noqa: E731
                                                       runner.local_threads)
    for payload in runner.map(encode_job, local, jobs()):
        data = blocks.pop(0)
        writer.write_block(data, payload)
        if progress is not None and runner.remote:
            progress(len(data), 8.0 * len(payload))
    writer.finish()
    stats.raw_bytes = writer.raw_length if parsed is None else todo.file_length
    stats.archive_bytes = writer.offset
    return stats


def predictor_for_archive(header: Header, model: str | None) -> Predictor:
    """The predictor that decodes an archive: the one it names, or ``model``; refuse any other weights."""
    if header.coder != CODER:
        raise LmpressError(f"archive uses coder {header.coder!r}, this lmpress has {CODER!r}")
    try:
        predictor = load_predictor(model or header.model_name, **archive_options(header))
    except LmpressError:
        if model is None:
            raise LmpressError(f"archive needs model {header.model_name!r} (id {header.model_id[:12]}), "
                               "which is not available here; pass --model") from None
        raise
    if predictor.model_id != header.model_id:
        raise LmpressError(
            f"archive was made with model {header.model_name!r} (id {header.model_id[:12]}), "
            f"not {predictor.name!r} (id {predictor.model_id[:12]})")
    wanted, have = header.arithmetic, predictor.arithmetic
    if "id" in wanted and (have is None or have.get("id") != wanted["id"] or have.get("name") != wanted.get("name")):
        raise LmpressError(
            f"archive needs the {wanted.get('name')} arithmetic of model {header.model_name!r} "
            f"(id {str(wanted['id'])[:12]}), and this lmpress derives "
            f"{(have or {}).get('name', 'no exact arithmetic')} (id {str((have or {}).get('id', '-'))[:12]}) from it")
    return predictor


def prefix_for_archive(header: Header, predictor: Predictor, prompt: SoftPrompt | None) -> np.ndarray | None:
    """The soft-prompt vectors an archive was coded with: embedded in it, or the ``prompt`` it names."""
    if header.prompt is None:
        return None
    wanted = header.prompt.get("id", "")
    if header.prompt_code:
        try:
            used = SoftPrompt(decode_vectors(header.prompt_code, legacy_float=header.version < 3), predictor.model_id)
        except LmpressError:
            raise LmpressError("archive is corrupted (its embedded soft prompt does not decode)") from None
    elif prompt is None:
        raise LmpressError(f"archive was made with soft prompt {wanted[:12]}; pass it with --prompt FILE")
    else:
        used = prompt
    if used.id[:PROMPT_ID_HEX] != wanted:
        raise LmpressError(f"archive was made with soft prompt {wanted[:12]}, not {used.id[:12]}")
    return used.vectors


class DecodedCheck:
    """Checks decoded blocks against their frames, and the whole against the trailer."""

    def __init__(self) -> None:
        self.raw_bytes = 0
        self._crc = 0
        self._index = 0

    def block(self, frame: BlockFrame, data: bytes) -> None:
        if zlib.crc32(data) != frame.raw_crc:
            raise DecodeMismatch(f"block {self._index} decodes to data failing its checksum")
        self._crc = zlib.crc32(data, self._crc)
        self.raw_bytes += len(data)
        self._index += 1

    def end(self, trailer: Trailer) -> None:
        if trailer.original_length != self.raw_bytes or trailer.data_crc != self._crc:
            raise LmpressError("archive is corrupted (decoded data does not match the recorded length and checksum)")


def rebuild_file(header: Header, content: bytes) -> bytes:
    """The original file from an archive's decoded content: itself, or what its front end rebuilds from it."""
    if header.layout is None:
        return content
    data = formats.rebuild(header.layout, header.side, content)
    if len(data) != header.layout.get("file_length") or f"{zlib.crc32(data):08x}" != header.layout.get("file_crc"):
        raise LmpressError("archive is corrupted (the file rebuilt by its front end fails its checksum)")
    return data


def decompress_stream(src: BinaryIO, dst: BinaryIO, model: str | None = None, *,
                      workers: int = 1, ray: str | None = None, progress: ProgressFn | None = None,
                      prompt: SoftPrompt | None = None) -> CodingStats:
    """Decode one archive from ``src`` into ``dst``; raise LmpressError on any mismatch.

    ``prompt``: the soft prompt the archive names, if it was made with one it does not embed.
    """
    reader = ArchiveReader(src)
    header = reader.header
    predictor = predictor_for_archive(header, model)
    prefix = prefix_for_archive(header, predictor, prompt)
    check = DecodedCheck()
    frames: list[BlockFrame] = []
    options = archive_options(header)
    out = io.BytesIO() if header.layout is not None else dst  # a front end rebuilds the file at the end

    def jobs() -> Iterator[tuple]:
        for _, frame, payload in reader.blocks():
            frames.append(frame)
            yield (model or header.model_name, options, prefix, payload, frame, header.chunk_size)

    runner = BlockRunner(Backend(workers, ray))
    local = lambda _m, _w, pre, p, f, cs: decode_frame(predictor, f, p, cs, progress, pre,  # noqa: E731
                                                       runner.local_threads)
    try:
        for data in runner.map(decode_job, local, jobs()):
            frame = frames.pop(0)
            check.block(frame, data)
            out.write(data)
            if progress is not None and runner.remote:
                progress(len(data), 8.0 * frame.payload_length)
    except DecodeMismatch as e:
        if "id" not in header.arithmetic:  # float arithmetic: another CPU's kernels, not corruption
            raise _float_failure(header, e.detail) from None
        raise
    assert reader.trailer is not None  # the blocks() generator ran to its end
    check.end(reader.trailer)
    if header.layout is None:
        return CodingStats(raw_bytes=check.raw_bytes, archive_bytes=reader.offset)
    data = rebuild_file(header, out.getvalue())
    dst.write(data)
    return CodingStats(raw_bytes=len(data), archive_bytes=reader.offset)
