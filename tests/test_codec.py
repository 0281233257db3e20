"""Round trips through the default model, and an archive's defences against bad input."""

import io
import os
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lmpress
from lmpress import codec
from lmpress.coding.container import STORED, ArchiveReader, BlockFrame
from lmpress.data.views import view_bytes

DATA = Path(__file__).parent / "data"


def roundtrip(data: bytes, **kw) -> bytes:
    blob = lmpress.compress(data, **kw)
    assert lmpress.decompress(blob) == data
    return blob


@pytest.mark.parametrize("size", [0, 1, 2048, 2049])
def test_edge_sizes(size):
    data = os.urandom(size)
    blob = roundtrip(data)
    info_len = len(blob)
    assert info_len > 0


def test_random_bytes_several_blocks():
    roundtrip(os.urandom(3000), chunk_size=256, block_chunks=4)


@pytest.mark.parametrize("modality,relpath", [
    ("text", "wiki/enwik8_head/enwik5"),
    ("image", "image/kodak/kodim23.png"),
    ("audio", "audio/librispeech_test-clean"),
])
def test_corpus_modalities(corpus, modality, relpath):
    path = corpus / relpath
    if path.is_dir():
        path = sorted(path.glob("*.flac"))[0]
    data = view_bytes(path, modality)[4000:4000 + 4096 + 100]  # two full chunks and a short one
    blob = roundtrip(data)
    assert len(blob) < len(data)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200), chunk_size=st.integers(1, 64), block_chunks=st.integers(1, 5))
def test_property_roundtrip(data, chunk_size, block_chunks):
    roundtrip(data, chunk_size=chunk_size, block_chunks=block_chunks)


def test_same_archive_for_any_worker_count():
    data = os.urandom(1500) + b"hello world " * 100
    kw = dict(chunk_size=128, block_chunks=3)
    one = lmpress.compress(data, workers=1, **kw)
    two = lmpress.compress(data, workers=2, **kw)
    assert one == two
    assert lmpress.decompress(two, workers=2) == data


def test_one_block_on_two_cores_gives_the_same_archive():
    """Default settings, one block of 17 rows: with two workers its rows are coded on two threads."""
    data = os.urandom(4000) + b"<page><title>lmpress</title></page>\n" * 830
    one = lmpress.compress(data, workers=1)
    two = lmpress.compress(data, workers=2)
    assert one == two and len(one) < len(data) // 3
    assert lmpress.decompress(two, workers=2) == data


def test_same_archive_every_run():
    data = b"determinism " * 50
    assert lmpress.compress(data, chunk_size=100) == lmpress.compress(data, chunk_size=100)


def test_incremental_compressor_matches_one_shot():
    data = os.urandom(700)
    c = lmpress.LmpressCompressor(chunk_size=64, block_chunks=2)
    pieces = [c.compress(data[i:i + 97]) for i in range(0, len(data), 97)]
    blob = b"".join(pieces) + c.flush()
    assert blob == lmpress.compress(data, chunk_size=64, block_chunks=2)


def test_open_write_then_read(tmp_path):
    data = b"file api " * 40
    path = tmp_path / "x.lmpz"
    with lmpress.open(path, "wb") as f:
        f.write(data[:100])
        f.write(data[100:])
    with lmpress.open(path) as f:
        assert f.read() == data


SMALL = b"The quick brown fox jumps over the lazy dog. " * 2


@pytest.fixture(scope="module")
def small_archive():
    return lmpress.compress(SMALL, chunk_size=32, block_chunks=2)


def test_every_single_byte_change_detected(small_archive):
    for i in range(len(small_archive)):
        for flip in (0x01, 0xFF):
            bad = bytearray(small_archive)
            bad[i] ^= flip
            with pytest.raises(lmpress.LmpressError):
                lmpress.decompress(bytes(bad))


def test_truncation_at_every_offset_detected(small_archive):
    for n in range(len(small_archive)):
        with pytest.raises(lmpress.LmpressError, match="truncated|not an lmpress"):
            lmpress.decompress(small_archive[:n])


def test_trailing_garbage_detected(small_archive):
    with pytest.raises(lmpress.LmpressError, match="trailing"):
        lmpress.decompress(small_archive + b"\0")


def test_wrong_model_detected(other_model):
    blob = lmpress.compress(SMALL, model=str(other_model), chunk_size=32)
    assert lmpress.decompress(blob) == SMALL  # the archive names its model file
    with pytest.raises(lmpress.LmpressError, match="made with model"):
        lmpress.decompress(blob, model="default")
    with pytest.raises(lmpress.LmpressError, match="made with model"):
        lmpress.decompress(lmpress.compress(SMALL), model=str(other_model))


def test_unknown_model_named():
    with pytest.raises(lmpress.LmpressError, match="unknown model"):
        lmpress.compress(b"x", model="no-such-model")


def test_incremental_decompressor_any_split():
    data = os.urandom(300) + b"abc" * 100
    blob = lmpress.compress(data, chunk_size=64, block_chunks=2)
    for step in (1, 7, 1000):
        d = lmpress.LmpressDecompressor()
        out = b"".join(d.decompress(blob[i:i + step]) for i in range(0, len(blob), step))
        assert out == data and d.eof and d.unused_data == b""
    d = lmpress.LmpressDecompressor()
    assert d.decompress(blob + b"next") == data and d.unused_data == b"next"
    with pytest.raises(EOFError):
        d.decompress(b"more")


