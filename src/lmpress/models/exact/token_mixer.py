"""Context mixing for LLMs, at the token level, in integer arithmetic.

An LLM codes tokens, so its mixer mixes over its vocabulary: beside the LLM's
exact logits, while coding a block,

* **token contexts** of the last 1, 2 and 3 tokens: counts of the token that
  followed, in slotted tables as ``cm/v3`` keeps its long byte contexts
  (``mixer._slot_row``, ``mixer._count_slots``): a vocabulary of 49,152 tokens
  leaves no room for dense rows, and a context is followed by few tokens;
* a **match model**: the most recent earlier occurrence of the last
  ``MATCH_MIN`` tokens in any row of the block, predicting the token that
  followed it, scored by the log-odds that such a prediction comes true
  (hits against misses per match length). Unlike ``cm/v3``'s match model it
  adds no odds against the other symbols: against 49,151 other tokens that
  prior (10.8 nats) overrode the LLM and cost 2.6% on 16 KB of XML.

Why tokens rather than bytes: the LLM's distribution is over tokens, and
spreading it onto bytes needs the probabilities of every token that starts with
each byte prefix at every byte (49,152-wide sums per byte, and the codec would
code bytes, not the LLM's tokens). At the token level the mixer adds scores to
the few tokens its models name and leaves the LLM's full distribution as it is
everywhere else; a token context of three tokens spans ~12 bytes of text.

The scores and the learning are ``cm/v3``'s (see ``mixer.py``): calibrated
log-probabilities per count bin, row-total bin and distinct tokens seen, a
geometric mixture with one weight vector per match length and contexts seen,
the gradient of the code length with a per-vector warm-up. The rows of a block
(its chunks, coded side by side) share the tables: a chunk sees what the others
coded before it, which the LLM's own context (one chunk) never does. Everything
is integer: the archive stays portable (DESIGN.md, contract 2).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from numba import njit

from lmpress.models.exact import mixer, ops
from lmpress.models.exact.mixer import (
    BINS,
    CALIBRATION_LIMIT,
    COUNT_LIMIT,
    LEARNING_SHIFT,
    LENGTH_BUCKETS,
    PROBABILITY_STEPS,
    WEIGHT_BITS,
    _bin,
    _count_slots,
    _length_bucket,
    _slot_row,
)

TOKEN_MIXER = "tm/v1"
ORDERS = (1, 2, 3)  # contexts of the last k tokens
SLOTS = mixer._SLOTS
SLOT_BITS = 18  # rows per order's slotted table
MATCH_MIN = 4  # tokens of context that start a match (~16 bytes of text)
MATCH_BITS = mixer.MATCH_BITS  # the table of mixer._find_matches, which finds token matches too
MATCH_VERIFY = mixer.MATCH_VERIFY
RATE = 512
WARMUP = 128
INITIAL_CONTEXT_WEIGHT = 1 << (WEIGHT_BITS - 4)


def digest() -> str:
    """SHA-256 of the token mixer's definition, part of an archive's arithmetic id."""
    definition = {"name": TOKEN_MIXER, "orders": ORDERS, "slots": SLOTS, "slot_bits": SLOT_BITS,
                  "match_min": MATCH_MIN, "match_bits": MATCH_BITS, "match_verify": MATCH_VERIFY, "rate": RATE,
                  "warmup": WARMUP, "initial_context_weight": INITIAL_CONTEXT_WEIGHT, "bins": BINS,
                  "count_limit": COUNT_LIMIT, "calibration_limit": CALIBRATION_LIMIT, "weight_bits": WEIGHT_BITS,
                  "learning_shift": LEARNING_SHIFT, "length_buckets": LENGTH_BUCKETS,
                  "probability_steps": PROBABILITY_STEPS, "distinct_buckets": [1, 2, 4],
                  "match_score": "ln(hits / misses)"}
    h = hashlib.sha256(json.dumps(definition, sort_keys=True).encode())
    h.update(mixer.count_scores().astype("<i8").tobytes())
    h.update(mixer.probability_scores().astype("<i8").tobytes())
    return h.hexdigest()


def mixed_id(network_digest: str) -> str:
    """The arithmetic id (SHA-256, hex) of an exact LLM mixed with the token mixer."""
    return hashlib.sha256((network_digest + digest()).encode()).hexdigest()


class TokenMixer:
    """Mixer state for one block, as ``mixer.ContextMixer``: ``begin``, then ``mix`` the LLM's logits and
    ``update`` with the coded tokens step by step; ``retain`` drops finished rows (their history stays)."""

    def __init__(self, total: int, logit_exp: np.ndarray, vocabulary: int) -> None:
        self.total, self.logit_exp, self.vocabulary = total, logit_exp, vocabulary
        self.scores = mixer.count_scores()
        self.probability_scores = mixer.probability_scores()
        self.count_bins = np.array([mixer._bin(c) for c in range(COUNT_LIMIT + 2)], dtype=np.int64)

    def begin(self, batch: int) -> None:
        n = len(ORDERS)
        shape = (n, 1 << SLOT_BITS)
        self.slot_checks = np.zeros(shape, dtype=np.int32)
        self.slot_totals = np.zeros(shape, dtype=np.int32)
        self.slot_tokens = np.zeros((*shape, SLOTS), dtype=np.int32)
        self.slot_counts = np.zeros((*shape, SLOTS), dtype=np.uint16)
        self.calibration = np.zeros((n, mixer._DISTINCT_BUCKETS * BINS, BINS, 2), dtype=np.int64)
        self.weights = np.zeros((LENGTH_BUCKETS * (n + 1), n + 2), dtype=np.int64)
        self.weights[:, 0] = self.weights[:, n + 1] = 1 << WEIGHT_BITS  # the LLM, the match model
        self.weights[:, 1:n + 1] = INITIAL_CONTEXT_WEIGHT
        self.updates = np.zeros(len(self.weights), dtype=np.int64)
        self.match_stats = np.zeros((LENGTH_BUCKETS, 2), dtype=np.int64)
        self.match_table = np.zeros(1 << MATCH_BITS, dtype=np.int64)
        self.history = np.zeros((batch, 1024), dtype=np.int32)
        self.steps = 0
        self.rows = np.arange(batch, dtype=np.int64)
        self.context_rows = np.zeros((batch, n), dtype=np.int64)
        self.row_scores = np.zeros((batch, n, BINS), dtype=np.int64)
        self.total_bins = np.zeros((batch, n), dtype=np.int64)
        self.match = np.zeros((batch, 4), dtype=np.int64)  # length, history row, next position, score
        self.sets = np.zeros(batch, dtype=np.int64)

    def mix(self, logits: np.ndarray) -> np.ndarray:
        """Coder weights (int64 [batch, vocabulary]) for the LLM's integer logits of this step."""
        self.network = np.ascontiguousarray(logits, dtype=np.int64)
        self.mixed = np.empty_like(self.network)
        _predict(self.network, self.history, self.steps, self.rows, self.slot_checks, self.slot_totals,
                 self.slot_tokens, self.slot_counts, self.scores, self.match, self.match_stats, self.weights,
                 self.sets, self.context_rows, self.calibration, self.probability_scores, self.row_scores,
                 self.total_bins, self.count_bins, self.mixed)
        self.coder_weights = ops.frequencies_from_logits(self.mixed, self.logit_exp, self.total)
        return self.coder_weights

    def update(self, symbols: np.ndarray) -> None:
        """Learn from the tokens just coded (one per batch row), then record them."""
        if self.steps == self.history.shape[1]:
            self.history = np.concatenate([self.history, np.zeros_like(self.history)], axis=1)
        _update(np.asarray(symbols, dtype=np.int64), self.network, self.coder_weights, self.total,
                self.vocabulary, self.history, self.steps, self.rows, self.slot_totals, self.slot_tokens,
                self.slot_counts, self.match, self.match_stats, self.weights, self.updates, self.sets,
                self.context_rows, self.calibration, self.row_scores, self.total_bins, self.count_bins)
        self.steps += 1
        mixer._find_matches(self.history, self.steps, self.rows, self.match, self.match_table, MATCH_MIN)

    def retain(self, rows: np.ndarray) -> None:
        for name in ("rows", "context_rows", "match", "sets", "network", "coder_weights", "row_scores",
                     "total_bins"):
            setattr(self, name, np.ascontiguousarray(getattr(self, name)[rows]))


