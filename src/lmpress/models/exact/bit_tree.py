"""The bit-tree stage of ``cm/v4``: the mixed byte distribution refined one binary decision at a time.

A byte is eight decisions down a binary tree (node 1 is the first bit, most significant first; node n's
children are 2n for a 0 and 2n + 1 for a 1; leaf 256 + b is byte b). The byte mixer's distribution gives
each node the probability p that its bit is 1. PAQ's secondary estimation then learns, per context, how
such probabilities come out in fact: three adaptive probability maps (APMs: 33 cells over stretch(p),
interpolated) in the contexts node + previous byte, node + two bytes (hashed), node + three bytes
(hashed), and a logistic mixer per node of stretch(p), the three maps' stretches and a bias, learning
after every bit. The refined node probabilities multiply back into a distribution over the 256 bytes
(log-probabilities summed down the tree), which the coder takes.

Everything is integers: probabilities at 12 bits (APM cells at 16), stretch and squash by tables made
with 40-digit ``decimal`` arithmetic, log-probabilities in 1/256 nats (the logits' fixed point), so
encoder and decoder agree on any CPU. Measured with text-800k, default settings, archives decoded and
compared: enwik5 0.2315 -> 0.2294, the last 256 KiB / 1 MiB of the held-out enwik8 head 0.2376 -> 0.2338 /
0.2235 -> 0.2212, at about a fifth less speed (README.md, "Mixer cm/v4"; what was tried: ``mixer.py``).
"""

from __future__ import annotations

import hashlib
import json
from decimal import Context, Decimal
from functools import cache

import numpy as np
from numba import njit

PROB_BITS = 12  # node probabilities: 1 .. 4095 out of 4096
STRETCH_LIMIT = 2047  # stretch(p) = ln(p / (1 - p)) in 1/256 nats, held within +-2047 (p within 1e-4 of 0 or 1)
CELL_SHIFT = 7  # an APM cell every 128 stretch steps: 33 cells cover -2048 .. 2048
CELLS = 33
APM_BITS = 16  # APM cells hold probabilities at 16 bits
# Each map's contexts come in blocks of the 256 nodes (a block per previous byte, or per hash of the previous
# two or three bytes): a byte's 255 nodes then read one block, in order, instead of 255 places in the table.
BLOCK_BITS = (8, 12, 12)
APM_COUNT_LIMIT = 127  # a cell learns at rate 1 / (n + 1.5) after n updates, down to 1 / 128.5
HASH_MULTIPLIER = 0x5BD1E995  # < 2**31: a 32-bit key times it stays within int64
MIX_INPUTS = 5  # stretch(p), the three maps, a bias
BIAS = 256
MIX_WEIGHT_BITS = 16
MIX_INITIAL = (1 << 15, 1 << 14, 1 << 14, 0, 0)  # 1/2 p, 1/4 each of the first two maps
MIX_SHIFT = 13  # w += x * err >> MIX_SHIFT (x in 1/256 nats, err at 12 bits)
# Nodes below which the byte mixer puts less than 2**-UNLIKELY_BITS of its mass keep its probability
# unrefined (and learn nothing): such a byte costs UNLIKELY_BITS bits or more either way, and a byte's
# likely nodes are a few dozen of its 255, so the stage reads and updates only those.
UNLIKELY_BITS = 12


def _table(values) -> np.ndarray:
    a = np.array(values, dtype=np.int64)
    a.flags.writeable = False
    return a


@cache
def stretch_table() -> np.ndarray:
    """stretch[p] = round(256 ln(p / (4096 - p))) within +-STRETCH_LIMIT, p = 0 .. 4095 (p = 0 as 1)."""
    ctx = Context(prec=40)
    one = 1 << PROB_BITS
    values = []
    for p in range(one):
        p = max(p, 1)
        v = int(ctx.multiply(256, ctx.ln(Decimal(p) / Decimal(one - p))).to_integral_value())
        values.append(min(max(v, -STRETCH_LIMIT), STRETCH_LIMIT))
    return _table(values)


@cache
def squash_table() -> np.ndarray:
    """squash[x + 2048] = round(4096 / (1 + e**(-x / 256))) within 1 .. 4095, x = -2048 .. 2047."""
    ctx = Context(prec=40)
    one = 1 << PROB_BITS
    values = []
    for x in range(-2048, 2048):
        v = ctx.divide(one, 1 + ctx.exp(Decimal(-x) / 256))
        values.append(min(max(int(v.to_integral_value()), 1), one - 1))
    return _table(values)


