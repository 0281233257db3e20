"""Integer building blocks of the exact coding arithmetic (int64 unless noted).

The one rule: every number that decides a coder frequency is an integer, made
by integer operations (add, multiply, shifts, floor division, max, table
lookups). Weight matmuls multiply int8 values: as float32 BLAS, which is exact
whatever the kernel, SIMD width, thread count or summation order as long as
every partial sum stays below 2**24 (a dot product of length K of int8 values
is bounded by K * 127 * 127, so K <= 1040: ``MAX_EXACT_K``), or in int32 where
this CPU's int8 kernels are exact and faster (``products.py``).

Fixed point: a tensor ``x`` "at f bits" stands for the real ``x / 2**f``.
The row-wise definitions (the step runs them compiled, ``kernels.py``):

* quantize(x) = (x * (127 * 2**40 // amax) + 2**39) >> 40, amax = max(|x|, 1) per row:
  int8 values with x ~ q * amax / 127;
* RMSNorm then quantize: the same q (quantization is scale-free), and the row
  scale (amax << ROW_BITS) // (127 * max(isqrt(sum(x*x) // d), 1)), the norm's
  gain folded into the next weights;
* ``IntLinear``: round_shift(round_shift(Y * multiplier, PRE_SHIFT) * row_scale, shift)
  for Y = q @ W (exact), per output channel.
"""

from __future__ import annotations

import numpy as np

from lmpress.models.exact.kernels import frequencies, quantize_weights
from lmpress.models.exact.products import Int8Matrix

ACT_MAX = 127  # activations and weights at a matmul are integers in [-127, 127]
ROW_BITS = 24  # fixed-point bits of a row scale (see ``IntLinear``)
WEIGHT_BITS = 20  # an ``IntLinear`` multiplier holds this many bits
PRE_SHIFT = 12  # an ``IntLinear`` drops these bits of (Y * multiplier) before the row scale
MAX_EXACT_K = (1 << 24) // (ACT_MAX * ACT_MAX)  # 1040: longest exact float32 dot product of int8 values
WIDE_MAX = 127 * 256 + 127  # 16-bit activations, multiplied as two int8 halves (hi * 256 + lo)


def round_shift(x: np.ndarray, s: int) -> np.ndarray:
    """x / 2**s rounded half up (s >= 0), or x * 2**-s (s < 0)."""
    if s <= 0:
        return x << -s
    return (x + (1 << (s - 1))) >> s


def to_fixed(values: np.ndarray, bits: int) -> np.ndarray:
    """Float values as int64 at ``bits`` fixed point: one IEEE rounding (exact scaling by 2**bits, then
    round half to even), so the same floats give the same integers on any CPU."""
    return np.round(np.ldexp(np.asarray(values, dtype=np.float64), bits)).astype(np.int64)


def fixed_row_scale(amax: np.ndarray, frac_bits: int, divisor: int = 1, levels: int = ACT_MAX) -> np.ndarray:
    """Row scale of ``quantize`` (to +-levels) applied to a tensor at ``frac_bits`` bits (divided by ``divisor``)."""
    return round_shift(amax, frac_bits - ROW_BITS) // (levels * divisor)


class IntLinear:
    """A linear map with int8 weights (one scale per output channel) and an integer rescale.

    For input ``q`` (quantized) with row scale ``r`` (the input is q * r / 2**ROW_BITS),
    the output at ``out_bits`` bits is ``((q @ W) * multiplier >> PRE_SHIFT) * r >> shift``.
    Made from float weights by elementwise IEEE operations only (divide, round,
    scale by powers of two), so the same float weights give the same integers on
    any machine.
    """

    def __init__(self, weight: np.ndarray, out_bits: int, max_k: int | None = MAX_EXACT_K,
                 weight_max: int = ACT_MAX, gains: np.ndarray | None = None) -> None:
        """``max_k``: refuse longer inputs (a float32 matmul of them would not be exact); None for
        int8 weights (``products.Int8Matrix`` chooses the kernel). ``weight_max``: the weights' integer range.
        ``gains``: float64 factors of the output channels, applied to the weights (in float64) first."""
        w = np.asarray(weight)  # [out, in]
        if w.dtype not in (np.float32, np.float64):
            w = w.astype(np.float64)
        if max_k is not None and w.shape[1] > max_k:
            raise ValueError(f"{w.shape[1]} inputs: a float32 matmul is exact for at most {MAX_EXACT_K}")
        gains = np.ones(w.shape[0]) if gains is None else np.asarray(gains, dtype=np.float64)
        # [in, out]: float32 for models of short inputs (their products are float32 matmuls; the zeros'
        # signs are in their digests), else int8 (torch._int_mm, float32 only where needed)
        q = np.empty(w.shape[::-1], dtype=np.int8 if max_k is None else np.float32)
        scale = np.empty(w.shape[0])
        quantize_weights(w.T, gains, float(weight_max), q, scale)  # (in float64, whatever w's dtype)
        # real output = scale[o] * (q @ W)[o] * r / 2**ROW_BITS; at out_bits bits, with the multiplier
        # holding WEIGHT_BITS bits: multiplier = scale * 2**(out_bits - ROW_BITS + m_bits).
        exponent = int(np.frexp(scale.max())[1])  # scale.max() < 2**exponent
        m_bits = WEIGHT_BITS - exponent - out_bits + ROW_BITS
        self.multiplier = np.round(np.ldexp(scale, out_bits - ROW_BITS + m_bits)).astype(np.int64)
        self.shift = m_bits - PRE_SHIFT
        self.matrix = Int8Matrix(q, weight_max)

    @classmethod
    def from_integers(cls, weight: np.ndarray, multiplier: np.ndarray, shift: int, weight_max: int) -> IntLinear:
        """The map whose ``integers()`` these are (int8 weights [in, out]): a quantized model read back."""
        lin = cls.__new__(cls)
        lin.multiplier, lin.shift = np.asarray(multiplier, dtype=np.int64), int(shift)
        lin.matrix = Int8Matrix(weight, weight_max)
        return lin

    def integers(self) -> dict[str, np.ndarray]:
        """What ``from_integers`` takes: int8 weights [in, out], multipliers, shift."""
        return {"weight": self.matrix.weight.numpy(), "multiplier": self.multiplier, "shift": np.array(self.shift)}

    @property
    def weight(self) -> np.ndarray:
        """The integer weights [in, out] as float32 (made when first asked for: an LLM needs them only where
        its products run as float32 matmuls)."""
        return self.matrix.float32()

    def product(self, q: np.ndarray) -> np.ndarray:
        """q @ W for int8 q [rows, in]: exact integers (int32 or float32, ``products.Int8Matrix``)."""
        return self.matrix.product(q)

    def arrays(self) -> list[np.ndarray]:
        return [self.weight, self.multiplier, np.array([self.shift])]


LOGIT_STEPS = 256  # logits are held at 8 bits: one table step per 1/256 nat


def frequencies_from_logits(logits: np.ndarray, table: np.ndarray, total: int) -> np.ndarray:
    """Coder weights (frequencies minus one, int64, each row summing to total - n) from integer logits.

    logits [B, n] at 8 bits. Softmax by the exp table (``tables.exp_table(LOGIT_STEPS, 2**30, ...)``):
    e_i = table[max - logit_i]; each symbol gets (e_i * ((total - n) << 30) // sum(e)) >> 30 and the
    remainder goes to the first most likely symbol, so every symbol keeps at least frequency 1.
    """
    w = np.empty(logits.shape, dtype=np.int64)
    frequencies(np.ascontiguousarray(logits, dtype=np.int64), table, total, w)
    return w
