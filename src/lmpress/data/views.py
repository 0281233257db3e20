"""Byte views of modalities, shared by training and benchmarking.

* text:  the file's bytes as they are;
* image: 8-bit grayscale (luma) pixels cut into 32-row x 64-column patches
         (2048 bytes each), patches in raster order, each patch row-major;
         partial patches at the right and bottom edges are dropped, as in the
         studies;
* audio: 16-bit little-endian mono PCM decoded from FLAC/WAV (multi-channel
         audio is averaged to mono, wider samples are reduced to 16 bits);
* bytes: any file as plain bytes (same as text).

Training may see images as the image front end codes them instead (``colour_plane_patches``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmpress.errors import LmpressError

PATCH_ROWS, PATCH_COLS = 32, 64
MODALITIES = ("text", "image", "audio", "bytes")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".gif", ".webp"}
AUDIO_SUFFIXES = {".flac", ".wav", ".ogg", ".aiff", ".aif"}


def grayscale_pixels(path: Path) -> np.ndarray:
    """The image as a 2-D uint8 array of luma values."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise LmpressError(f"{path}: not a readable image ({e})") from None


def image_patches(pixels: np.ndarray) -> np.ndarray:
    """[n, 32, 64] patches of a grayscale image in raster order."""
    rows, cols = pixels.shape[0] // PATCH_ROWS, pixels.shape[1] // PATCH_COLS
    cropped = pixels[: rows * PATCH_ROWS, : cols * PATCH_COLS]
    patches = cropped.reshape(rows, PATCH_ROWS, cols, PATCH_COLS).swapaxes(1, 2)
    return np.ascontiguousarray(patches.reshape(rows * cols, PATCH_ROWS, PATCH_COLS))


def colour_plane_patches(path: Path) -> np.ndarray:
    """[n, 32, 64] patches of the planes the image front end codes for ``path``: a colour image's green,
    red - green and blue - green planes (lmpress.formats.layout), a grey image's one plane."""
    from PIL import Image, UnidentifiedImageError

    from lmpress.formats.layout import pixels_to_planes

    try:
        with Image.open(path) as im:
            colour = im.mode not in ("1", "L", "LA", "I", "I;16", "F")
            pixels = np.asarray(im.convert("RGB" if colour else "L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise LmpressError(f"{path}: not a readable image ({e})") from None
    planes = pixels_to_planes(pixels if colour else pixels[:, :, None], "subtract-green")
    return np.concatenate([image_patches(plane) for plane in planes])


def pcm16(path: Path) -> tuple[np.ndarray, int]:
    """Mono int16 samples and the sample rate."""
    import soundfile

    try:
        samples, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
        raise LmpressError(f"{path}: not a readable audio file ({e})") from None
    if samples.shape[1] > 1:
        samples = samples.astype(np.int32).mean(axis=1).round().astype(np.int16)
    else:
        samples = samples[:, 0]
    return np.ascontiguousarray(samples), rate


def view_bytes(path: Path, modality: str) -> bytes:
    """The bytes a model sees for ``path`` under ``modality``."""
    path = Path(path)
    if modality in ("text", "bytes"):
        return path.read_bytes()
    if modality == "image":
        return image_patches(grayscale_pixels(path)).tobytes()
    if modality == "audio":
        return pcm16(path)[0].astype("<i2").tobytes()
    raise LmpressError(f"unknown modality {modality!r} (choose from {', '.join(MODALITIES)})")


def guess_modality(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    return "text"


def files_of(root: Path, modality: str) -> list[Path]:
    """Files under ``root`` (a file or folder) that the modality can read, sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise LmpressError(f"{root}: no such file or directory")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if modality == "image":
        return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if modality == "audio":
        return [p for p in files if p.suffix.lower() in AUDIO_SUFFIXES]
    return files
