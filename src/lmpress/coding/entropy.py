"""Range coding of symbols under per-symbol categorical distributions (constriction).

Probabilities become integer frequencies by one deterministic function,
``frequencies``: every symbol gets at least 1 of the 2**24 slots, so no symbol
ever has a zero-width interval (DESIGN.md, contract 2). constriction's lazy
categorical model then reproduces exactly these integers: we hand it the
frequencies *minus one* as float64 integers summing to ``2**24 - n``, which its
fixed-point quantizer (scale ``(2**24 - n) / sum``, here exactly 1.0) adds one
to without rounding.
"""

from __future__ import annotations

import constriction
import numpy as np

PRECISION = 24  # constriction's default range coder: 24-bit probabilities
TOTAL = 1 << PRECISION
QUANTIZER = "floor-then-argmax/v1"

_FAMILY = constriction.stream.model.Categorical(perfect=False)


def frequencies(probs: np.ndarray) -> np.ndarray:
    """Integer weights (as float64) for probabilities [batch, n]: the coder's frequencies minus one.

    Integer input is taken as weights already (exact predictors compute them in
    integer arithmetic: ``models/exact/ops.frequencies_from_logits``). Float
    input, each row: w = floor(p * (2**24 - n) / sum(p)); the remainder goes to
    the most probable symbol (first index on ties). Deterministic in the float32
    input, which float models compute with CPU-dependent kernels.
    """
    if np.issubdtype(probs.dtype, np.integer):
        return probs.astype(np.float64)
    w = probs.astype(np.float64)
    free = float(TOTAL - w.shape[1])
    np.multiply(w, free / w.sum(axis=1, keepdims=True), out=w)  # in place: LLM vocabularies are large
    np.floor(w, out=w)
    rows = np.arange(len(w))
    w[rows, np.argmax(probs, axis=1)] += free - w.sum(axis=1)  # argmax of the float32 input: same index
    return w


def uniform(batch: int, n: int) -> np.ndarray:
    """Weights of ``batch`` uniform distributions over ``n`` symbols (as ``frequencies`` gives them)."""
    return frequencies(np.ones((batch, n), dtype=np.float32))


def code_lengths(weights: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """Ideal code length in bits of each symbol under the quantized model."""
    return PRECISION - np.log2(weights[np.arange(len(symbols)), symbols] + 1.0)


class Encoder:
    """Appends symbols to one range-coded stream."""

    def __init__(self) -> None:
        self._coder = constriction.stream.queue.RangeEncoder()

    def encode(self, symbols: np.ndarray, weights: np.ndarray) -> None:
        self._coder.encode(symbols.astype(np.int32), _FAMILY, weights)

    def finish(self) -> bytes:
        return self._coder.get_compressed().astype("<u4").tobytes()


class Decoder:
    """Reads symbols back from a stream written by ``Encoder``."""

    def __init__(self, payload: bytes) -> None:
        if len(payload) % 4:
            raise ValueError("range-coded payload must be a whole number of 32-bit words")
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        self._coder = constriction.stream.queue.RangeDecoder(words)

    def decode(self, weights: np.ndarray) -> np.ndarray:
        return self._coder.decode(_FAMILY, weights)