@cache
def log_table() -> np.ndarray:
    """log[q] = round(256 ln(q / 4096)), q = 1 .. 4096 (log[0] as log[1])."""
    ctx = Context(prec=40)
    one = 1 << PROB_BITS
    return _table([int(ctx.multiply(256, ctx.ln(Decimal(max(q, 1)) / one)).to_integral_value())
                   for q in range(one + 1)])


@cache
def rate_table() -> np.ndarray:
    """rate[n] = round(65536 / (n + 3/2)): an APM cell's step after n updates."""
    return _table([int((Decimal(65536) / (Decimal(n) + Decimal(3) / 2)).to_integral_value(rounding="ROUND_HALF_EVEN"))
                   for n in range(APM_COUNT_LIMIT + 1)])


def initial_map(block_bits: int) -> np.ndarray:
    """A map whose cells start at squash of their own centre (stretch -2048 + 128 j): the identity."""
    centres = squash_table()[np.minimum(np.arange(CELLS) << CELL_SHIFT, 4095)] << (APM_BITS - PROB_BITS)
    return np.tile(np.minimum(centres, (1 << APM_BITS) - 1).astype(np.uint16), 256 << block_bits)


@cache
def digest() -> str:
    """SHA-256 of the stage's definition: its constants and tables (part of cm/v4's digest)."""
    constants = {k: v for k, v in globals().items() if k.isupper() and isinstance(v, (int, tuple))}
    h = hashlib.sha256(json.dumps(constants, sort_keys=True).encode())
    for table in (stretch_table(), squash_table(), log_table(), rate_table()):
        h.update(table.astype("<i8").tobytes())
    h.update(b"maps: previous byte, hash of two, hash of three (blocks of 256 nodes); both cells learn")
    return h.hexdigest()


