"""An independent reference decoder for byte-model archives: numpy and constriction only.

It exists to prove the exact arithmetic: it shares no code with lmpress (run it
as a script; it imports neither torch nor lmpress) and computes every step from
the definition, plainly — position-ordered caches instead of rings, Python's
``math.isqrt``, float64 matmuls (exact for these integers), the full softmax
without the fast path's shortcuts, every row stepped to the end. If it decodes
an archive made by ``lmpress`` bit for bit, the archive's probabilities
depend on nothing but the integers.

    python reference.py ARCHIVE MODEL.npz OUTPUT

``MODEL.npz`` comes from ``lmpress export-exact MODEL MODEL.npz`` (the
integer weights, tables and constants of the exact model, and the ids of the
model mixed with each context mixer).

It decodes archives of the network alone (``--no-mix``) and of the network
mixed with ``cm/v4`` (lmpress's default for text and other files) or its
predecessors ``cm/v3``, ``cm/v2`` and ``cm/v1``: ``ReferenceMixer`` and ``BitTree`` restate those
mixers from their definition in Python integers (their constants are part of the
definition, written out below). The image and audio front ends' mixers are not restated
here.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
import zlib
from decimal import Context, Decimal

# One BLAS thread, as lmpress codes (and many threads contend badly for these small products).
for _threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

import constriction  # noqa: E402
import numpy as np  # noqa: E402


class History:
    """One layer's keys, values and their scales at the last ``span`` positions, in position order: a buffer
    of two spans that moves its second half down when full. Keys and values (int8 integers) are held as
    float64 for the matmuls, which sum them exactly."""

    def __init__(self, batch: int, kv_heads: int, span: int, head_dim: int) -> None:
        self.span, self.first = span, 0  # the position at index 0
        self.keys = np.zeros((batch, kv_heads, 2 * span, head_dim))
        self.values = np.zeros((batch, kv_heads, 2 * span, head_dim))
        self.k_scales = np.zeros((batch, kv_heads, 2 * span), dtype=np.int64)
        self.v_scales = np.zeros((batch, kv_heads, 2 * span), dtype=np.int64)

    def append(self, pos: int, k, k_scale, v, v_scale) -> tuple[np.ndarray, ...]:
        """Store position ``pos``'s entries [B, kv_heads, ...]; the entries the next query attends to."""
        arrays = (self.keys, self.k_scales, self.values, self.v_scales)
        if pos - self.first == 2 * self.span:
            for a in arrays:
                a[:, :, :self.span] = a[:, :, self.span:]
            self.first += self.span
        i = pos - self.first
        for a, entry in zip(arrays, (k, k_scale, v, v_scale)):
            a[:, :, i] = entry
        seen = slice(max(0, pos + 1 - self.span) - self.first, i + 1)
        return tuple(a[:, :, seen] for a in arrays)


