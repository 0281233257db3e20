"""Whole media files as users have them: PGM / PPM photographs and WAV speech, default settings.

Each file is compressed as ``lmpress compress FILE`` does it (the front end, the model chosen for the file,
no flags), decoded and compared; beside it the domain codecs on the same pixels or samples (optimized PNG,
JPEG XL lossless effort 9, FLAC level 8, each decoded and compared) and xz -9e on the file's bytes. For
colour photographs the rate of the other colour layout (planes as they are) is measured too, by coding
the content that layout gives with the same model and stripes; for the stereo recording, the channels
coded apart instead of as left and left minus right. Rates are bytes over the file's bytes.

    python benchmarks/media_bench.py --grey 4 --colour 2 --speech 3 --json benchmarks/results/media-whole-file.json
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import time
from pathlib import Path

import imagecodecs
import numpy as np
import soundfile
from PIL import Image

import lmpress
from lmpress.codec import colour_mixer
from lmpress.coding.container import ArchiveReader
from lmpress.data.corpus import corpus_root
from lmpress.formats import layout
from lmpress.models.exact.mixer import AUDIO_MIXER

GREY = ["kodim01.png", "kodim05.png", "kodim13.png", "kodim23.png", "kodim08.png", "kodim19.png"]
COLOUR = ["kodim03.png", "kodim20.png", "kodim14.png"]
SPEECH = ["librispeech_test-other/1688-142285-0000.flac", "librispeech_test-clean/1089-134686-0000.flac",
          "librispeech_test-other/1688-142285-0001.flac", "librispeech_test-clean/1089-134691-0000.flac"]


def png_size(pixels: np.ndarray) -> int:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", optimize=True)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(out.getvalue()))), pixels)
    return len(out.getvalue())


def jxl_size(pixels: np.ndarray) -> int:
    blob = imagecodecs.jpegxl_encode(pixels, lossless=True, effort=9)
    assert np.array_equal(imagecodecs.jpegxl_decode(blob), pixels)
    return len(blob)


def flac_size(samples: np.ndarray, rate: int) -> int:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format="FLAC", subtype="PCM_16", compression_level=1.0)  # flac -8
    back, _ = soundfile.read(io.BytesIO(out.getvalue()), dtype="int16", always_2d=True)
    assert np.array_equal(back, samples.reshape(len(samples), -1))
    return len(out.getvalue())


def xz_size(data: bytes) -> int:
    return len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))


def lmpress_row(data: bytes, model: str = "auto") -> dict:
    t0 = time.perf_counter()
    archive = lmpress.compress(data, model)
    t1 = time.perf_counter()
    assert lmpress.decompress(archive) == data, "lmpress archive did not decode to the file"
    t2 = time.perf_counter()
    header = ArchiveReader(io.BytesIO(archive)).header
    return {"lmpress": len(archive), "model": header.model_name, "front_end": header.layout,
            "encode_kbps": len(data) / 1000 / (t1 - t0), "decode_kbps": len(data) / 1000 / (t2 - t1)}


def planes_rate(pixels: np.ndarray, model: str) -> int:
    """Bytes of the colour planes coded as they are (no colour transform; the same stripes and mixer),
    decoded and compared."""
    content = layout.image_content(pixels, "none")
    height, planes = pixels.shape[0], pixels.shape[2]
    archive = lmpress.compress(content, model, chunk_size=layout.stripe_chunk(height, planes), front_ends=False,
                               mix=colour_mixer({"plane": layout.plane_bytes(height, planes)}))
    assert lmpress.decompress(archive) == content
    return len(archive)


def netpbm(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PPM")
    return out.getvalue()


def wav(samples: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grey", type=int, default=4, help="Kodak photographs as 8-bit PGM (luma)")
    p.add_argument("--colour", type=int, default=2, help="Kodak photographs as 8-bit PPM (RGB)")
    p.add_argument("--colour-crop", type=int, nargs=2, default=(256, 384), metavar=("H", "W"),
                   help="centre crop of the colour photographs (0 0: whole)")
    p.add_argument("--speech", type=int, default=3, help="held-out LibriSpeech recordings as 16-bit mono WAV")
    p.add_argument("--stereo-seconds", type=float, default=1.0,
                   help="seconds of the held-out stereo recording (misc_speech/whisper_jfk, from 2 s on) as a "
                        "16-bit stereo WAV; also coded with the channels apart instead of left / left-right (0: none)")
    p.add_argument("--model", default="auto", help="model for every file (default: chosen per file, as the CLI)")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    root = corpus_root()
    rows = []

    def report(row: dict) -> None:
        rows.append(row)
        n = row["bytes"]
        names = ("PNG", "JPEG XL", "FLAC", "planes", "apart", "xz -9e")
        others = "  ".join(f"{k} {row[k] / n:.4f}" for k in names if k in row)
        print(f"{row['file']:<44} {row['kind']:<16} {n:>9,}  lmpress {row['lmpress'] / n:.4f} ({row['model']})  "
              f"{others}  enc/dec {row['encode_kbps']:.1f}/{row['decode_kbps']:.1f} KB/s", flush=True)

    for name in GREY[:a.grey]:
        pixels = np.asarray(Image.open(root / "image" / "kodak" / name).convert("L"))
        data = netpbm(pixels)
        report({"file": f"image/kodak/{name} as PGM", "kind": "PGM 8-bit", "bytes": len(data),
                **lmpress_row(data, a.model),
                "PNG": png_size(pixels), "JPEG XL": jxl_size(pixels), "xz -9e": xz_size(data)})
    for name in COLOUR[:a.colour]:
        pixels = np.asarray(Image.open(root / "image" / "kodak" / name).convert("RGB"))
        h, w = a.colour_crop
        if h and w:
            top, left = (pixels.shape[0] - h) // 2, (pixels.shape[1] - w) // 2
            pixels = np.ascontiguousarray(pixels[top:top + h, left:left + w])
        data = netpbm(pixels)
        row = {"file": f"image/kodak/{name} as PPM {pixels.shape[1]}x{pixels.shape[0]}", "kind": "PPM 8-bit RGB",
               "bytes": len(data), **lmpress_row(data, a.model), "PNG": png_size(pixels), "JPEG XL": jxl_size(pixels),
               "xz -9e": xz_size(data)}
        row["planes"] = planes_rate(pixels, row["model"])
        report(row)
    if a.stereo_seconds > 0:
        samples, rate = soundfile.read(root / "audio" / "misc_speech" / "whisper_jfk.flac", dtype="int16")
        samples = np.ascontiguousarray(samples[2 * rate:2 * rate + int(a.stereo_seconds * rate)])
        data = wav(samples, rate)
        apart = layout.frames_to_streams(samples.tobytes(), 2, 2, "none")
        archive = lmpress.compress(apart, "default", front_ends=False, mix=AUDIO_MIXER)  # the same mixer
        assert lmpress.decompress(archive) == apart
        report({"file": f"audio/misc_speech/whisper_jfk.flac {a.stereo_seconds:g} s as WAV",
                "kind": "WAV 16-bit stereo",
                "bytes": len(data), **lmpress_row(data, a.model), "FLAC": flac_size(samples, rate),
                "apart": len(archive),
                "xz -9e": xz_size(data)})
    for name in SPEECH[:a.speech]:
        samples, rate = soundfile.read(root / "audio" / name, dtype="int16")
        data = wav(samples, rate)
        report({"file": f"audio/{name} as WAV", "kind": "WAV 16-bit mono", "bytes": len(data),
                **lmpress_row(data, a.model),
                "FLAC": flac_size(samples, rate), "xz -9e": xz_size(data)})
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