class BitTree:
    """The stage's state for one block (shared by the batch rows, updated in row order)."""

    def __init__(self, batch: int) -> None:
        self.maps = [initial_map(bits) for bits in BLOCK_BITS]  # uint16 [contexts * CELLS] each
        self.map_counts = [np.zeros(len(m), dtype=np.uint8) for m in self.maps]
        self.mix_weights = np.tile(np.array(MIX_INITIAL, dtype=np.int64), (256, 1))  # per node
        # per row and node, what the prediction used (for the update on the coded byte's path)
        self.inputs = np.zeros((batch, 256, MIX_INPUTS), dtype=np.int64)
        self.cells = np.zeros((batch, 256, 3, 2), dtype=np.int64)  # per map: first cell, interpolation weight
        self.node_p = np.zeros((batch, 256), dtype=np.int64)
        self.stretch, self.squash, self.log, self.rates = stretch_table(), squash_table(), log_table(), rate_table()

    def refine(self, weights: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """Log-probabilities (int64 [batch, 256], 1/256 nats) refined from the byte mixer's coder weights
        (frequencies minus one) given each row's previous three bytes (int64 [batch, 3], most recent first)."""
        logits = np.empty(weights.shape, dtype=np.int64)
        _refine(weights, previous, *self.maps, self.mix_weights, self.inputs, self.cells, self.node_p, self.stretch,
                self.squash, self.log, logits)
        return logits

    def update(self, symbols: np.ndarray) -> None:
        _learn(symbols, *self.maps, *self.map_counts, self.mix_weights, self.inputs, self.cells, self.node_p,
               self.rates)

    def retain(self, rows: np.ndarray) -> None:
        for name in ("inputs", "cells", "node_p"):
            setattr(self, name, np.ascontiguousarray(getattr(self, name)[rows]))


@njit(cache=True, nogil=True)
def _map(table, k, context, x, cells, r, node):  # pragma: no cover - compiled
    """A map's interpolated probability (12 bits) for stretch x in ``context``; records its cells."""
    position = x + 2048
    f = position & ((1 << CELL_SHIFT) - 1)
    base = context * CELLS + (position >> CELL_SHIFT)
    a = (np.int64(table[base]) * ((1 << CELL_SHIFT) - f) + np.int64(table[base + 1]) * f) >> CELL_SHIFT
    cells[r, node, k, 0] = base
    cells[r, node, k, 1] = f
    return min(max(a >> (APM_BITS - PROB_BITS), 1), (1 << PROB_BITS) - 1)


@njit(cache=True, nogil=True)
def _refine(weights, previous, map0, map1, map2, mix_weights, inputs, cells, node_p, stretch, squash, log,
            logits):  # pragma: no cover - compiled
    sums = np.empty(512, dtype=np.int64)
    scores = np.empty(512, dtype=np.int64)
    for r in range(weights.shape[0]):
        for b in range(256):
            sums[256 + b] = weights[r, b] + 1
        for n in range(255, 0, -1):
            sums[n] = sums[2 * n] + sums[2 * n + 1]
        c1, c2, c3 = previous[r, 0], previous[r, 1], previous[r, 2]
        key = c1 | (c2 << 8)
        block0 = c1 << 8
        block1 = (((key * HASH_MULTIPLIER) >> 16) & ((1 << BLOCK_BITS[1]) - 1)) << 8
        block2 = ((((key | (c3 << 16)) * HASH_MULTIPLIER) >> 20) & ((1 << BLOCK_BITS[2]) - 1)) << 8
        scores[1] = 0
        for n in range(1, 256):
            p = (sums[2 * n + 1] * (1 << PROB_BITS) + sums[n] // 2) // sums[n]
            p = min(max(p, 1), (1 << PROB_BITS) - 1)
            if (sums[n] << UNLIKELY_BITS) < sums[1]:
                node_p[r, n] = -p  # (negative: not refined)
                scores[2 * n] = scores[n] + log[(1 << PROB_BITS) - p]
                scores[2 * n + 1] = scores[n] + log[p]
                continue
            x0 = stretch[p]
            x1 = stretch[_map(map0, 0, block0 | n, x0, cells, r, n)]
            x2 = stretch[_map(map1, 1, block1 | n, x0, cells, r, n)]
            x3 = stretch[_map(map2, 2, block2 | n, x0, cells, r, n)]
            w = mix_weights[n]
            dot = (w[0] * x0 + w[1] * x1 + w[2] * x2 + w[3] * x3 + w[4] * BIAS) >> MIX_WEIGHT_BITS
            q = squash[min(max(dot, -2048), 2047) + 2048]
            inputs[r, n, 0], inputs[r, n, 1], inputs[r, n, 2], inputs[r, n, 3] = x0, x1, x2, x3
            inputs[r, n, 4] = BIAS
            node_p[r, n] = q
            scores[2 * n] = scores[n] + log[(1 << PROB_BITS) - q]
            scores[2 * n + 1] = scores[n] + log[q]
        for b in range(256):
            logits[r, b] = scores[256 + b]


@njit(cache=True, nogil=True)
def _learn_cell(table, counts, c, bit, weight, rates):  # pragma: no cover - compiled
    """Move a cell toward the bit by its rate times ``weight`` (of 128: its share in the interpolation)."""
    count = counts[c]
    v = np.int64(table[c])
    table[c] = v + (((((bit << APM_BITS) - bit - v) * rates[count]) >> 16) * weight >> CELL_SHIFT)
    if count < APM_COUNT_LIMIT:
        counts[c] = count + 1


@njit(cache=True, nogil=True)
def _learn_map(table, counts, c, f, bit, rates):  # pragma: no cover - compiled
    """Both cells of an interpolation learn, each by its share of it."""
    _learn_cell(table, counts, c, bit, (1 << CELL_SHIFT) - f, rates)
    _learn_cell(table, counts, c + 1, bit, f, rates)


@njit(cache=True, nogil=True)
def _learn(symbols, map0, map1, map2, counts0, counts1, counts2, mix_weights, inputs, cells, node_p,
           rates):  # pragma: no cover - compiled
    for r in range(symbols.shape[0]):
        x = symbols[r]
        for level in range(8):
            n = (256 + x) >> (8 - level)
            bit = (x >> (7 - level)) & 1
            if node_p[r, n] < 0:
                break  # (every node below is unlikely too)
            err = (bit << PROB_BITS) - node_p[r, n]
            for i in range(MIX_INPUTS):
                mix_weights[n, i] += (inputs[r, n, i] * err) >> MIX_SHIFT
            _learn_map(map0, counts0, cells[r, n, 0, 0], cells[r, n, 0, 1], bit, rates)
            _learn_map(map1, counts1, cells[r, n, 1, 0], cells[r, n, 1, 1], bit, rates)
            _learn_map(map2, counts2, cells[r, n, 2, 0], cells[r, n, 2, 1], bit, rates)
