"""Compiled kernels (numba) for the attention step: int8 caches in, exact integers out.

Integer arithmetic, plus float64 sums of integer products that stay below
2**53 and are therefore exact in any order: numba compiles the same results on
every CPU, so these kernels decide only how fast a step is, never what it
computes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

SCORE_DIVISOR = 127 * 127  # queries and keys are int8 with scale amax / 127 each


WEIGHT_BITS = 14  # attention weights into the value sum: int32 products and sums stay below 2**31
SUM_PART = 1024  # positions summed in int32 before adding into int64


@njit(cache=True, nogil=True)
def attention(q, q_amax, k_cache, k_amax, v_cache, v_amax, n, row_mul_shift, score_shift, mul_shift,
              exp_table, out):  # pragma: no cover - compiled
    """One attention step over the ``n`` cached positions, for every sequence and head.

    q        int32 [B, H, G, hd]  int8-valued queries (1/sqrt(hd) folded in), H kv heads of G queries
    q_amax   int64 [B, H, G]      their scales: query = q * q_amax / 127 at f bits
    k_cache  int8  [B, H, hd, span], k_amax int64 [B, H, span]  keys, the same way
    v_cache  int8  [B, H, hd, span], v_amax int64 [B, H, span]  values
    out      int64 [B, H, G, hd]  sum_j p_j * v_amax_j * v_j / sum_j p_j  (so the output is out / (127 * 2**f))

    Score_j (nats) = (q . k_j) * q_amax * k_amax_j / (127**2 * 2**(2 f)). With S_j = (q . k_j) * k_amax_j,
    p_j = exp_table[((max S - S_j) >> score_shift) * row_mul >> mul_shift] (index clipped to the table,
    whose last entry is 0), row_mul = (q_amax << row_mul_shift) // 127**2, which makes the index the score
    gap in table steps. The weights w_j = p_j * v_amax_j are rescaled to WEIGHT_BITS (w_j * 2**14 // max w,
    rounded) for an int32 sum with the int8 values; the peak and sum of p bring the scale back.

    Both caches are dimension-major (a key's or value's components lie ``span`` apart) so that the loops
    run along positions for the compiler's vectorizer: the scores four key rows per pass, the value sums as
    int16 x int8 dot products (``_value_sums``); any layout computes the same integers.
    """
    b_n, h_n, g_n, hd = q.shape
    last = exp_table.shape[0] - 1
    dots = np.empty(n, dtype=np.int32)
    scores = np.empty(n, dtype=np.int64)
    pav = np.empty(n, dtype=np.int64)
    index = np.empty(n, dtype=np.int32)
    weights = np.empty((g_n, n), dtype=np.int16)  # at most 2**WEIGHT_BITS
    peaks = np.empty(g_n, dtype=np.int64)
    totals = np.empty(g_n, dtype=np.int64)
    sums = np.empty((g_n, hd), dtype=np.int64)
    for b in range(b_n):
        for h in range(h_n):
            keys, values = k_cache[b, h], v_cache[b, h]
            ka, va = k_amax[b, h], v_amax[b, h]
            for g in range(g_n):
                qg = q[b, h, g]
                dots[:] = 0
                for c in range(0, hd - 3, 4):  # four key rows per pass: a quarter of the loads and stores
                    q0, q1, q2, q3 = qg[c], qg[c + 1], qg[c + 2], qg[c + 3]
                    k0, k1, k2, k3 = keys[c, :n], keys[c + 1, :n], keys[c + 2, :n], keys[c + 3, :n]
                    for j in range(n):
                        dots[j] += (q0 * np.int32(k0[j]) + q1 * np.int32(k1[j])) + (
                            q2 * np.int32(k2[j]) + q3 * np.int32(k3[j]))
                for c in range(hd - hd % 4, hd):
                    qc, kc = qg[c], keys[c, :n]
                    for j in range(n):
                        dots[j] += qc * np.int32(kc[j])
                top = np.int64(-(1 << 62))
                for j in range(n):
                    s = np.int64(dots[j]) * ka[j]
                    scores[j] = s
                    top = max(top, s)
                row_mul = (q_amax[b, h, g] << row_mul_shift) // SCORE_DIVISOR
                # shifted gaps from ``cap`` on index the table's last entry (0): clamping them there changes no
                # index and keeps gap * row_mul within int64 for any scores
                cap = ((np.int64(last) << mul_shift) + row_mul - 1) // max(row_mul, 1)
                for j in range(n):  # the table indices alone: this loop vectorizes, the lookups do not
                    gap = min((top - scores[j]) >> score_shift, cap)
                    index[j] = min((gap * row_mul) >> mul_shift, last)
                for j in range(n):
                    pav[j] = exp_table[index[j]]
                total = np.int64(0)
                peak = np.int64(1)
                for j in range(n):
                    total += pav[j]
                    w = pav[j] * va[j]
                    pav[j] = w
                    peak = max(peak, w)
                inverse = (np.int64(1 << WEIGHT_BITS) << 40) // peak
                wg = weights[g]
                for j in range(n):
                    wg[j] = np.int16((pav[j] * inverse + (1 << 39)) >> 40)
                peaks[g] = peak
                totals[g] = total
            sums[:, :] = 0
            for start in range(0, n, SUM_PART):
                _value_sums(weights, values, start, min(start + SUM_PART, n), sums)
            for g in range(g_n):
                shift = 0  # peak >> shift fits 24 bits, so sum * (peak >> shift) fits int64
                while (peaks[g] >> shift) >= (1 << 24):
                    shift += 1
                back = shift - WEIGHT_BITS
                for c in range(hd):
                    t = (sums[g, c] * (peaks[g] >> shift)) // totals[g]
                    out[b, h, g, c] = t << back if back >= 0 else (t + (np.int64(1) << (-back - 1))) >> -back


@njit(cache=True, nogil=True)
def _value_sums(weights, values, start, stop, sums):  # pragma: no cover - compiled
    """sums[g, c] += sum_j weights[g, j] * values[c, j] over start <= j < stop (at most SUM_PART
    positions: 2**14 * 127 * 1024 < 2**31, so the int32 sums are exact). Four queries share each pass over
    a value row; the int16 x int8 products compile to packed multiply-adds."""
    g_n, hd = sums.shape
    length = stop - start
    quads = g_n - g_n % 4
    for g in range(0, quads, 4):
        w0, w1, w2, w3 = weights[g, start:stop], weights[g + 1, start:stop], weights[g + 2, start:stop], \
            weights[g + 3, start:stop]
        for c in range(hd):
            row = values[c, start:stop]
            s0 = np.int32(0)
            s1 = np.int32(0)
            s2 = np.int32(0)
            s3 = np.int32(0)
            for j in range(length):  # np.int32(...) on every sum keeps the arithmetic in 32-bit lanes
                x = np.int32(row[j])
                s0 = np.int32(s0 + np.int32(w0[j]) * x)
                s1 = np.int32(s1 + np.int32(w1[j]) * x)
                s2 = np.int32(s2 + np.int32(w2[j]) * x)
                s3 = np.int32(s3 + np.int32(w3[j]) * x)
            sums[g, c] += s0
            sums[g + 1, c] += s1
            sums[g + 2, c] += s2
            sums[g + 3, c] += s3
    for g in range(quads, g_n):
        wg = weights[g, start:stop]
        for c in range(hd):
            row = values[c, start:stop]
            s = np.int32(0)
            for j in range(length):
                s = np.int32(s + np.int32(wg[j]) * np.int32(row[j]))
            sums[g, c] += s


# ---------------------------------------------------------------------------------------------
# Row-wise passes around the weight matmuls (one pass each instead of several numpy ones). The
# definitions are those of ``ops.py``: ``quantize``, ``norm_quantize`` and ``IntLinear``.


@njit(cache=True, nogil=True)
def _round_shift(x, s):  # pragma: no cover - compiled
    if s <= 0:
        return x << -s
    return (x + (np.int64(1) << (s - 1))) >> s


@njit(cache=True, nogil=True)
def _isqrt(n):  # pragma: no cover - compiled
    r = np.int64(np.sqrt(np.float64(n)))
    for _ in range(2):
        if r * r > n:
            r -= 1
        if (r + 1) * (r + 1) <= n:
            r += 1
    return r


@njit(cache=True, nogil=True)
def _fine_rms(squares, d):  # pragma: no cover - compiled
    """(rms * 2**p, p): the root mean square with p <= 16 extra bits, as many as int64 allows, so that a
    row of small fixed-point values still gets a precise norm."""
    p = 0
    while p < 16 and (squares >> (60 - 2 * p)) == 0:
        p += 1
    return max(_isqrt((squares << (2 * p)) // d), 1), p


@njit(cache=True, nogil=True)
def _scaled_ratio(num, e, den):  # pragma: no cover - compiled
    """num * 2**e // den for num < 2**62, without overflow: shift num up while it fits, the rest after."""
    while e > 0 and num < (np.int64(1) << 61):
        num <<= 1
        e -= 1
    return (num // den) << e


@njit(cache=True, nogil=True)
def quantize_rows(x, q, amax, levels=127):  # pragma: no cover - compiled
    """``ops.quantize`` over the last axis of a 2-D int64 ``x`` to integers in [-levels, levels]:
    q (float32, int8 or int64), amax int64 [rows]."""
    for b in range(x.shape[0]):
        top = np.int64(1)
        for i in range(x.shape[1]):
            top = max(top, abs(x[b, i]))
        inverse = (np.int64(levels) << 40) // top
        for i in range(x.shape[1]):
            q[b, i] = (x[b, i] * inverse + (np.int64(1) << 39)) >> 40
        amax[b] = top


@njit(cache=True, nogil=True)
def norm_quantize_rows(x, q, row_scale, row_bits, levels=127):  # pragma: no cover - compiled
    """RMSNorm then quantize (``ops``): q in [-levels, levels], row scale int64 [rows]."""
    d = x.shape[1]
    for b in range(x.shape[0]):
        top = np.int64(1)
        squares = np.int64(0)
        for i in range(d):
            v = x[b, i]
            top = max(top, abs(v))
            squares += v * v
        inverse = (np.int64(levels) << 40) // top
        for i in range(d):
            q[b, i] = (x[b, i] * inverse + (np.int64(1) << 39)) >> 40
        rms = max(_isqrt(squares // d), 1)
        row_scale[b] = (top << row_bits) // (levels * rms)


@njit(cache=True, nogil=True)
def rescale(y, multiplier, row_scale, pre_shift, shift, out):  # pragma: no cover - compiled
    """``IntLinear``'s integer rescale of the matmul ``y`` (float32 holding integers) into ``out``."""
    for b in range(y.shape[0]):
        r = row_scale[b]
        for o in range(y.shape[1]):
            out[b, o] = _round_shift(_round_shift(np.int64(y[b, o]) * multiplier[o], pre_shift) * r, shift)


@njit(cache=True, nogil=True)
def rescale_add(y, multiplier, row_scale, pre_shift, shift, residual, limit):  # pragma: no cover - compiled
    """``residual = clip(residual + rescale(y), -limit, limit)``, in place."""
    for b in range(y.shape[0]):
        r = row_scale[b]
        for o in range(y.shape[1]):
            v = residual[b, o] + _round_shift(_round_shift(np.int64(y[b, o]) * multiplier[o], pre_shift) * r, shift)
            residual[b, o] = min(max(v, -limit), limit)


@njit(cache=True, nogil=True)
def rescale_gelu(y, multiplier, row_scale, pre_shift, shift, table, limit, out):  # pragma: no cover - compiled
    """``out = gelu(rescale(y))`` by the GELU table (covering [-limit, limit] in fixed point)."""
    for b in range(y.shape[0]):
        r = row_scale[b]
        for o in range(y.shape[1]):
            h = _round_shift(_round_shift(np.int64(y[b, o]) * multiplier[o], pre_shift) * r, shift)
            if h >= limit:
                out[b, o] = h
            elif h <= -limit:
                out[b, o] = 0
            else:
                out[b, o] = table[h + limit]


@njit(cache=True, nogil=True)
def _quantize_into(vec, q, row):  # pragma: no cover - compiled
    """``ops.quantize`` of one vector into q[row, :]; returns amax."""
    top = np.int64(1)
    for c in range(vec.shape[0]):
        top = max(top, abs(vec[c]))
    inverse = (np.int64(127) << 40) // top
    for c in range(vec.shape[0]):
        q[row, c] = (vec[c] * inverse + (np.int64(1) << 39)) >> 40
    return top


@njit(cache=True, nogil=True)
def qkv_step(y, multiplier, row_scale, pre_shift, shift, limit, head_gain, cos, sin, rope_bits, n_q, n_kv,
             q, q_amax, k_cache, k_amax, v_cache, v_amax, slot):  # pragma: no cover - compiled
    """The qkv projection's rescale (clipped to +-limit), RoPE on queries and keys, int8 quantization
    per head; queries into ``q`` int32 [B, n_q, hd] / ``q_amax`` [B, n_q], keys and values into ``k_cache``
    and ``v_cache`` [B, n_kv, hd, span] at ``slot``.

    ``head_gain`` int64 [2, hd] (or [0, hd]: none): RMSNorm of each query (row 0) and key (row 1) head
    before RoPE (Gemma 3's q/k norms), the gains at the heads' fixed point: v * gain // isqrt(mean(v*v)).
    """
    hd = q.shape[2]
    half = hd // 2
    vec = np.empty(hd, dtype=np.int64)
    rotated = np.empty((1, hd), dtype=np.int64)
    quantized = np.empty((1, hd), dtype=np.int64)
    for b in range(y.shape[0]):
        r = row_scale[b]
        for head in range(n_q + 2 * n_kv):
            for c in range(hd):
                o = head * hd + c
                v = _round_shift(_round_shift(np.int64(y[b, o]) * multiplier[o], pre_shift) * r, shift)
                vec[c] = min(max(v, -limit), limit)
            if head < n_q + n_kv and head_gain.shape[0] == 2:
                squares = np.int64(0)
                for c in range(hd):
                    squares += vec[c] * vec[c]
                rms = max(_isqrt(squares // hd), 1)
                gain = head_gain[0] if head < n_q else head_gain[1]
                for c in range(hd):
                    vec[c] = (vec[c] * gain[c]) // rms
            if head < n_q + n_kv:  # RoPE: (a, c) pairs of the first and second half
                for c in range(half):
                    a, e = vec[c], vec[c + half]
                    rotated[0, c] = _round_shift(a * cos[c] - e * sin[c], rope_bits)
                    rotated[0, c + half] = _round_shift(a * sin[c] + e * cos[c], rope_bits)
            else:
                rotated[0, :] = vec
            amax = _quantize_into(rotated[0], quantized, 0)
            if head < n_q:
                q[b, head, :] = quantized[0]
                q_amax[b, head] = amax
            elif head < n_q + n_kv:
                for c in range(hd):
                    k_cache[b, head - n_q, c, slot] = quantized[0, c]
                k_amax[b, head - n_q, slot] = amax
            else:
                for c in range(hd):
                    v_cache[b, head - n_q - n_kv, c, slot] = quantized[0, c]
                v_amax[b, head - n_q - n_kv, slot] = amax


@njit(cache=True, nogil=True)
def rescale_gated(y, multiplier, row_scale, pre_shift, shift, table, limit, frac_bits, out):  # pragma: no cover
    """Gated MLP: y holds [gate | up]; ``out = act(gate) * up`` at ``frac_bits`` (act by its table)."""
    width = out.shape[1]
    for b in range(y.shape[0]):
        r = row_scale[b]
        for o in range(width):
            g = _round_shift(_round_shift(np.int64(y[b, o]) * multiplier[o], pre_shift) * r, shift)
            u = _round_shift(_round_shift(np.int64(y[b, width + o]) * multiplier[width + o], pre_shift) * r, shift)
            if g >= limit:
                a = g
            elif g <= -limit:
                a = np.int64(0)
            else:
                a = table[g + limit]
            out[b, o] = _round_shift(a * u, frac_bits)


@njit(cache=True, nogil=True)
def rescale_norm_add(y, multiplier, row_scale, pre_shift, shift, gain, residual, limit):  # pragma: no cover
    """``residual += RMSNorm(rescale(y)) * gain`` (gain at the residual's fixed point), clipped."""
    d = y.shape[1]
    v = np.empty(d, dtype=np.int64)
    for b in range(y.shape[0]):
        r = row_scale[b]
        squares = np.int64(0)
        for o in range(d):
            t = _round_shift(_round_shift(np.int64(y[b, o]) * multiplier[o], pre_shift) * r, shift)
            t = min(max(t, -limit), limit)
            v[o] = t
            squares += t * t
        rms, p = _fine_rms(squares, d)
        for o in range(d):
            residual[b, o] = min(max(residual[b, o] + ((v[o] * gain[o]) << p) // rms, -limit), limit)


@njit(cache=True, nogil=True)
def product_norm_add(y, multiplier, pre_shift, gain, residual, limit):  # pragma: no cover - compiled
    """``residual += RMSNorm(y * multiplier) * gain`` (gain at the residual's fixed point), clipped.

    RMSNorm does not see a row's scale, so the product is normalized as it is, held at 24 bits, instead
    of first being brought to the residual's fixed point (``rescale_norm_add``): a post-norm's gain (up to
    1657 in Gemma 3) would multiply that rounding. Measured on Gemma 3 270M, 4 x 2048 bytes of held-out
    Wikipedia against float32: +2.52% -> +1.17% bits."""
    d = y.shape[1]
    u = np.empty(d, dtype=np.int64)
    for b in range(y.shape[0]):
        top = np.int64(1)
        for o in range(d):
            u[o] = _round_shift(np.int64(y[b, o]) * multiplier[o], pre_shift)
            top = max(top, abs(u[o]))
        bits = 0
        while (top >> bits) > 0:
            bits += 1
        squares = np.int64(0)  # d * 2**48 at most: int64 for rows below 2**14 wide
        for o in range(d):
            u[o] = _round_shift(u[o], bits - 24)
            squares += u[o] * u[o]
        rms, p = _fine_rms(squares, d)
        for o in range(d):
            residual[b, o] = min(max(residual[b, o] + ((u[o] * gain[o]) << p) // rms, -limit), limit)


@njit(cache=True, nogil=True)
def split_wide(q, hi, lo):  # pragma: no cover - compiled
    """16-bit q (|q| <= 127 * 256 + 127) as int8 halves: q = 256 * hi + lo, hi = round(q / 256)."""
    for b in range(q.shape[0]):
        for i in range(q.shape[1]):
            h = (q[b, i] + 128) >> 8
            hi[b, i] = h
            lo[b, i] = q[b, i] - (h << 8)


@njit(cache=True, nogil=True)
def join_wide(y_hi, y_lo, out):  # pragma: no cover - compiled
    """The product of a split input: out = 256 * y_hi + y_lo (int32 halves, int64 out)."""
    for b in range(y_hi.shape[0]):
        for o in range(y_hi.shape[1]):
            out[b, o] = (np.int64(y_hi[b, o]) << 8) + y_lo[b, o]


@njit(cache=True, nogil=True)
def frequencies(logits, table, total, out):  # pragma: no cover - compiled
    """``ops.frequencies_from_logits`` row by row (for large vocabularies)."""
    n = logits.shape[1]
    last = table.shape[0] - 1
    free = total - n
    for b in range(logits.shape[0]):
        top = logits[b, 0]
        first = 0
        for i in range(1, n):
            if logits[b, i] > top:
                top = logits[b, i]
                first = i
        s = np.int64(0)
        for i in range(n):
            e = table[min(top - logits[b, i], last)]
            out[b, i] = e
            s += e
        inverse = (np.int64(free) << 30) // s  # w = e * free / s by one division per row
        used = np.int64(0)
        for i in range(n):
            w = (out[b, i] * inverse) >> 30
            out[b, i] = w
            used += w
        out[b, first] += free - used


@njit(cache=True, nogil=True)
def norm_gain_quantize_rows(x, gain, gain_bits, q, row_scale, row_bits, levels):  # pragma: no cover
    """RMSNorm with its gain applied to the activations (not folded into the weights, for gains that
    vary by orders of magnitude across channels), then quantize: q ~ x * gain / rms, with
    x * gain / 2**gain_bits / rms = q * row_scale / 2**row_bits (rms with extra bits: ``_fine_rms``)."""
    d = x.shape[1]
    for b in range(x.shape[0]):
        squares = np.int64(0)
        top = np.int64(1)
        for i in range(d):
            squares += x[b, i] * x[b, i]
            top = max(top, abs(x[b, i] * gain[i]))
        inverse = (np.int64(levels) << 40) // top  # |x * gain| * inverse <= levels * 2**40
        for i in range(d):
            q[b, i] = (x[b, i] * gain[i] * inverse + (np.int64(1) << 39)) >> 40
        rms, p = _fine_rms(squares, d)
        row_scale[b] = _scaled_ratio(top, row_bits - gain_bits + p, levels * rms)


# ---------------------------------------------------------------------------------------------
# Weight products for a few rows (``products.Int8Matrix``).


@njit(cache=True, nogil=True)
def int8_product(q, weight_t, out):  # pragma: no cover - compiled
    """out = q @ weight_t.T in int32: q int8 [rows, K], weight_t int8 [N, K] (each output's weights in a row);
    or q int16 (16-bit inputs, |q| <= 32639) with K <= 512, so that every sum stays below 2**31.

    Integer arithmetic, exact on every CPU (|sum| <= K * 128 * 127 < 2**31 for int8 K < 2**17). Each output is a
    dot product along K, which the compiler vectorizes (int16 multiply-adds, vpmaddwd on AVX2 and AVX-512);
    four input rows share each weight row's loads. On a few rows the product is bound by reading the weights,
    which here are int8: measured with AVX2 code (NUMBA_CPU_NAME=haswell, one thread), 4 x 576 @ 576 x 3072 in
    0.135 ms against 0.310 ms for the float32 matmul of the same integers."""
    rows, k_in = q.shape
    for o in range(weight_t.shape[0]):
        w = weight_t[o]
        b = 0
        while b + 4 <= rows:
            x0, x1, x2, x3 = q[b], q[b + 1], q[b + 2], q[b + 3]
            s0 = s1 = s2 = s3 = np.int32(0)
            for i in range(k_in):
                wi = np.int32(w[i])
                s0 = np.int32(s0 + np.int32(x0[i]) * wi)
                s1 = np.int32(s1 + np.int32(x1[i]) * wi)
                s2 = np.int32(s2 + np.int32(x2[i]) * wi)
                s3 = np.int32(s3 + np.int32(x3[i]) * wi)
            out[b, o], out[b + 1, o], out[b + 2, o], out[b + 3, o] = s0, s1, s2, s3
            b += 4
        while b < rows:
            x = q[b]
            s = np.int32(0)
            for i in range(k_in):
                s = np.int32(s + np.int32(x[i]) * np.int32(w[i]))
            out[b, o] = s
            b += 1


# ---------------------------------------------------------------------------------------------
# Model conversion: float weights to integers per row, once at load time.

_TILE = 64


@njit(cache=True, nogil=True)
def quantize_weights(w, gains, levels, q, scale):  # pragma: no cover - compiled
    """Per output channel o, a column of float ``w`` [in, out] (float32 or float64): t = float64(w[:, o]) *
    gains[o], scale[o] = max |t| / levels (1.0 for a zero column), q[:, o] = clip(round(t / scale[o]),
    -levels, levels).

    Exactly numpy's ``np.clip(np.round(t / scale), -levels, levels)`` with ``scale = np.abs(t).max(0) /
    levels``, the definition of ``ops.IntLinear``: each step is one correctly rounded IEEE operation, which
    every CPU computes alike (and a maximum is the same in any order), here in two passes along w's rows
    instead of numpy's five over the whole matrix and a transpose (loading SmolLM2 spent 2.4 s there).
    ``q`` int8, or float32 keeping numpy's signed zeros (a negative weight rounded to zero is -0.0, and
    the byte models' digests hash their float32 weights)."""
    n_in, n_out = w.shape
    top = np.zeros(n_out)
    # in tiles, so that a matrix stored either way round (or its transpose written) stays in cache
    for i0 in range(0, n_in, _TILE):
        for o0 in range(0, n_out, _TILE):
            for i in range(i0, min(i0 + _TILE, n_in)):
                for o in range(o0, min(o0 + _TILE, n_out)):
                    top[o] = max(top[o], abs(np.float64(w[i, o]) * gains[o]))
    for o in range(n_out):
        s = top[o] / levels
        scale[o] = s if s > 0.0 else 1.0
    for i0 in range(0, n_in, _TILE):
        for o0 in range(0, n_out, _TILE):
            for i in range(i0, min(i0 + _TILE, n_in)):
                for o in range(o0, min(o0 + _TILE, n_out)):
                    v = np.rint(np.float64(w[i, o]) * gains[o] / scale[o])  # (ties to even, as np.round)
                    q[i, o] = min(max(v, -levels), levels)
