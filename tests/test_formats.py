"""Front ends: image and audio files as users have them, split, coded in the models' layouts, rebuilt exactly."""

import io
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import tifffile
from PIL import Image

import lmpress
from lmpress import formats
from lmpress.coding.container import ArchiveReader
from lmpress.formats import layout
from lmpress.models.exact import mixer

RNG = np.random.default_rng(7)


def smooth_image(height: int, width: int, channels: int, dtype=np.uint8) -> np.ndarray:
    """A photograph-like image: gradients plus a little noise (random pixels would be stored, not coded)."""
    y, x = np.mgrid[0:height, 0:width]
    top = 255 if dtype == np.uint8 else 65535
    base = (x * 3 + y * 2)[:, :, None] + 40 * np.arange(channels)[None, None, :]
    noisy = base + RNG.integers(0, 4, (height, width, channels))
    return (noisy % top).astype(dtype).squeeze(axis=2) if channels == 1 else (noisy % top).astype(dtype)


def pillow_file(pixels: np.ndarray, fmt: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def tiff_file(pixels: np.ndarray, **kwargs) -> bytes:
    out = io.BytesIO()
    tifffile.imwrite(out, pixels, **kwargs)
    return out.getvalue()


def wav_file(channels: int, subtype: str, frames: int = 1500) -> bytes:
    t = np.arange(frames)[:, None]
    samples = (3000 * np.sin(t / (7.0 + np.arange(channels))) + RNG.integers(-20, 20, (frames, channels)))
    out = io.BytesIO()
    soundfile.write(out, samples.astype(np.int16), 16000, format="WAV", subtype=subtype)
    return out.getvalue()


FILES = {
    "pgm-8": lambda: pillow_file(smooth_image(17, 100, 1), "PPM"),
    "ppm-8": lambda: pillow_file(smooth_image(13, 70, 3), "PPM"),
    "pgm-16": lambda: pillow_file(smooth_image(20, 70, 1, np.uint16), "PPM"),
    "bmp-palette": lambda: pillow_file(smooth_image(30, 45, 1), "BMP"),
    "bmp-24": lambda: pillow_file(smooth_image(30, 45, 3), "BMP"),
    "bmp-32": lambda: pillow_file(smooth_image(30, 45, 4), "BMP"),
    "tiff-grey-strips": lambda: tiff_file(smooth_image(50, 66, 1), rowsperstrip=7),
    "tiff-rgb": lambda: tiff_file(smooth_image(20, 30, 3), photometric="rgb"),
    "tiff-rgba": lambda: tiff_file(smooth_image(20, 30, 4), photometric="rgb", extrasamples=[2]),
    "tiff-16-big-endian": lambda: tiff_file(smooth_image(9, 30, 3, np.uint16).astype(">u2"), photometric="rgb"),
    "wav-8-mono": lambda: wav_file(1, "PCM_U8"),
    "wav-16-stereo": lambda: wav_file(2, "PCM_16"),
    "wav-24-3ch": lambda: wav_file(3, "PCM_24", frames=400),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_front_end_splits_and_rebuilds_exactly(name):
    data = FILES[name]()
    parsed = formats.parse(data)
    assert parsed is not None, name
    assert formats.rebuild(parsed.params, parsed.side, parsed.content) == data
    # the side part is only the headers (and padding): the samples went to the content
    assert len(parsed.side) < 0.5 * len(data) if not name.startswith("bmp-palette") else len(parsed.side) < 1500
    # odd but valid files: trailing bytes are side data; a truncated body is plain bytes (never a wrong file)
    trailing = formats.parse(data + b"trailing bytes")
    assert trailing is not None and formats.rebuild(trailing.params, trailing.side, trailing.content) == \
        data + b"trailing bytes"
    truncated = formats.parse(data[:-3])
    assert truncated is None or formats.rebuild(truncated.params, truncated.side, truncated.content) == data[:-3]


def test_unknown_and_lying_headers_are_plain_bytes():
    assert formats.parse(b"just some text, not an image") is None
    assert formats.parse(b"P5\n99999 99999\n255\n" + bytes(100)) is None  # header promises more than the file has
    assert formats.parse(b"BM" + bytes(60)) is None
    assert formats.parse(b"RIFF\x10\x00\x00\x00WAVEfmt ") is None


def test_stripes_keep_the_row_above_in_reach():
    pixels = np.arange(3 * 70, dtype=np.uint8).reshape(3, 70, 1)
    content = layout.image_content(pixels, "none")
    stripes = np.frombuffer(content, np.uint8).reshape(2, 3, layout.STRIPE)  # 2 stripes of 3 rows of 64
    assert (stripes[0, 1] == pixels[1, :64, 0]).all()  # the row above sits 64 bytes back
    assert (stripes[1, 0, :6] == pixels[0, 64:, 0]).all() and (stripes[1, 0, 6:] == pixels[0, 69, 0]).all()
    assert (layout.image_pixels(content, 3, 70, 1, False, "none") == pixels).all()


def test_colour_planes_of_a_stripe_share_its_batch_row():
    pixels = np.random.default_rng(5).integers(0, 256, size=(4, 70, 3), dtype=np.uint8)
    parsed = layout.image_parsed(pixels, {"transform": "subtract-green"}, b"")
    plane = parsed.params["plane"]
    assert plane == 4 * layout.STRIPE and parsed.chunk_size == 3 * plane
    row = np.frombuffer(parsed.content[:parsed.chunk_size], np.uint8)  # the first stripe: G, R - G, B - G
    green, red = pixels[:, :64, 1].reshape(-1), pixels[:, :64, 0].reshape(-1)
    assert (row[:plane] == green).all() and (row[plane:2 * plane] == (red - green + 128).astype(np.uint8)).all()
    assert (layout.image_pixels(parsed.content, 4, 70, 3, False, "subtract-green") == pixels).all()
    grey = layout.image_parsed(pixels[:, :, :1], {"transform": "none"}, b"")
    assert "plane" not in grey.params and grey.chunk_size == 4 * layout.STRIPE


def test_colour_mixer_records_its_plane_distance_for_any_input():
    content = layout.image_content(smooth_image(16, 64, 3), "none")  # planes as they are, no front end
    archive = lmpress.compress(content, "default", mix="cm/v1-colour@1024", front_ends=False)
    header = ArchiveReader(io.BytesIO(archive)).header
    assert header.layout is None and header.arithmetic["plane"] == 1024
    assert lmpress.decompress(archive) == content


@pytest.mark.parametrize("name", ["ppm-8", "tiff-16-big-endian", "wav-24-3ch"])
def test_archive_round_trip(name):
    data = FILES[name]()
    archive = lmpress.compress(data)
    header = ArchiveReader(io.BytesIO(archive)).header
    assert header.version == 4 and header.layout["format"] == formats.parse(data).params["format"]
    if header.layout["format"] == "wav":  # sample streams: the mixer with sample predictors
        assert header.arithmetic["name"].endswith("+" + mixer.AUDIO_MIXER)
    else:  # several planes: the colour mixer, with the plane distance recorded
        assert header.arithmetic["name"].endswith("+" + mixer.COLOUR_MIXER) and header.layout["plane"] > 0
    decompressor = lmpress.LmpressDecompressor()
    assert decompressor.decompress(archive[:50]) + decompressor.decompress(archive[50:]) == data
    assert decompressor.eof


def test_real_photo_codes_better_through_its_front_end(corpus):
    pixels = np.asarray(Image.open(corpus / "image" / "kodak" / "kodim23.png").convert("L"))[200:216, 300:428]
    photo = pillow_file(pixels, "PPM")
    through_front_end = lmpress.compress(photo)
    as_bytes = lmpress.compress(photo, front_ends=False)
    assert lmpress.decompress(through_front_end) == photo and lmpress.decompress(as_bytes) == photo
    assert len(through_front_end) < 0.97 * len(as_bytes)


@pytest.mark.parametrize("photo, mode, rows", [("kodim05.png", "L", 128), ("kodim03.png", "RGB", 64)])  # held out
def test_pixel_predictors_beat_the_first_image_mixers(corpus, photo, mode, rows):
    """cm/v1-image2 and cm/v1-colour2 (MED and NLMS pixel predictors, weights by activity) against the first
    image mixers, whose archives still decode."""
    pixels = np.asarray(Image.open(corpus / "image" / "kodak" / photo).convert(mode))[160:160 + rows, 300:428]
    data = pillow_file(np.ascontiguousarray(pixels), "PPM")
    plane = formats.parse(data).params.get("plane")
    first_mixer = f"{mixer.COLOUR_MIXER_V1}@{plane}" if plane else mixer.IMAGE_MIXER_V1
    new, first = lmpress.compress(data), lmpress.compress(data, mix=first_mixer)
    names = [ArchiveReader(io.BytesIO(a)).header.arithmetic["name"].partition("+")[2] for a in (new, first)]
    expected = [mixer.COLOUR_MIXER, mixer.COLOUR_MIXER_V1] if plane else [mixer.IMAGE_MIXER, mixer.IMAGE_MIXER_V1]
    assert names == expected
    assert lmpress.decompress(new) == data and lmpress.decompress(first) == data
    print(photo, len(new) / len(data), len(first) / len(data))
    assert len(new) < 0.99 * len(first)  # measured 0.975 (grey), 0.985 (colour)


def test_real_stereo_speech_round_trips(corpus):
    samples, rate = soundfile.read(corpus / "audio" / "misc_speech" / "whisper_jfk.flac", dtype="int32",
                                   always_2d=True)
    speech = io.BytesIO()
    soundfile.write(speech, samples[90000:91000], rate, format="WAV", subtype="PCM_24")  # as recorded: 24-bit
    data = speech.getvalue()
    archive = lmpress.compress(data)
    assert ArchiveReader(io.BytesIO(archive)).header.layout["channels"] == 2
    assert lmpress.decompress(archive) == data


def test_sample_predictors_code_real_speech_better_than_byte_contexts(corpus):
    samples, rate = soundfile.read(corpus / "audio" / "librispeech_test-other" / "1688-142285-0000.flac",
                                   dtype="int16")
    speech = io.BytesIO()
    soundfile.write(speech, samples[:8000], rate, format="WAV", subtype="PCM_16")  # 0.5 s, held out
    data = speech.getvalue()
    predicted, byte_contexts = lmpress.compress(data), lmpress.compress(data, mix="cm/v1")
    assert ArchiveReader(io.BytesIO(predicted)).header.arithmetic["name"].endswith("+" + mixer.AUDIO_MIXER)
    assert lmpress.decompress(predicted) == data and lmpress.decompress(byte_contexts) == data
    assert len(predicted) < 0.97 * len(byte_contexts)


@pytest.mark.parametrize("recording, start", [("misc_speech/whisper_jfk.flac", 44100),  # held out, 44.1 kHz stereo
                                              ("sms_tools_sounds/piano.wav", 44100)])  # samples multiples of 4 here
def test_residual_filters_and_lattice_beat_the_first_audio_mixer(corpus, recording, start):
    """cm/v1-audio2 (LMS on fixed-predictor residuals, the lattice model) against cm/v1-audio, whose archives
    still decode."""
    samples, rate = soundfile.read(corpus / "audio" / recording, dtype="int16", always_2d=True)
    wav = io.BytesIO()
    soundfile.write(wav, samples[start:start + rate // 5], rate, format="WAV", subtype="PCM_16")  # 0.2 s
    data = wav.getvalue()
    new, first = lmpress.compress(data), lmpress.compress(data, mix=mixer.AUDIO_MIXER_V1)
    assert ArchiveReader(io.BytesIO(first)).header.arithmetic["name"].endswith("+cm/v1-audio")
    assert lmpress.decompress(new) == data and lmpress.decompress(first) == data
    print(recording, len(new) / len(data), len(first) / len(data))
    assert len(new) < 0.95 * len(first)


def test_text_gets_the_text_model_unless_told():
    text = b"The quick brown fox jumps over the lazy dog; it was a text file. " * 20
    auto = ArchiveReader(io.BytesIO(lmpress.compress(text))).header
    assert auto.model_name == "text-800k" and auto.layout is None and auto.version == 3
    assert ArchiveReader(io.BytesIO(lmpress.compress(bytes(range(256)) * 4))).header.model_name == "multimodal-800k"
    assert ArchiveReader(io.BytesIO(lmpress.compress(text, "default"))).header.model_name == "multimodal-800k"


def test_cli_info_names_the_front_end_and_damaged_side_data_is_one_clear_line(tmp_path):
    path = tmp_path / "image.pgm"
    path.write_bytes(FILES["pgm-8"]())
    run = lambda *a: subprocess.run([sys.executable, "-m", "lmpress.cli", *a], capture_output=True,  # noqa: E731
                                    timeout=300)
    assert run("-q", str(path)).returncode == 0
    info = run("info", str(path) + ".lmpz")
    assert b"front end    PGM 100x17 8-bit" in info.stdout, info.stdout
    archive = bytearray((tmp_path / "image.pgm.lmpz").read_bytes())
    side_start = archive.index(b"x\xda")  # the zlib stream of the side data, inside the header
    archive[side_start + 3] ^= 0xFF
    (tmp_path / "bad.lmpz").write_bytes(bytes(archive))
    r = run("-d", "-c", str(tmp_path / "bad.lmpz"))
    assert r.returncode == 1 and b"corrupted" in r.stderr and b"Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == b""


def test_stereo_is_coded_as_left_and_left_minus_right():
    frames = np.array([[1000, 990], [-5, 3], [32767, -32768]], dtype="<i2")  # differences wrap mod 2^16
    content = layout.frames_to_streams(frames.tobytes(), 2, 2, "side")
    left, side = np.frombuffer(content, "<i2").reshape(2, 3)
    assert left.tolist() == [1000, -5, 32767] and side.tolist() == [10, -8, -1]
    assert layout.streams_to_frames(content, 2, 2, "side") == frames.tobytes()


def test_incremental_compressor_makes_the_same_archive_as_compress():
    for data in (FILES["tiff-16-big-endian"](), b"Plain text, so the text model codes it. " * 30):
        c = lmpress.LmpressCompressor()
        assert b"".join(c.compress(data[i:i + 100]) for i in range(0, len(data), 100)) + c.flush() == \
            lmpress.compress(data)