@njit(cache=True, nogil=True)
def _context_hash(history, row, t, order, k):  # pragma: no cover - compiled
    """(table row, check) of the context of the ``order`` tokens before position t of a history row."""
    h = np.uint64(k + 1) * np.uint64(0x9E3779B97F4A7C15)
    for i in range(1, order + 1):
        token = np.uint64(history[row, t - i] + 1) if t >= i else np.uint64(0)
        h = (h ^ token) * np.uint64(0x100000001B3)
        h ^= h >> np.uint64(29)
    return np.int64(h >> np.uint64(64 - SLOT_BITS)), np.int64((h >> np.uint64(8)) & np.uint64(0xFFFF)) + 1


@njit(cache=True, nogil=True)
def _predict(network, history, t, rows, slot_checks, slot_totals, slot_tokens, slot_counts, scores, match,
             match_stats, weights, sets, context_rows, calibration, probability_scores, row_scores,
             total_bins, count_bins, mixed):  # pragma: no cover - compiled
    n_orders = len(ORDERS)
    for b in range(network.shape[0]):
        row = rows[b]
        seen = 0
        for k in range(n_orders):
            index, check = _context_hash(history, row, t, ORDERS[k], k)
            index = _slot_row(slot_checks[k], slot_totals[k], slot_counts[k], index, check)
            context_rows[b, k] = index
            n, distinct = np.int64(slot_totals[k, index]), 0
            for i in range(SLOTS):
                distinct += slot_counts[k, index, i] != 0
            if n > 0:
                seen += 1
            tb = _bin(n) + BINS * (0 if distinct <= 1 else 1 if distinct == 2 else 2 if distinct <= 4 else 3)
            total_bins[b, k] = tb
            for cb in range(BINS):
                hits, trials = calibration[k, tb, cb, 0], calibration[k, tb, cb, 1]
                row_scores[b, k, cb] = probability_scores[((2 * hits + 1) * PROBABILITY_STEPS) // (2 * trials + 2)]
        sets[b] = _length_bucket(match[b, 0]) * (n_orders + 1) + seen
        w = weights[sets[b]]
        out = mixed[b]
        for s in range(network.shape[1]):
            out[s] = w[0] * network[b, s]
        for k in range(n_orders):  # the tokens not in a slot would all add the same: the same odds without it
            wk, rs, index = w[1 + k], row_scores[b, k], context_rows[b, k]
            for i in range(SLOTS):
                c = slot_counts[k, index, i]
                if c != 0:
                    out[slot_tokens[k, index, i]] += wk * (rs[count_bins[c]] - rs[0])
        if match[b, 0] > 0:
            hits, misses = match_stats[_length_bucket(match[b, 0])]
            match[b, 3] = scores[hits] - scores[misses]  # the log-odds that it comes true
            out[history[match[b, 1], match[b, 2]]] += w[1 + n_orders] * match[b, 3]
        for s in range(network.shape[1]):
            out[s] >>= WEIGHT_BITS


@njit(cache=True, nogil=True)
def _update(symbols, network, coder_weights, total, vocabulary, history, t, rows, slot_totals, slot_tokens,
            slot_counts, match, match_stats, weights, updates, sets, context_rows, calibration, row_scores,
            total_bins, count_bins):  # pragma: no cover - compiled
    n_orders = len(ORDERS)
    grad = np.empty(2 + n_orders, dtype=np.int64)
    for b in range(symbols.shape[0]):
        x = symbols[b]
        row = rows[b]
        expect = np.int64(0)  # the gradient of -ln p(x): score_i(x) - E_p[score_i]
        for s in range(network.shape[1]):
            expect += (coder_weights[b, s] + 1) * network[b, s]
        grad[0] = network[b, x] - expect // total
        for k in range(n_orders):
            rs, index = row_scores[b, k], context_rows[b, k]
            expect, seen, count_x = np.int64(0), np.int64(0), 0
            for i in range(SLOTS):
                c = slot_counts[k, index, i]
                if c != 0:
                    s = slot_tokens[k, index, i]
                    if s == x:
                        count_x = c
                    p = coder_weights[b, s] + 1
                    expect += p * rs[count_bins[c]]
                    seen += p
            expect += (total - seen) * rs[0]
            grad[1 + k] = rs[count_bins[count_x]] - expect // total
        grad[1 + n_orders] = 0
        if match[b, 0] > 0:
            predicted = history[match[b, 1], match[b, 2]]
            p_predicted = coder_weights[b, predicted] + 1
            grad[1 + n_orders] = (match[b, 3] if predicted == x else 0) - (match[b, 3] * p_predicted) // total
            stats = match_stats[_length_bucket(match[b, 0])]
            stats[0 if predicted == x else 1] += 1
            if stats[0] + stats[1] > COUNT_LIMIT:
                stats[0] >>= 1
                stats[1] >>= 1
        v = sets[b]
        step = RATE + (3 * RATE * WARMUP) // (WARMUP + updates[v])
        updates[v] += 1
        w = weights[v]
        for i in range(2 + n_orders):
            w[i] += (grad[i] * step) >> LEARNING_SHIFT
        for k in range(n_orders):
            cal = calibration[k, total_bins[b, k]]
            index = context_rows[b, k]
            _count_slots(slot_tokens[k, index], slot_counts[k, index], slot_totals[k], index, x, cal, count_bins,
                         vocabulary)
            for cb in range(BINS):
                if cal[cb, 1] > CALIBRATION_LIMIT:
                    cal[cb, 0] >>= 1
                    cal[cb, 1] >>= 1
        history[row, t] = x
        if match[b, 0] > 0:
            if history[match[b, 1], match[b, 2]] == x:
                match[b, 0] += 1
                match[b, 2] += 1
            else:
                match[b, 0] = 0
