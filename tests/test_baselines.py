"""Classical codecs: every one round-trips, sees data in its true shape, and reports its fixed container."""

import io
import struct

import numpy as np
import pytest

from lmpress.baselines import ALL, Layout
from lmpress.bench.measure import chunked_size

rng = np.random.default_rng(0)
# Smooth-ish test data, so codecs have something to find.
IMAGE = np.clip(np.add.outer(np.arange(32), np.arange(64)) * 2 + rng.integers(0, 8, (32, 64)), 0, 255).astype(np.uint8)
AUDIO = (3000 * np.sin(np.arange(1024) / 7.0) + rng.integers(-50, 50, 1024)).astype("<i2")
TEXT = b"<page><title>Compression</title><text>Lossless means decoded.</text></page>\n" * 30
LAYOUTS = {
    "bytes": (TEXT, Layout()),
    "image": (IMAGE.tobytes(), Layout("image", width=64, height=32)),
    "audio": (AUDIO.tobytes(), Layout("audio", sample_rate=16000)),
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_roundtrip_on_every_accepted_layout(name):
    codec = ALL[name]()
    accepted = [m for m, (_, layout) in LAYOUTS.items() if codec.accepts(layout)]
    assert accepted
    for modality in accepted:
        data, layout = LAYOUTS[modality]
        blob = codec.compress(data, layout)
        assert codec.decompress(blob, layout) == data
        assert len(blob) < len(data), f"{name} did not compress {modality}"
        assert 0 <= codec.container_bytes(layout) < len(blob)


def test_png_sees_a_64_wide_32_high_grayscale_image():
    blob = ALL["png"]().compress(*LAYOUTS["image"])
    width, height, depth, color = struct.unpack(">IIBB", blob[16:26])
    assert (width, height, depth, color) == (64, 32, 8, 0)


def test_flac_keeps_16_bit_and_the_sample_rate():
    import soundfile

    blob = ALL["flac"]().compress(*LAYOUTS["audio"])
    info = soundfile.info(io.BytesIO(blob))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 1024)


def test_chunked_size_counts_the_container_once():
    codec = ALL["gzip"]()
    data = TEXT * 4
    pieces = [codec.compress(data[i:i + 2048]) for i in range(0, len(data), 2048)]
    expected = sum(len(p) for p in pieces) - 18 * (len(pieces) - 1)
    assert chunked_size(codec, data) == expected


def test_image_layout_mismatch_is_refused():
    with pytest.raises(ValueError):
        ALL["png"]().compress(b"\0" * 100, Layout("image", width=64, height=32))
