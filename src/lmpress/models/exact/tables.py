"""The integer tables of the exact arithmetic: exp, GELU and RoPE rotations.

No float is used to make them: values come from Python's ``decimal`` module
(a software implementation, the same on every CPU) at 50 significant digits and
are rounded once to integers, or from integer recurrences. A table is a pure
function of its arguments on any machine. ``tables_digest`` hashes the tables a
model uses into its exact model id, so even a table that came out differently
somewhere (a different ``decimal`` library, say) would be refused by the model
id check instead of decoding garbage.
"""

from __future__ import annotations

import hashlib
from decimal import ROUND_HALF_EVEN, Context, Decimal
from functools import cache

import numpy as np

_CTX = Context(prec=50)


def _to_int(x: Decimal) -> int:
    return int(x.to_integral_value(rounding=ROUND_HALF_EVEN, context=_CTX))


@cache
def decimal_pi() -> Decimal:
    """pi to the context's precision (the recipe from the ``decimal`` documentation)."""
    c = Context(prec=_CTX.prec + 5)
    three = Decimal(3)
    lasts, t, s, n, na, d, da = 0, three, three, 1, 0, 0, 24
    while s != lasts:
        lasts = s
        n, na = n + na, na + 8
        d, da = d + da, da + 32
        t = c.divide(c.multiply(t, n), d)
        s = c.add(s, t)
    return _CTX.plus(s)


def _cos_sin(x: Decimal) -> tuple[Decimal, Decimal]:
    """cos and sin by Taylor series after reduction to [-pi, pi]."""
    c = Context(prec=_CTX.prec + 10)
    two_pi = c.multiply(2, decimal_pi())
    x = c.subtract(x, c.multiply(two_pi, c.divide_int(c.add(x, decimal_pi()), two_pi)))
    cos = sin = Decimal(0)
    term, k = Decimal(1), 0  # x^k / k!
    while True:
        if k % 4 == 0:
            cos = c.add(cos, term)
        elif k % 4 == 1:
            sin = c.add(sin, term)
        elif k % 4 == 2:
            cos = c.subtract(cos, term)
        else:
            sin = c.subtract(sin, term)
        k += 1
        term = c.divide(c.multiply(term, x), k)
        if term.is_zero() or term.adjusted() < -(_CTX.prec + 5):
            return _CTX.plus(cos), _CTX.plus(sin)


@cache
def exp_table(steps_per_nat: int, one: int, size: int) -> np.ndarray:
    """int64 [size]: round(one * exp(-i / steps_per_nat))."""
    step = _CTX.exp(Decimal(-1) / Decimal(steps_per_nat))
    values, x = [], Decimal(one)
    for _ in range(size):
        values.append(_to_int(x))
        x = _CTX.multiply(x, step)
    return np.array(values, dtype=np.int64)


def exp_table_size(steps_per_nat: int, one: int) -> int:
    """Entries until round(one * exp(-i / steps)) is 0: ln(2 * one) * steps, rounded up."""
    return int(_CTX.ln(Decimal(2 * one)) * steps_per_nat) + 2


@cache
def activation_table(kind: str, frac_bits: int, limit: int) -> np.ndarray:
    """int64 [2 * limit * 2**frac_bits + 1]: an activation in fixed point, entry i at x = i / 2**frac_bits - limit.

    ``kind``: "gelu_tanh" (GELU in the tanh form, torch's approximate="tanh") or "silu" (x * sigmoid(x)).
    """
    scale = 1 << frac_bits
    c = _CTX
    k = c.sqrt(c.divide(2, decimal_pi()))
    values = []
    for i in range(2 * limit * scale + 1):
        x = c.divide(Decimal(i - limit * scale), scale)
        if kind == "gelu_tanh":
            z = c.multiply(k, c.add(x, c.multiply(Decimal("0.044715"), c.power(x, 3))))
            tanh = c.subtract(1, c.divide(2, c.add(c.exp(c.multiply(2, z)), 1)))
            y = c.multiply(c.multiply(Decimal("0.5"), x), c.add(1, tanh))
        elif kind == "silu":
            y = c.divide(x, c.add(1, c.exp(c.minus(x))))
        else:
            raise ValueError(f"unknown activation {kind!r}")
        values.append(_to_int(c.multiply(y, scale)))
    return np.array(values, dtype=np.int64)


