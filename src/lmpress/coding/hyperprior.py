"""Quantize a real vector (a soft prompt) and range-code it under a hyper-prior.

A prompt trained on the very data it compresses is part of the code, so it
must be sent and its bits counted. Each coordinate is mapped to the *nearest*
of K reconstruction levels and decoded to *that same level* (a public
implementation rounded to bin edges but decoded to bin centres, quadrupling
its MSE). The level indices are range-coded i.i.d. under one of three priors,
and everything the decoder needs to rebuild the prior is in the code:

* ``gaussian``: K equal bins over mean ± clip·std; a bin's probability is the
  Gaussian mass over it (the edge bins take the tails). Side info: mean, std, clip.
* ``histogram``: K equal bins over the 1st-99th percentile range (values
  outside are clipped); probabilities are the empirical bin counts. Side info:
  the range and the K counts.
* ``lloyd-max``: K levels placed by 1-D k-means (Lloyd's algorithm, the
  MSE-optimal scalar quantizer for these values); probabilities are the level
  counts. Side info: the K levels (float32) and counts.

Code layout (little-endian): prior u8 | tokens u16 | dim u16 | K u16 | prior
parameters | range-coded indices (32-bit words). Counts are LEB128 varints.

The coder's frequencies come from the side info in integer arithmetic (the
Gaussian mass by ``decimal``, not libm's ``erf``), so an embedded prompt decodes
on any CPU and operating system. Archives of formats 1 and 2 made them with
float arithmetic (``legacy_float=True`` reads those).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from decimal import Context, Decimal

import numpy as np

from lmpress.coding import entropy
from lmpress.errors import LmpressError
from lmpress.models.exact import tables

PRIORS = ("gaussian", "histogram", "lloyd-max")
_HEAD = struct.Struct("<BHHH")
GAUSSIAN_CLIP = 3.0  # standard deviations on each side
LLOYD_ITERATIONS = 100


@dataclass
class CodedVectors:
    prior: str
    levels: int
    code: bytes  # everything the decoder reads
    values: np.ndarray  # the dequantized vectors, float32, as the decoder rebuilds them
    indices: np.ndarray  # level index of every coordinate
    mse: float  # mean squared error against the original values

    @property
    def bits(self) -> int:
        return 8 * len(self.code)

    @property
    def bits_per_coordinate(self) -> float:
        return self.bits / self.indices.size

    @property
    def entropy_per_coordinate(self) -> float:
        """Empirical entropy of the level indices (the ideal cost without side info)."""
        counts = np.bincount(self.indices.ravel(), minlength=self.levels)
        p = counts[counts > 0] / self.indices.size
        return float(-(p * np.log2(p)).sum())


def _varints(values: np.ndarray) -> bytes:
    out = bytearray()
    for v in values.tolist():
        while True:
            byte, v = v & 0x7F, v >> 7
            out.append(byte | (0x80 if v else 0))
            if not v:
                break
    return bytes(out)


def _read_varints(data: bytes, offset: int, count: int) -> tuple[np.ndarray, int]:
    values = []
    for _ in range(count):
        value = shift = 0
        while True:
            if offset >= len(data):
                raise LmpressError("coded prompt is truncated")
            byte = data[offset]
            offset += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        values.append(value)
    return np.array(values, dtype=np.int64), offset


def _uniform_levels(lo: float, hi: float, k: int) -> np.ndarray:
    width = (hi - lo) / k
    return (lo + width * (np.arange(k) + 0.5)).astype(np.float32)


def _gaussian_probabilities(mean: float, std: float, levels: np.ndarray) -> np.ndarray:
    """Float masses (libm's erf): how archives of formats 1 and 2 coded the Gaussian prior."""
    edges = (levels[:-1].astype(np.float64) + levels[1:]) / 2
    cdf = np.array([0.5 * (1 + math.erf((e - mean) / (std * math.sqrt(2)))) for e in edges])
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


MASS_BITS = 48  # Gaussian bin masses as integers at this many bits
_DECIMAL = Context(prec=40)


def _erf(x: Decimal) -> Decimal:
    """erf by its Taylor series in 40-digit decimal arithmetic (|x| is small here: the bins lie within a few
    standard deviations; beyond 6 the mass is below 2**-48 and the series is not needed)."""
    c = _DECIMAL
    if abs(x) > 6:
        return Decimal(1 if x > 0 else -1)
    term, total, n = x, x, 0
    x2 = c.multiply(x, x)
    while abs(term) > Decimal(10) ** -38:
        n += 1
        term = c.divide(c.multiply(-term, x2), n)
        total = c.add(total, c.divide(term, 2 * n + 1))
    return c.divide(c.multiply(2, total), c.sqrt(tables.decimal_pi()))




def _gaussian_masses(mean: float, std: float, levels: np.ndarray) -> np.ndarray:
    """Integer Gaussian mass of each bin at MASS_BITS (edges halfway between the float32 levels, exact as
    decimals; the edge bins take the tails), the same on any machine."""
    c = _DECIMAL
    root2 = c.sqrt(Decimal(2))
    mu, sigma = Decimal(float(mean)), Decimal(float(std))
    cdf = [0]
    for a, b in zip(levels[:-1].tolist(), levels[1:].tolist()):
        z = c.divide(c.subtract(c.divide(c.add(Decimal(a), Decimal(b)), 2), mu), c.multiply(sigma, root2))
        cdf.append(int(c.multiply(c.add(1, _erf(z)), 1 << (MASS_BITS - 1)).to_integral_value()))
    cdf.append(1 << MASS_BITS)
    return np.diff(np.array(cdf, dtype=np.int64))


def _integer_weights(masses: np.ndarray) -> np.ndarray:
    """``entropy.frequencies`` of non-negative integer masses, in integers: w = floor(m * free / sum m),
    the remainder to the first largest mass."""
    masses = np.asarray(masses, dtype=np.int64)
    free = entropy.TOTAL - len(masses)
    total = max(int(masses.sum()), 1)
    w = np.array([m * free // total for m in masses.tolist()], dtype=np.int64)  # Python ints: no overflow
    w[int(np.argmax(masses))] += free - int(w.sum())
    return entropy.frequencies(w[None])  # the coder's form of integer weights


def _lloyd_max(values: np.ndarray, k: int) -> np.ndarray:
    x = np.sort(values.astype(np.float64))
    levels = np.quantile(x, (np.arange(k) + 0.5) / k)
    for _ in range(LLOYD_ITERATIONS):
        bounds = np.searchsorted(x, (levels[:-1] + levels[1:]) / 2)
        sums = np.add.reduceat(x, np.concatenate([[0], bounds])) if len(x) else np.zeros(k)
        counts = np.diff(np.concatenate([[0], bounds, [len(x)]]))
        sums = np.where(counts > 0, sums, 0.0)
        updated = np.where(counts > 0, sums / np.maximum(counts, 1), levels)
        if np.allclose(updated, levels, rtol=0, atol=1e-12):
            break
        levels = np.sort(updated)
    return levels.astype(np.float32)


def _nearest(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Index of the nearest level (levels ascending; ties go to the lower one)."""
    mids = (levels[:-1].astype(np.float64) + levels[1:]) / 2
    return np.searchsorted(mids, values.astype(np.float64), side="left").astype(np.int64)


def _code_indices(indices: np.ndarray, weights: np.ndarray) -> bytes:
    encoder = entropy.Encoder()
    encoder.encode(indices, np.repeat(weights, len(indices), axis=0))
    return encoder.finish()


def encode_vectors(vectors: np.ndarray, prior: str, levels: int, clip: float = GAUSSIAN_CLIP) -> CodedVectors:
    """Quantize ``vectors`` [tokens, dim] to ``levels`` levels and code them under ``prior``."""
    if prior not in PRIORS:
        raise LmpressError(f"unknown prior {prior!r} (choose from {', '.join(PRIORS)})")
    if not 2 <= levels <= 65535:
        raise LmpressError("levels must be between 2 and 65535")
    vectors = np.asarray(vectors, dtype=np.float32)
    tokens, dim = vectors.shape
    flat = vectors.ravel()
    head = _HEAD.pack(PRIORS.index(prior), tokens, dim, levels)
    if prior == "gaussian":
        clip = float(np.float32(clip))  # as the decoder will read it
        mean, std = np.float32(flat.mean()), np.float32(max(flat.std(), 1e-12))
        table = _uniform_levels(float(mean) - clip * float(std), float(mean) + clip * float(std), levels)
        indices = _nearest(flat, table)
        weights = _integer_weights(_gaussian_masses(float(mean), float(std), table))
        side = struct.pack("<fff", mean, std, clip)
    elif prior == "histogram":
        lo, hi = (np.float32(q) for q in np.percentile(flat, [1, 99]))
        hi = max(hi, np.nextafter(lo, np.float32(np.inf)))
        table = _uniform_levels(float(lo), float(hi), levels)
        indices = _nearest(flat, table)
        counts = np.bincount(indices, minlength=levels)
        weights = _integer_weights(counts)
        side = struct.pack("<ff", lo, hi) + _varints(counts)
    else:
        table = _lloyd_max(flat, levels)
        indices = _nearest(flat, table)
        counts = np.bincount(indices, minlength=levels)
        weights = _integer_weights(counts)
        side = table.astype("<f4").tobytes() + _varints(counts)
    code = head + side + _code_indices(indices, weights)
    values = table[indices].reshape(tokens, dim)
    mse = float(np.mean((values.astype(np.float64) - vectors) ** 2))
    return CodedVectors(prior, levels, code, values, indices.reshape(tokens, dim), mse)


def decode_vectors(code: bytes, legacy_float: bool = False) -> np.ndarray:
    """The dequantized vectors [tokens, dim] from ``encode_vectors(...).code`` (``legacy_float``: a code
    from an archive of format 1 or 2, whose frequencies were computed in float)."""
    try:
        prior_index, tokens, dim, levels = _HEAD.unpack_from(code)
        prior = PRIORS[prior_index]
        offset = _HEAD.size
        if prior == "gaussian":
            mean, std, clip = struct.unpack_from("<fff", code, offset)
            offset += 12
            table = _uniform_levels(mean - clip * std, mean + clip * std, levels)
            if legacy_float:
                probabilities = _gaussian_probabilities(mean, std, table)
            else:
                masses = _gaussian_masses(mean, std, table)
        else:
            if prior == "histogram":
                lo, hi = struct.unpack_from("<ff", code, offset)
                offset += 8
                table = _uniform_levels(lo, hi, levels)
            else:
                table = np.frombuffer(code, dtype="<f4", count=levels, offset=offset).astype(np.float32)
                offset += 4 * levels
            counts, offset = _read_varints(code, offset, levels)
            probabilities, masses = counts / max(1, counts.sum()), counts
        if legacy_float:
            weights = entropy.frequencies(probabilities.astype(np.float32)[None])
        else:
            weights = _integer_weights(masses)
        decoder = entropy.Decoder(code[offset:])
        indices = decoder.decode(np.repeat(weights, tokens * dim, axis=0)).astype(np.int64)
    except (struct.error, IndexError, ValueError) as e:
        raise LmpressError(f"coded prompt is corrupted ({e})") from None
    return table[indices].reshape(tokens, dim)