def test_incremental_decompressor_detects_corruption(small_archive):
    bad = bytearray(small_archive)
    bad[-10] ^= 0x10
    with pytest.raises(lmpress.LmpressError):
        lmpress.LmpressDecompressor().decompress(bytes(bad))
    d = lmpress.LmpressDecompressor()
    partial = d.decompress(small_archive[:-1])  # truncated: whole blocks come out, then it waits for more
    assert SMALL.startswith(partial) and not d.eof and d.needs_input


def test_streaming_reads_at_most_two_blocks_ahead():
    from lmpress.codec import compress_stream

    block_bytes = 16 * 4
    src = io.BytesIO(os.urandom(block_bytes * 12))
    coded = [0]
    ahead = []

    def progress(n, bits):
        coded[0] += n
        ahead.append(src.tell() - coded[0])

    compress_stream(src, io.BytesIO(), chunk_size=16, block_chunks=4, progress=progress)
    assert coded[0] == block_bytes * 12
    assert max(ahead) <= 2 * block_bytes  # bounded memory: the input is never read whole


def test_retain_keeps_the_remaining_sequences(retain_check):
    from lmpress.models.registry import load_predictor

    retain_check(load_predictor("default", mix=False))  # mixed rows share tables: see test_mixer.py


def test_chunks_of_unequal_length_in_one_block():
    # The short last chunk finishes first and is dropped from the batch; both sides agree.
    roundtrip(os.urandom(2048 + 100), chunk_size=2048, block_chunks=2)


def test_incompressible_blocks_are_stored_raw():
    data = os.urandom(5000)
    blob = roundtrip(data, chunk_size=256, block_chunks=4)  # 5 blocks of 1024 bytes
    reader = ArchiveReader(io.BytesIO(blob))
    frames = [frame for _, frame, _ in reader.blocks()]
    assert [f.stored for f in frames] == [True] * 5
    header_bytes = len(reader.header.to_bytes())
    trailer_bytes = 24 + 8 * len(frames)
    assert len(blob) == header_bytes + trailer_bytes + len(data) + 21 * len(frames)  # 21-byte frames only


def test_mixed_blocks_coded_and_stored():
    text = b"<page><title>Stored blocks</title><text>words and words</text></page>\n" * 15
    data = text[:1024] + os.urandom(1024) + text[:1000]
    blob = roundtrip(data, chunk_size=256, block_chunks=4)
    frames = [frame for _, frame, _ in ArchiveReader(io.BytesIO(blob)).blocks()]
    assert [f.stored for f in frames] == [False, True, False]
    assert lmpress.decompress(blob, workers=2) == data
    d = lmpress.LmpressDecompressor()
    assert b"".join(d.decompress(blob[i:i + 333]) for i in range(0, len(blob), 333)) == data and d.eof


@pytest.mark.parametrize("archive", ["format2.lmpz", "format2-gaussian-prompt.lmpz"])
def test_format_2_archives_still_decode(archive):
    """Archives written by the lmpress before stored blocks and integer prompt priors (format 2, in
    tests/data; the second embeds a soft prompt coded under the Gaussian prior in float arithmetic)."""
    blob = (DATA / archive).read_bytes()
    assert blob[4] == 2
    assert lmpress.decompress(blob) == (DATA / "format2.txt").read_bytes()


@pytest.mark.parametrize("archive, commit", [("cm-v2.lmpz", "4528dc2"), ("cm-v3.lmpz", "16dedb4")])
def test_archives_of_the_previous_default_mixers_still_decode(archive, commit):
    """Archives made with default settings by the lmpress whose default mixer was cm/v2 (commit 4528dc2) or
    cm/v3 (commit 16dedb4), in tests/data, decoded by today's code, whose default is cm/v4."""
    data = b"".join(f'<row id="{i}"><name>item {i * 7 % 13}</name><note>{"seen" if i % 3 else "new"}</note></row>\n'
                    .encode() for i in range(120))
    blob = (DATA / archive).read_bytes()
    mixer_name = archive.removesuffix(".lmpz").replace("-", "/")
    assert ArchiveReader(io.BytesIO(blob)).header.arithmetic["name"] == f"exact-int/v1+{mixer_name}"
    assert lmpress.decompress(blob) == data


def test_stored_block_with_a_wrong_length_is_refused():
    blob = bytearray(lmpress.compress(os.urandom(300)))
    reader = ArchiveReader(io.BytesIO(bytes(blob)))
    start = len(reader.header.to_bytes())
    frame = BlockFrame(299, 300, *struct.unpack_from("<II", blob, start + 8), method=STORED).to_bytes()
    blob[start:start + len(frame)] = frame
    with pytest.raises(lmpress.LmpressError, match="stored block 0 has two lengths"):
        lmpress.decompress(bytes(blob))


def test_whole_file_segments_by_default_from_any_api():
    """Mixed byte models cut an input into 64 segments; one-shot, incremental and stream agree."""
    data = b"<page><title>Segments</title><text>" + os.urandom(300) + b"</text></page>\n" * 400
    blob = lmpress.compress(data)
    header = ArchiveReader(io.BytesIO(blob)).header
    assert header.chunk_size == codec.segment_size(len(data)) == 2048 and header.block_chunks == 64
    c = lmpress.LmpressCompressor()
    assert b"".join(c.compress(data[i:i + 1000]) for i in range(0, len(data), 1000)) + c.flush() == blob
    out = io.BytesIO()
    codec.compress_stream(io.BytesIO(data), out)  # length unknown: read ahead
    assert out.getvalue() == blob
    assert codec.segment_size(10 << 20) == codec.SEGMENT_MAX and codec.segment_size(200_000) == 4096
