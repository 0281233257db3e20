"""Samples in the layouts the models learned, and back.

**Images** are coded as stripes 64 pixels wide (the width of the image model's 32 x 64 training
patches), each stripe from the top row to the bottom one, so the rows above a pixel stay inside the
model's 512-byte attention span (8 rows) all the way down; independent 32-row patches would start
cold every 32 rows. A stripe is one batch row of the coder, its planes one after another, so the
context mixer sees the same pixel in the plane before (``plane`` bytes back; the colour mixer's
contexts). The last stripe is padded to 64 columns by repeating the image's last column (cheap to
predict; dropped on decode).

Colour images are coded as planes after a reversible colour transform: green, then red and blue as
differences from green (mod 256, centred on 128), PNG's and JPEG XL's "subtract green". Samples wider
than 8 bits are split into a plane of high bytes and one of low bytes.

**Audio** is coded as 16-bit little-endian streams, one channel after another, as the audio model
learned mono PCM; a stereo pair as left and left minus right. 8-bit samples become the high byte of a
16-bit sample; 24-bit samples are split into their top 16 bits and a stream of low bytes after all
channels.
"""

from __future__ import annotations

import numpy as np

from lmpress.formats.base import Parsed

STRIPE = 64  # pixels per stripe row: the image model's row width
MAX_STRIPE_ROWS = 16384  # rows per batch row at most (the codec's chunk limit is 1 MiB)
COLOUR_TRANSFORMS = ("subtract-green", "none")


def stripe_chunk(height: int, planes: int = 1) -> int:
    """Bytes per batch row: a whole stripe with its planes (or its first MAX_STRIPE_ROWS rows)."""
    return min(height * planes, MAX_STRIPE_ROWS) * STRIPE


def plane_bytes(height: int, planes: int) -> int:
    """Bytes from a pixel back to the same pixel of the plane before, within a batch row (0: none there)."""
    return height * STRIPE if planes > 1 and height * planes <= MAX_STRIPE_ROWS else 0


def planes_to_stripes(planes: np.ndarray) -> bytes:
    """[P, H, W] uint8 planes -> stripes left to right, each with its planes in order."""
    p, h, w = planes.shape
    n = -(-w // STRIPE)
    padded = np.pad(planes, ((0, 0), (0, 0), (0, n * STRIPE - w)), mode="edge")
    return padded.reshape(p, h, n, STRIPE).transpose(2, 0, 1, 3).tobytes()


def stripes_to_planes(content: bytes, p: int, h: int, w: int) -> np.ndarray:
    n = -(-w // STRIPE)
    stripes = np.frombuffer(content, dtype=np.uint8).reshape(n, p, h, STRIPE)
    return np.ascontiguousarray(stripes.transpose(1, 2, 0, 3).reshape(p, h, n * STRIPE)[:, :, :w])


def pixels_to_planes(pixels: np.ndarray, transform: str) -> np.ndarray:
    """[H, W, C] samples (uint8 or uint16) -> [P, H, W] uint8 planes (high-byte planes first)."""
    planes = np.moveaxis(pixels, 2, 0)
    if pixels.dtype.itemsize == 2:  # either byte order
        planes = planes.astype(np.uint16)
        return np.concatenate([(planes >> 8).astype(np.uint8), (planes & 0xFF).astype(np.uint8)])
    planes = planes.astype(np.uint8)
    if transform == "subtract-green" and planes.shape[0] >= 3:
        r, g, b = planes[0], planes[1], planes[2]
        planes = np.stack([g, (r - g + 128).astype(np.uint8), (b - g + 128).astype(np.uint8), *planes[3:]])
    return planes


def planes_to_pixels(planes: np.ndarray, channels: int, wide: bool, transform: str) -> np.ndarray:
    """The inverse of ``pixels_to_planes``."""
    if wide:
        pixels = (planes[:channels].astype(np.uint16) << 8) | planes[channels:]
        return np.moveaxis(pixels, 0, 2)
    if transform == "subtract-green" and channels >= 3:
        g, dr, db = planes[0], planes[1], planes[2]
        planes = np.stack([(dr + g - 128).astype(np.uint8), g, (db + g - 128).astype(np.uint8), *planes[3:]])
    return np.moveaxis(planes, 0, 2)


def image_content(pixels: np.ndarray, transform: str) -> bytes:
    return planes_to_stripes(pixels_to_planes(pixels, transform))


def image_parsed(pixels: np.ndarray, params: dict, side: bytes) -> Parsed:
    """A front end's image ([H, W, C] samples) as the coder takes it; ``params`` gain the plane distance."""
    height, channels = pixels.shape[0], pixels.shape[2] * pixels.dtype.itemsize
    plane = plane_bytes(height, channels)
    params = {**params, "plane": plane} if plane else params  # (one plane: no key, a smaller header)
    return Parsed("image", params, side, image_content(pixels, params["transform"]), stripe_chunk(height, channels))


def image_pixels(content: bytes, height: int, width: int, channels: int, wide: bool, transform: str) -> np.ndarray:
    planes = stripes_to_planes(content, channels * (1 + wide), height, width)
    return planes_to_pixels(planes, channels, wide, transform)


def frames_to_streams(raster: bytes, channels: int, sample_bytes: int, stereo: str = "none") -> bytes:
    """Interleaved little-endian PCM frames -> per-channel 16-bit streams (then 24-bit low bytes).

    ``stereo`` "side": two channels as left and left minus right (mod 2^16), which is small where the
    channels are alike (the usual case: 27% fewer bytes on a real stereo recording, README).
    """
    samples = np.frombuffer(raster, dtype=np.uint8).reshape(-1, channels, sample_bytes)
    by_channel = samples.transpose(1, 0, 2)  # [C, n, bytes]
    if sample_bytes == 1:  # unsigned 8-bit: the high byte of a signed 16-bit sample
        top = (by_channel[..., 0] ^ 0x80).astype(np.uint16) << 8
    else:
        top = np.ascontiguousarray(by_channel[..., -2:]).view("<u2")[..., 0].astype(np.uint16)
    if stereo == "side":
        top[1] = top[0] - top[1]  # uint16: mod 2^16
    low = np.ascontiguousarray(by_channel[..., :-2]).transpose(2, 0, 1).tobytes()  # 24-bit: one low byte
    return top.astype("<u2").tobytes() + low


def streams_to_frames(content: bytes, channels: int, sample_bytes: int, stereo: str = "none") -> bytes:
    data = np.frombuffer(content, dtype=np.uint8)
    n = len(data) // (channels * max(sample_bytes, 2))
    top = data[:2 * channels * n].view("<u2").reshape(channels, n).astype(np.uint16)
    if stereo == "side":
        top[1] = top[0] - top[1]
    if sample_bytes == 1:
        return np.ascontiguousarray(((top >> 8).astype(np.uint8) ^ 0x80).T).tobytes()
    high = top.astype("<u2").view(np.uint8).reshape(channels, n, 2)
    low = data[2 * channels * n:].reshape(sample_bytes - 2, channels, n).transpose(1, 2, 0)
    return np.ascontiguousarray(np.concatenate([low, high], axis=2).transpose(1, 0, 2)).tobytes()