class ReferenceModel:
    def __init__(self, path: str) -> None:
        z = np.load(path)
        self.a = {k: z[k] for k in z.files}
        meta = json.loads(self.a["meta"].tobytes())
        self.id, self.cfg, self.c = meta["id"], meta["config"], meta["constants"]
        self.mixed_ids = meta.get("mixed_ids", {})  # the arithmetic id of the network with each context mixer
        self.float_weights: dict[str, np.ndarray] = {}

    def linear(self, name: str, q: np.ndarray, row_scale: np.ndarray) -> np.ndarray:
        if name not in self.float_weights:  # the int8 weights as float64, converted once
            self.float_weights[name] = self.a[name + ".weight"].astype(np.float64)
        y = (q.astype(np.float64) @ self.float_weights[name]).astype(np.int64)  # sums below 2**53: exact
        m, shift = self.a[name + ".multiplier"], int(self.a[name + ".shift"])
        return rshift(rshift(y * m, self.c["PRE_SHIFT"]) * row_scale[:, None], shift)

    def norm_quantize(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q, amax = quantize(x)
        rms = np.array([max(math.isqrt(int(v)), 1) for v in (x * x).sum(axis=1) // x.shape[1]], dtype=np.int64)
        return q, (amax[:, 0] << self.c["ROW_BITS"]) // (127 * rms)

    def attention(self, q, q_amax, keys, k_amax, values, v_amax):
        """q [B, H, G, hd], q_amax [B, H, G], keys/values [B, H, n, hd] (int8 values as float64), their scales
        [B, H, n]: the weighted value sums [B, H, G, hd]."""
        c = self.c
        table = self.a["attention_exp"]
        dots = np.matmul(q.astype(np.float64), np.swapaxes(keys, -1, -2)).astype(np.int64)
        scores = dots * k_amax[:, :, None, :]  # [B, H, G, n]
        gaps = (scores.max(axis=-1, keepdims=True) - scores) >> c["SCORE_SHIFT"]
        row_mul = (q_amax[..., None] << c["ROW_MUL_SHIFT"]) // (127 * 127)
        p = table[np.minimum((gaps * row_mul) >> c["MUL_SHIFT"], len(table) - 1)]
        w = p * v_amax[:, :, None, :]
        peak = np.maximum(w.max(axis=-1, keepdims=True), 1)
        bits = c["WEIGHT_BITS_ATTENTION"]
        w14 = rshift(w * ((np.int64(1 << bits) << 40) // peak), 40)
        sums = np.matmul(w14.astype(np.float64), values).astype(np.int64)  # [B, H, G, hd]
        totals = p.sum(axis=-1, keepdims=True)
        shift = np.maximum(0, bit_length(peak) - 24)
        return rshift((sums * (peak >> shift)) // totals, bits - shift)

    def step(self, x: np.ndarray, history: list[History], pos: int) -> np.ndarray:
        """Logits for input vectors x [B, d]; ``history`` holds each layer's keys and values so far."""
        cfg, c = self.cfg, self.c
        hd = cfg["d_model"] // cfg["n_head"]
        n_q, n_kv = cfg["n_head"], cfg["n_kv_head"]
        groups, half = n_q // n_kv, hd // 2
        cos, sin = self.a["rope_cos"][pos], self.a["rope_sin"][pos]
        limit = c["RESIDUAL_LIMIT"]
        for i in range(cfg["n_layer"]):
            q8, rs = self.norm_quantize(x)
            qkv = np.clip(self.linear(f"layer{i}.qkv", q8, rs), -c["QKV_LIMIT"], c["QKV_LIMIT"])
            qkv = qkv.reshape(len(x), n_q + 2 * n_kv, hd)
            a, e = qkv[:, : n_q + n_kv, :half], qkv[:, : n_q + n_kv, half:]
            rot = np.concatenate([rshift(a * cos - e * sin, c["ROPE_BITS"]), rshift(a * sin + e * cos, c["ROPE_BITS"])],
                                 axis=-1)
            q, q_amax = quantize(rot[:, :n_q])
            k, k_amax = quantize(rot[:, n_q:])
            v, v_amax = quantize(qkv[:, n_q + n_kv:])
            keys, k_scales, values, v_scales = history[i].append(pos, k, k_amax[..., 0], v, v_amax[..., 0])
            out = self.attention(q.reshape(len(x), n_kv, groups, hd), q_amax.reshape(len(x), n_kv, groups),
                                 keys, k_scales, values, v_scales)
            q8, amax = quantize(out.reshape(len(x), n_q * hd))
            rs = (amax[:, 0] << (c["ROW_BITS"] - c["QKV_BITS"])) // (127 * 127)
            x = np.clip(x + self.linear(f"layer{i}.out", q8, rs), -limit, limit)
            q8, rs = self.norm_quantize(x)
            h = self.linear(f"layer{i}.up", q8, rs)
            g_lim = c["GELU_LIMIT"] << c["HIDDEN_BITS"]
            gelu = np.where(h >= g_lim, h, np.where(h <= -g_lim, 0, self.a["gelu"][np.clip(h + g_lim, 0, 2 * g_lim)]))
            q8, amax = quantize(gelu)
            rs = (amax[:, 0] << (c["ROW_BITS"] - c["HIDDEN_BITS"])) // 127
            x = np.clip(x + self.linear(f"layer{i}.down", q8, rs), -limit, limit)
        q8, rs = self.norm_quantize(x)
        return self.linear("head", q8, rs)

    def weights(self, logits: np.ndarray) -> np.ndarray:
        """Coder weights (frequencies minus one) from 8-bit logits, by the exp table."""
        table = self.a["logit_exp"]
        e = table[np.minimum(logits.max(axis=1, keepdims=True) - logits, len(table) - 1)]
        free = self.c["TOTAL"] - logits.shape[1]
        w = (e * ((free << 30) // e.sum(axis=1, keepdims=True))) >> 30
        w[np.arange(len(w)), logits.argmax(axis=1)] += free - w.sum(axis=1)
        return w


# ---------------------------------------------------------------------------------------------------------------
# cm/v1, cm/v2 and cm/v3, restated: order-1..8 and word contexts with calibrated counts, a match model, and an online
# mixer of their log-scores with the network's logits (see lmpress/models/exact/mixer.py for the why of each part).

MASK64 = (1 << 64) - 1
GOLDEN, FNV = 0x9E3779B97F4A7C15, 0x100000001B3  # hash multipliers
MIX_ORDERS = (1, 2, 3, 4, 5, 6, 8, 0)  # context lengths in bytes; 0: the word being written
MIX_TABLE_BITS, COUNT_LIMIT, BINS, PROBABILITY_STEPS, CALIBRATION_LIMIT = 16, 1000, 16, 4096, 1 << 16
MATCH_MIN, MATCH_BITS, MATCH_VERIFY, LN_255, LENGTH_BUCKETS = 6, 18, 32, 1419, 8
MIX_WEIGHT_BITS, LEARNING_RATE, LEARNING_SHIFT = 16, 1024, 10
BYTE_WEIGHT_SHIFT = 2  # cm/v2: weight vectors by the previous byte and the two before, added; rate / 4
# cm/v3: orders 1 and 2 as above, the others (and a word-pair context, 100) in tables of SLOT_BITS-bit rows of SLOTS
# (byte, count) pairs; calibration cells by distinct bytes seen too; the rate 512, more at first per weight vector
WORD_PAIR, SLOTS, SLOT_BITS, V3_RATE, V3_WARMUP, V3_MATCH_MIN = 100, 16, 19, 512, 128, 12
MIX_ORDERS_V3 = (1, 2, 3, 4, 5, 6, 8, 0, WORD_PAIR)
MIXERS = ("cm/v1", "cm/v2", "cm/v3", "cm/v4")  # cm/v4: cm/v3, then the bit-tree stage (``BitTree``)
RETAIN_EIGHTHS = 7  # the codec drops finished rows once 7/8 of the batch or fewer are left


def log_table(values) -> np.ndarray:
    """round(256 ln v) by 40-digit decimal arithmetic (half to even), as integers."""
    ctx = Context(prec=40)
    return np.array([int(ctx.multiply(256, ctx.ln(v)).to_integral_value()) for v in values], dtype=np.int64)


def count_bin(n: int) -> int:
    return n if n < 8 else min(n.bit_length() + 4, BINS - 1)


def length_bucket(length: int) -> int:
    return min(length.bit_length(), LENGTH_BUCKETS - 1)


def distinct_bucket(distinct: int) -> int:
    """cm/v3's calibration cells by the bytes seen after a context: 0-1, 2, 3-4, 5 or more."""
    return 0 if distinct <= 1 else 1 if distinct == 2 else 2 if distinct <= 4 else 3


class ReferenceMixer:
    """The state of one block: tables shared by its rows, per-row contexts and matches. ``rows`` maps the
    batch's rows to the block's segments (the codec drops finished rows; their history stays)."""

    def __init__(self, segments: int, steps: int, name: str) -> None:
        self.v3 = name in ("cm/v3", "cm/v4")
        self.tree = BitTree(segments) if name == "cm/v4" else None
        self.orders = MIX_ORDERS_V3 if self.v3 else MIX_ORDERS
        n = len(self.orders)
        # cm/v2, cm/v3: 256 weight vectors by the previous byte, then 65536 by the two previous bytes
        self.byte_weights = np.zeros((256 + 65536, n + 2), dtype=np.int64) if name != "cm/v1" else None
        half = Decimal(1) / 2
        self.count_scores = log_table(Decimal(c) + half for c in range(COUNT_LIMIT + 2))
        self.probability_scores = log_table((Decimal(i) + half) / PROBABILITY_STEPS for i in range(PROBABILITY_STEPS))
        self.count_bins = np.array([count_bin(c) for c in range(COUNT_LIMIT + 2)], dtype=np.int64)
        dense = 2 if self.v3 else n  # orders with 256 counts per row (cm/v3: orders 1 and 2)
        self.counts = np.zeros((dense, 1 << MIX_TABLE_BITS, 256), dtype=np.uint16)  # at most COUNT_LIMIT + 1
        self.checks = np.zeros((dense, 1 << MIX_TABLE_BITS), dtype=np.int64)
        slotted = (n - dense, 1 << SLOT_BITS)  # cm/v3's other orders: per row a check, SLOTS bytes and counts
        self.slot_checks, self.slot_bytes = np.zeros(slotted, np.int64), np.zeros((*slotted, SLOTS), np.uint8)
        self.slot_counts = np.zeros((*slotted, SLOTS), np.uint16)  # at most COUNT_LIMIT + 1
        self.calibration = np.zeros((n, 4 * BINS, BINS, 2), dtype=np.int64)  # hits, trials
        self.rate, self.warmup = (V3_RATE, V3_WARMUP) if self.v3 else (LEARNING_RATE, 0)
        self.match_min = V3_MATCH_MIN if self.v3 else MATCH_MIN
        self.weights = np.zeros((LENGTH_BUCKETS * (n + 1), n + 2), dtype=np.int64)
        self.updates = np.zeros(len(self.weights), dtype=np.int64)
        self.weights[:, 0] = self.weights[:, n + 1] = 1 << MIX_WEIGHT_BITS  # the network, the match model
        self.weights[:, 1:n + 1] = 1 << (MIX_WEIGHT_BITS - 4)  # the context models
        self.match_stats = np.zeros((LENGTH_BUCKETS, 2), dtype=np.int64)  # hits, misses
        self.match_table = {}  # hash -> (segment, position that followed)
        self.history = np.zeros((segments, steps + 1), dtype=np.int64)
        self.t = 0
        self.rows = list(range(segments))
        self.state = [self.fresh_row() for _ in range(segments)]

    @staticmethod
    def fresh_row() -> dict:
        return {"match": [0, 0, 0, 0]}  # length, segment, position, score

    def byte_vectors(self, segment: int) -> tuple[int, int]:
        """cm/v2's weight vectors for position t: by the byte before it, by the two bytes before it."""
        hist, t = self.history[segment], self.t
        a, b = (int(hist[t - 1]) if t >= 1 else 0), (int(hist[t - 2]) if t >= 2 else 0)
        return a, 256 + (b << 8 | a)

    def context(self, segment: int, order: int, k: int) -> tuple[int, int]:
        """(table row, check; 0: none) of a context of the bytes before position t."""
        hist, t = self.history[segment], self.t
        byte = lambda i: int(hist[t - i]) if t >= i else 0  # noqa: E731
        if order == 1:
            return byte(1), 0
        if order == 2:
            return byte(2) << 8 | byte(1), 0
        h = (k + 1) * GOLDEN & MASK64
        bits = SLOT_BITS if self.v3 else MIX_TABLE_BITS
        if order == WORD_PAIR:  # this word and the one before, lower-cased, and the first byte before this one
            words, in_word = 0, True
            for i in range(1, min(64, t) + 1):
                c = byte(i)
                if 65 <= c <= 90 or 97 <= c <= 122:
                    in_word = True
                    h = (h ^ (c | 32)) * FNV & MASK64
                elif in_word:
                    words, in_word = words + 1, False
                    if words == 2:
                        break
                    h = (h ^ (c + 256)) * FNV & MASK64
            h ^= h >> 29
        elif order == 0:
            for i in range(1, min(32, t) + 1):
                c = byte(i)
                h = (h ^ (c + 1)) * FNV & MASK64
                if not (65 <= c <= 90 or 97 <= c <= 122):
                    break
            h ^= h >> 29
        else:
            for i in range(1, order + 1):
                h = (h ^ (byte(i) + 1)) * FNV & MASK64
                h ^= h >> 29
        return h >> (64 - bits), ((h >> 8) & 0xFFFF) + 1

    def row_counts(self, k: int, index: int) -> np.ndarray:
        """The 256 counts of a context (a slotted one's bytes outside its slots count 0)."""
        if k < len(self.counts):
            return self.counts[k, index]
        c = np.zeros(256, dtype=np.int64)
        held = self.slot_counts[k - len(self.counts), index] > 0
        c[self.slot_bytes[k - len(self.counts), index][held]] = self.slot_counts[k - len(self.counts), index][held]
        return c

    def slot_row(self, k: int, index: int, check: int) -> int:
        """cm/v3: the row of the pair (index, index ^ 1) with the context's check, else the one of fewer counts,
        emptied for it."""
        j, first = k - len(self.counts), index & ~1
        for row in (first, first + 1):
            if self.slot_checks[j, row] == check:
                return row
        row = first + 1 if self.slot_counts[j, first + 1].sum() < self.slot_counts[j, first].sum() else first
        self.slot_checks[j, row] = check
        self.slot_counts[j, row] = 0
        return row

    def count(self, k: int, index: int, x: int) -> None:
        """Byte x followed the context: its count goes up (a slotted row: in its slot, else the first empty
        slot or the first of the smallest count); counts halve when one passes COUNT_LIMIT."""
        if k < len(self.counts):
            c = self.counts[k, index]
        else:
            j = k - len(self.counts)
            c, held = self.slot_counts[j, index], self.slot_bytes[j, index]
            mine = np.flatnonzero((c > 0) & (held == x))
            slot = int(mine[0]) if len(mine) else int(np.argmin(c))
            if not len(mine):
                held[slot], c[slot] = x, 0
            x = slot
        c[x] += 1
        if c[x] > COUNT_LIMIT:
            c >>= 1

    def mix(self, logits: np.ndarray) -> np.ndarray:
        """Mixed 8-bit logits [rows, 256] from the network's, row after row (a row may clear a table row)."""
        n = len(self.orders)
        mixed = np.empty_like(logits)
        for b, segment in enumerate(self.rows):
            st = self.state[b]
            st["net"] = logits[b]
            st["ctx"], st["tb"], st["rs"] = [], [], []
            for k, order in enumerate(self.orders):
                index, check = self.context(segment, order, k)
                if k >= len(self.counts):
                    index = self.slot_row(k, index, check)
                elif check and self.checks[k, index] != check:
                    self.counts[k, index] = 0
                    self.checks[k, index] = check
                st["ctx"].append(index)
            seen = 0
            for k in range(n):
                c = self.row_counts(k, st["ctx"][k])
                total = int(c.sum())
                seen += total > 0
                tb = count_bin(total) + (BINS * distinct_bucket(int(np.count_nonzero(c))) if self.v3 else 0)
                hits, trials = self.calibration[k, tb, :, 0], self.calibration[k, tb, :, 1]
                st["tb"].append(tb)
                st["rs"].append(self.probability_scores[(2 * hits + 1) * PROBABILITY_STEPS // (2 * trials + 2)])
            st["set"] = length_bucket(st["match"][0]) * (n + 1) + seen
            w = self.weights[st["set"]]
            if self.byte_weights is not None:
                one, two = self.byte_vectors(segment)
                w = w + self.byte_weights[one] + self.byte_weights[two]
            acc = w[0] * logits[b]
            for k in range(n):  # (a slotted context: the unseen bytes' score is taken off all; the same odds)
                scores = st["rs"][k][self.count_bins[self.row_counts(k, st["ctx"][k])]]
                acc = acc + w[1 + k] * (scores - scores[0] * (k >= len(self.counts)))
            length, other, pos, _ = st["match"]
            if length:
                hits, misses = self.match_stats[length_bucket(length)]
                st["match"][3] = int(self.count_scores[hits] - self.count_scores[misses]) + LN_255
                acc[self.history[other, pos]] += w[1 + n] * st["match"][3]
            mixed[b] = acc >> MIX_WEIGHT_BITS
        return mixed

    def update(self, symbols: np.ndarray, coder_weights: np.ndarray, total: int) -> None:
        """Learn from the bytes just coded (one per row; finished rows repeat their last), row after row."""
        n = len(self.orders)
        for b, segment in enumerate(self.rows):
            st, x = self.state[b], int(symbols[b])
            p = coder_weights[b] + 1  # the coder's frequencies
            grad = [0] * (n + 2)  # d(-ln p(x)) / d weight: score(x) - E_p[score]
            grad[0] = int(st["net"][x]) - int((p * st["net"]).sum()) // total
            for k in range(n):
                scores = st["rs"][k][self.count_bins[self.row_counts(k, st["ctx"][k])]]
                grad[1 + k] = int(scores[x]) - int((p * scores).sum()) // total
            length, other, pos, score = st["match"]
            if length:
                predicted = int(self.history[other, pos])
                grad[1 + n] = (score if predicted == x else 0) - score * int(p[predicted]) // total
                stats = self.match_stats[length_bucket(length)]
                stats[0 if predicted == x else 1] += 1
                if stats.sum() > COUNT_LIMIT:
                    stats >>= 1
            w = self.weights[st["set"]]
            rate = self.rate  # cm/v3: four times that at a weight vector's first updates, then less and less
            if self.warmup:
                rate += 3 * self.rate * self.warmup // (self.warmup + int(self.updates[st["set"]]))
            self.updates[st["set"]] += 1
            for i in range(n + 2):
                w[i] += grad[i] * rate >> LEARNING_SHIFT
            if self.byte_weights is not None:
                for v in self.byte_vectors(segment):
                    w = self.byte_weights[v]
                    for i in range(n + 2):
                        w[i] += grad[i] * self.rate >> (LEARNING_SHIFT + BYTE_WEIGHT_SHIFT)
            for k in range(n):
                c = self.row_counts(k, st["ctx"][k])
                cal = self.calibration[k, st["tb"][k]]
                cal[:, 1] += np.bincount(self.count_bins[c], minlength=BINS)
                cal[self.count_bins[c[x]], 0] += 1
                cal[cal[:, 1] > CALIBRATION_LIMIT] >>= 1
                self.count(k, st["ctx"][k], x)
            self.history[segment, self.t] = x
            if length:
                if self.history[other, pos] == x:
                    st["match"][0], st["match"][2] = length + 1, pos + 1
                else:
                    st["match"][0] = 0
        self.t += 1
        self.find_matches()

    def match_hash(self, segment: int) -> int:
        h = 0
        for i in range(1, self.match_min + 1):
            h = (h + int(self.history[segment, self.t - i]) + 1) * GOLDEN & MASK64
        return h >> (64 - MATCH_BITS)

    def find_matches(self) -> None:
        """Rows without a match look up where their last match_min bytes occurred before (entries of earlier
        steps only), then every row records its own context."""
        t = self.t
        if t < self.match_min:
            return
        for b, segment in enumerate(self.rows):
            st = self.state[b]
            if st["match"][0] or self.match_hash(segment) not in self.match_table:
                continue
            other, pos = self.match_table[self.match_hash(segment)]
            length = 0
            while (length < MATCH_VERIFY and length < pos and length < t
                   and self.history[other, pos - 1 - length] == self.history[segment, t - 1 - length]):
                length += 1
            if length >= self.match_min:
                st["match"][:3] = [length, other, pos]
        for segment in self.rows:
            self.match_table[self.match_hash(segment)] = (segment, t)

    def previous_bytes(self) -> np.ndarray:
        """Each row's last three bytes, most recent first (0 before the start)."""
        return np.array([[int(self.history[s, self.t - i]) if self.t >= i else 0 for i in (1, 2, 3)]
                         for s in self.rows], dtype=np.int64)

    def retain(self, keep: np.ndarray) -> None:
        self.rows = [self.rows[i] for i in keep]
        self.state = [self.state[i] for i in keep]
        if self.tree is not None:
            self.tree.retain(keep)


# cm/v4's bit-tree stage, restated (lmpress/models/exact/bit_tree.py says why): the mixed distribution's binary
# decisions (node n: the bit after the path n spells; children 2n, 2n + 1; leaf 256 + b is byte b), each node's
# probability of a 1 at 12 bits refined by three maps of 33 cells over stretch(p) (contexts: node and the
# previous byte; node and a hash of two bytes; node and a hash of three) and a mixer per node; nodes under less
# than 2**-12 of the mass stay as they are.
PROB_BITS, STRETCH_LIMIT, CELL_SHIFT, CELLS, APM_BITS, APM_COUNT_LIMIT = 12, 2047, 7, 33, 16, 127
TREE_BLOCK_BITS, TREE_HASH, TREE_MIX_SHIFT, TREE_BIAS, UNLIKELY_BITS = (8, 12, 12), 0x5BD1E995, 13, 256, 12
TREE_MIX_INITIAL = (1 << 15, 1 << 14, 1 << 14, 0, 0)  # weights of stretch(p), the three maps, the bias


class BitTree:
    def __init__(self, segments: int) -> None:
        ctx, one = Context(prec=40), 1 << PROB_BITS
        stretch = [int(ctx.multiply(256, ctx.ln(Decimal(max(p, 1)) / Decimal(one - max(p, 1)))).to_integral_value())
                   for p in range(one)]
        self.stretch = np.clip(np.array(stretch, dtype=np.int64), -STRETCH_LIMIT, STRETCH_LIMIT)
        self.squash = np.clip(np.array([int(ctx.divide(one, 1 + ctx.exp(Decimal(-x) / 256)).to_integral_value())
                                        for x in range(-2048, 2048)], dtype=np.int64), 1, one - 1)
        self.log = log_table(Decimal(max(q, 1)) / one for q in range(one + 1))
        self.rates = [int((Decimal(65536) / (Decimal(n) + Decimal(3) / 2)).to_integral_value()) for n in range(128)]
        centres = np.minimum(self.squash[np.minimum(np.arange(CELLS) << CELL_SHIFT, 4095)] << 4, (1 << APM_BITS) - 1)
        self.maps = [np.tile(centres, 256 << bits) for bits in TREE_BLOCK_BITS]
        self.counts = [np.zeros(len(m), dtype=np.int64) for m in self.maps]
        self.mix = np.tile(np.array(TREE_MIX_INITIAL, dtype=np.int64), (256, 1))
        self.saved: list = []  # per row: node probabilities, inputs, cells (what the prediction used)

    def refine(self, weights: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """Log-probabilities [rows, 256] (1/256 nats) from the byte mixer's coder weights [rows, 256]."""
        rows, nodes = len(weights), np.arange(1, 256)
        sums = np.zeros((rows, 512), dtype=np.int64)  # mass under each node
        sums[:, 256:] = weights + 1
        for level in range(7, -1, -1):
            n = np.arange(1 << level, 2 << level)
            sums[:, n] = sums[:, 2 * n] + sums[:, 2 * n + 1]
        p = np.clip((sums[:, 2 * nodes + 1] * (1 << PROB_BITS) + sums[:, nodes] // 2) // sums[:, nodes], 1, 4095)
        x = np.zeros((rows, 256, 5), dtype=np.int64)  # per node: stretch(p), the three maps, the bias
        x[:, 1:, 0], x[:, 1:, 4] = self.stretch[p], TREE_BIAS
        c1, c2, c3 = previous[:, 0], previous[:, 1], previous[:, 2]
        key = c1 | c2 << 8
        blocks = (c1, key * TREE_HASH >> 16 & 0xFFF, (key | c3 << 16) * TREE_HASH >> 20 & 0xFFF)
        position = x[:, 1:, 0] + 2048
        f = np.zeros((rows, 256), dtype=np.int64)
        f[:, 1:] = position & 127
        cells = np.zeros((rows, 256, 3), dtype=np.int64)  # per node and map: the first of its two cells
        for k in range(3):
            cells[:, 1:, k] = ((blocks[k][:, None] << 8) + nodes) * CELLS + (position >> CELL_SHIFT)
            c = cells[:, 1:, k]
            a = (self.maps[k][c] * (128 - f[:, 1:]) + self.maps[k][c + 1] * f[:, 1:]) >> CELL_SHIFT
            x[:, 1:, 1 + k] = self.stretch[np.clip(a >> (APM_BITS - PROB_BITS), 1, 4095)]
        dot = (self.mix[None] * x).sum(axis=2) >> 16
        likely = (sums[:, :256] << UNLIKELY_BITS) >= sums[:, 1:2]
        q = np.zeros((rows, 256), dtype=np.int64)
        q[:, 1:] = np.where(likely[:, 1:], self.squash[np.clip(dot[:, 1:], -2048, 2047) + 2048], p)
        scores = np.zeros((rows, 512), dtype=np.int64)
        for level in range(8):
            n = np.arange(1 << level, 2 << level)
            scores[:, 2 * n] = scores[:, n] + self.log[4096 - q[:, n]]
            scores[:, 2 * n + 1] = scores[:, n] + self.log[q[:, n]]
        self.saved = [(q[r], likely[r], x[r], cells[r], f[r]) for r in range(rows)]
        return scores[:, 256:]

    def update(self, symbols: np.ndarray) -> None:
        for r, s in enumerate(symbols):
            q, likely, x, cells, f = self.saved[r]
            for level in range(8):
                n, bit = (256 + int(s)) >> (8 - level), (int(s) >> (7 - level)) & 1
                if not likely[n]:
                    break
                err = (bit << PROB_BITS) - int(q[n])
                for i in range(5):
                    self.mix[n, i] += int(x[n, i]) * err >> TREE_MIX_SHIFT
                for k in range(3):
                    for c, share in ((int(cells[n, k]), 128 - int(f[n])), (int(cells[n, k]) + 1, int(f[n]))):
                        v, count = int(self.maps[k][c]), int(self.counts[k][c])
                        self.maps[k][c] = v + (((((bit << APM_BITS) - bit - v) * self.rates[count]) >> 16) * share >> 7)
                        self.counts[k][c] = min(count + 1, APM_COUNT_LIMIT)

    def retain(self, keep: np.ndarray) -> None:
        self.saved = [self.saved[i] for i in keep]


def rshift(x: np.ndarray, s: int | np.ndarray) -> np.ndarray:
    """x / 2**s rounded half up (s < 0: x * 2**-s); s an integer or an array of them."""
    if np.ndim(s) == 0:
        return x << -s if s <= 0 else (x + (1 << (s - 1))) >> s
    return np.where(s > 0, (x + (1 << np.maximum(s - 1, 0))) >> np.maximum(s, 0), x << np.maximum(-s, 0))


def bit_length(x: np.ndarray) -> np.ndarray:
    """Python's int.bit_length of each non-negative integer."""
    bits, x = np.zeros_like(x), x.copy()
    while (x > 0).any():
        bits += x > 0
        x >>= 1
    return bits


def quantize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    amax = np.maximum(np.abs(x).max(axis=-1, keepdims=True), 1)
    return rshift(x * ((127 << 40) // amax), 40), amax


def decode_block(model: ReferenceModel, payload: bytes, raw_length: int, chunk_size: int,
                 mixer_name: str | None) -> bytes:
    """One block's segments, decoded side by side as the codec coded them: a step codes one byte of every
    unfinished segment. The network steps every segment to the end (they are independent); the mixer,
    whose tables the rows share, sees the rows the codec kept: finished rows stay (repeating their last
    byte) until 7/8 of the batch or fewer are left."""
    lengths = np.array([min(chunk_size, raw_length - i) for i in range(0, raw_length, chunk_size)])
    batch, steps = len(lengths), int(lengths.max())
    if steps > len(model.a["rope_cos"]):
        raise SystemExit(f"the model file has rotations for {len(model.a['rope_cos'])} positions, the archive's "
                         f"segments need {steps} (lmpress export-exact --positions {steps})")
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
    family = constriction.stream.model.Categorical(perfect=False)
    cfg, total = model.cfg, model.c["TOTAL"]
    history = [History(batch, cfg["n_kv_head"], cfg["attn_span"], cfg["d_model"] // cfg["n_head"])
               for _ in range(cfg["n_layer"])]
    mixer = ReferenceMixer(batch, steps, mixer_name) if mixer_name else None
    rows = np.arange(batch)  # the segments in the codec's batch
    out = np.zeros((batch, steps), dtype=np.int64)
    fed = np.zeros(batch, dtype=np.int64)  # per segment: the byte fed last (finished ones repeat theirs)
    bos = model.a["embed"].shape[0] - 1
    logits = model.step(model.a["embed"][np.full(batch, bos)], history, 0)
    for t in range(steps):
        w = learn = model.weights(mixer.mix(logits[rows]) if mixer else logits[rows])  # the mixer learns from its own
        if mixer and mixer.tree is not None:  # cm/v4: the coder takes the refined distribution
            w = model.weights(mixer.tree.refine(learn, mixer.previous_bytes()))
        live = t < lengths[rows]
        symbols = np.asarray(decoder.decode(family, w[live].astype(np.float64)), dtype=np.int64)
        out[rows[live], t] = symbols
        fed[rows[live]] = symbols
        unfinished = np.flatnonzero(t + 1 < lengths[rows])
        if not len(unfinished):
            break
        if 8 * len(unfinished) <= RETAIN_EIGHTHS * len(rows):
            rows, learn = rows[unfinished], learn[unfinished]
            if mixer:
                mixer.retain(unfinished)
        if mixer:
            mixer.update(fed[rows], learn, total)
            if mixer.tree is not None:
                mixer.tree.update(fed[rows])
        logits = model.step(model.a["embed"][fed], history, t + 1)
    return b"".join(out[i, :n].astype(np.uint8).tobytes() for i, n in enumerate(lengths))


def decode_archive(data: bytes, model: ReferenceModel) -> bytes:
    if data[:4] != b"LMPZ" or data[4] not in (2, 3):
        raise SystemExit("not an lmpress archive of format 2 or 3")
    version = data[4]
    (n,) = struct.unpack_from("<H", data, 5)
    settings = json.loads(data[7:7 + n])
    pos = 7 + n + 32
    arithmetic = settings.get("arithmetic", {})
    name = arithmetic.get("name")
    network, _, mixer_name = (name or "").partition("+")
    if network != "exact-int/v1" or mixer_name not in ("", *MIXERS) or settings.get("prompt"):
        prompt = ", with a soft prompt" if settings.get("prompt") else ""
        raise SystemExit(f"the reference decoder reads exact-int/v1 archives of the network alone or mixed with "
                         f"{' or '.join(MIXERS)}, without soft prompts (this one: {name}{prompt})")
    made_by = model.mixed_ids.get(mixer_name, "") if mixer_name else model.id
    if not made_by.startswith(arithmetic["id"]):
        raise SystemExit(f"the archive needs arithmetic {arithmetic['id']}, the model file has "
                         f"{made_by or 'no ' + mixer_name}")
    if struct.unpack_from("<I", data, pos)[0] != zlib.crc32(data[:pos]):
        raise SystemExit("header checksum mismatch")
    pos += 4
    parts = []
    while struct.unpack_from("<I", data, pos)[0] != 0xFFFFFFFF:
        raw_length, payload_length, raw_crc, _ = struct.unpack_from("<IIII", data, pos)
        stored = version >= 3 and data[pos + 16] == 0  # format 3: a method byte, 0 = stored raw
        pos += 20 + (version >= 3)
        payload = data[pos:pos + payload_length]
        block = payload if stored else decode_block(model, payload, raw_length, settings["chunk_size"], mixer_name)
        if zlib.crc32(block) != raw_crc:
            raise SystemExit(f"block {len(parts)} decodes to data failing its checksum")
        parts.append(block)
        pos += payload_length
    return b"".join(parts)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-4].strip(), file=sys.stderr)
        return 2
    archive, model_path, output = argv
    with open(archive, "rb") as f:
        data = decode_archive(f.read(), ReferenceModel(model_path))
    with open(output, "wb") as f:
        f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