def gelu_table(frac_bits: int, limit: int) -> np.ndarray:
    return activation_table("gelu_tanh", frac_bits, limit)


class Rotary:
    """RoPE rotations as integers: cos and sin of position * theta_i, in ``frac_bits`` fixed point.

    theta_i = base ** (-i / half). A position's rotation is the product of two
    table entries, ``low[p % 4096]`` and ``high[p // 4096]``, each held with
    ``_TABLE_BITS`` fractional bits and made by an exact integer recurrence
    from a 50-digit cos / sin of theta_i, then rounded once to ``frac_bits``.
    Every position is the same integer function of ``p`` on any machine.
    """

    _TABLE_BITS = 96
    _LOW = 4096

    def __init__(self, half: int, base: float | str, frac_bits: int = 14) -> None:
        self.half, self.frac_bits = half, frac_bits
        base_d = Decimal(str(base))
        one = 1 << self._TABLE_BITS
        step = []
        for i in range(half):
            theta = _CTX.exp(_CTX.multiply(Decimal(-i) / Decimal(half), _CTX.ln(base_d)))
            cos, sin = _cos_sin(theta)
            step.append((_to_int(cos * one), _to_int(sin * one)))
        self._low = self._powers(step, self._LOW)  # rotations by p * theta, p < 4096
        last = self._low[-1]
        self._high_step = [self._mul(a, b) for a, b in zip(last, step)]  # rotation by 4096 * theta
        self._high = [[(one, 0)] * half]
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _mul(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        s = self._TABLE_BITS
        half_unit = 1 << (s - 1)
        return ((a[0] * b[0] - a[1] * b[1] + half_unit) >> s, (a[0] * b[1] + a[1] * b[0] + half_unit) >> s)

    def _powers(self, step: list[tuple[int, int]], n: int) -> list[list[tuple[int, int]]]:
        one = 1 << self._TABLE_BITS
        rows = [[(one, 0)] * len(step)]
        for _ in range(n - 1):
            rows.append([self._mul(r, s) for r, s in zip(rows[-1], step)])
        return rows

    def at(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """(cos, sin) int64 [half] at ``position``, in ``frac_bits`` fixed point."""
        cached = self._cache.get(position)
        if cached is not None:
            return cached
        hi, lo = divmod(position, self._LOW)
        while len(self._high) <= hi:
            self._high.append([self._mul(r, s) for r, s in zip(self._high[-1], self._high_step)])
        shift = 2 * self._TABLE_BITS - self.frac_bits
        half_unit = 1 << (shift - 1)
        cos, sin = [], []
        for (hc, hs), (lc, ls) in zip(self._high[hi], self._low[lo]):
            cos.append((hc * lc - hs * ls + half_unit) >> shift)
            sin.append((hc * ls + hs * lc + half_unit) >> shift)
        result = np.array(cos, dtype=np.int64), np.array(sin, dtype=np.int64)
        if len(self._cache) < 1 << 16:
            self._cache[position] = result
        return result

    def digest(self) -> bytes:
        """Bytes that pin the tables down (positions 0..4095 and the high step), for the model id."""
        h = hashlib.sha256()
        for row in (*self._low, self._high_step):
            h.update(repr(row).encode())
        return h.digest()


def tables_digest(*tables: np.ndarray | bytes) -> bytes:
    h = hashlib.sha256()
    for t in tables:
        h.update(t if isinstance(t, bytes) else np.ascontiguousarray(t, dtype="<i8").tobytes())
    return h.digest()
