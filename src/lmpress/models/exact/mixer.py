"""Context mixing in integer arithmetic: the network's prediction mixed with long-range byte models.

The network sees 512 bytes; a file repeats itself over far longer distances
(XML tags, names, boilerplate). Beside the network, while coding a block:

* **order-k context models** (k = 1, 2, 3, 4, 5, 6, 8, the word being
  written and, in ``cm/v3``, that word with the one before): for the last k
  bytes, counts of the byte that followed (order 1 and 2 indexed directly, the
  others by a hash with a 16-bit check, in ``cm/v3`` into slotted rows of 16
  (byte, count) pairs; counts halve at ``COUNT_LIMIT`` so they adapt);
* a **match model**: the most recent earlier occurrence of the last
  ``MATCH_MIN`` bytes, predicting the byte that followed it; how often such
  predictions came true, counted per match-length bucket, sets its confidence.

Every model gives each of the 256 bytes an integer log-score in 1/256 nats: the
network its logits; a context model the log of a calibrated probability (how
often, in this order, a byte with that count in a context with that many
counts came next: hits over trials per count bin and total bin, in ``cm/v3``
also by the number of different bytes seen, learned while coding); the match
model ``256 ln(255 hits / misses)`` on its predicted byte. The mixer adds them with learned
weights, a geometric mixture: ``logit(s) = sum_i w_i score_i(s)``, turned into
the coder's frequencies like the network's own logits. After each byte the
weights follow the gradient of its code length, ``w_i += lr (score_i(x) -
E_p[score_i])``, with one weight vector per match-length bucket and number of
contexts seen before (``cm/v2`` and later: plus one by the previous byte and one by the two before).
``cm/v4`` is the default for text and other files: cm/v3's mix refined bit by bit (``bit_tree.py``); the
notes beside ``TEXT_MIXER`` say what each variant added and what it measured.
Scores that are the same for every byte (an unseen context) change nothing.

All rows of a block share the tables and weights, and all of them see what the
others coded so far (a match may point into another row): the block is one
file cut into segments coded side by side. Updates run in row order after each
step, the same on both sides; everything is integer, so the result is the
same on any CPU (DESIGN.md, contract 2).
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Context, Decimal
from functools import cache

import numpy as np
from numba import njit

from lmpress.models.exact import bit_tree, ops

MIXER = "cm/v1"
WORD = 0  # the context of the word being written (its letters and the byte before them)
ORDERS = (1, 2, 3, 4, 5, 6, 8, WORD)  # byte contexts of these lengths, and the word
TABLE_BITS = 16  # rows per context table (order 1 uses 256 of them, order 2 all, higher orders hash)
COUNT_LIMIT = 1000  # a row's counts halve when one passes this
MATCH_MIN = 6  # bytes of context that start a match
MATCH_BITS = 18  # match hash table entries
LN_255 = 1419  # round(256 ln 255): the match score's odds are against each of the 255 other bytes
MATCH_VERIFY = 32  # a candidate's length is checked back over at most this many bytes
WEIGHT_BITS = 16
INITIAL_CONTEXT_WEIGHT = 1 << (WEIGHT_BITS - 4)  # 1/16 each for the context models at the start
LEARNING_RATE = 1024  # w += (g * LEARNING_RATE) >> LEARNING_SHIFT, g in 1/256 nats (tuned on held-out XML)
LEARNING_SHIFT = 10
LENGTH_BUCKETS = 8  # weight vectors by match length (0, 1, 2-3, 4-7, ..., >= 64) x contexts seen (0 .. orders)


# The image variant (``cm/v1-image``, for the image front end's stripes): the same mixer with contexts
# made of the pixels around the one being coded instead of the longer byte orders. Image contexts have
# negative codes; a stripe row is _STRIPE bytes (lmpress.formats.layout.STRIPE). These names are
# lower-level (leading underscore) so that cm/v1's digest, over the upper-case constants, stays the same.
_IMAGE_NW, _IMAGE_GRADIENT, _IMAGE_NEIGHBOURS, _IMAGE_VERTICAL, _IMAGE_HORIZONTAL, _IMAGE_ACTIVITY = range(-1, -7, -1)
_STRIPE = 64
_IMAGE_ORDERS = (1, 2, _IMAGE_NW, _IMAGE_GRADIENT, _IMAGE_NEIGHBOURS, _IMAGE_VERTICAL, _IMAGE_HORIZONTAL,
                 _IMAGE_ACTIVITY)
IMAGE_MIXER_V1 = f"{MIXER}-image"
# The colour variant (``cm/v1-colour``, images of several planes): the image contexts plus two made of the
# same pixel's neighbourhood in the plane before (``plane`` bytes back in the batch row, see
# lmpress.formats.layout): how far that plane's gradient prediction missed, and where its local
# differences carried onto this plane's neighbours would land.
_PLANE_ERROR, _PLANE_SHAPE = -7, -8
_COLOUR_ORDERS = (*_IMAGE_ORDERS, _PLANE_ERROR, _PLANE_SHAPE)
COLOUR_MIXER_V1 = f"{MIXER}-colour"
# The second image variants (``cm/v1-image2``, ``cm/v1-colour2``) add pixel predictors scored like the audio
# predictors (below): JPEG-LS's median edge detector (MED), an NLMS filter over the causal neighbours'
# differences from MED (W, N, NW, NE, WW, NN, NWW, NNE), and for a colour plane the plane before's local
# differences carried over (MED + U - MED(U's neighbours), W + U - UW, N + U - UN). A predictor's error size is
# learned per neighbourhood activity (CALIC's error energy: busy regions miss by more), and the mixer's weight
# vectors are chosen by that activity alone instead of the match length and contexts seen (photographs have no
# long matches; 16 vectors learn faster than 16 x 9, which lost on small images). Measured by replaying
# recorded network logits (benchmarks/mixer_replay.py): kodim05 as PGM 0.6048 -> 0.5928, 384 x 256 colour
# crops of kodim03 0.3216 -> 0.3128 and kodim20 0.2936 -> 0.2872, a 128 x 128 colour crop 0.3890 -> 0.3828.
# (The first variants stay for the archives made with them.)
IMAGE_MIXER = f"{MIXER}-image2"
COLOUR_MIXER = f"{MIXER}-colour2"
_MED, _PIXEL_LMS, _PLANE_MED, _PLANE_W, _PLANE_N = range(5)  # pixel predictors
_PIXEL = {IMAGE_MIXER: (_MED, _PIXEL_LMS), COLOUR_MIXER: (_MED, _PIXEL_LMS, _PLANE_MED, _PLANE_W, _PLANE_N)}
_PIXEL_TAPS = 8  # the NLMS filter's inputs: the neighbours W, N, NW, NE, WW, NN, NWW, NNE less MED
_PIXEL_STEP = 12  # log2 of its step size at the weights' scale (2**16): steps of 2**-4
_PIXEL_ERROR_MIN = 8  # error sizes (1/16 of a level) stay at half a level or more
_ACTIVITY_BUCKETS = 16  # log2 of the neighbourhood activity, capped
# The audio variants (for the audio front end's 16-bit little-endian streams): orders 1 and 2 and, instead of
# the longer orders, predictors of the next sample: FLAC's fixed polynomials of orders 1 to 3 and normalized
# LMS filters that adapt after each sample, in integers (weights at 2**-16, steps of e x / (|x|^2 + 1) at
# 2**(shift - 16)). Each scores a byte by the Laplace log-density of the sample it would make, -|e| / b in
# 1/256 nats with b the mean size of that predictor's recent errors: for a low byte the distance to the
# prediction's low byte (round the circle), for a high byte the whole sample's (its low byte known).
# ``cm/v1-audio`` (kept so that its archives decode) has one filter over the samples themselves.
# ``cm/v1-audio2`` filters the residuals of the fixed polynomials of orders 1, 2 and 3 (the samples' own
# strong correlation makes LMS on them converge slowly: measured 9% larger on 44.1 kHz speech), mixes low and
# high bytes with weights of their own, and has a lattice model: where the last _LATTICE_RUN samples were all
# multiples of 2^z ("wasted bits", as FLAC detects them), low bytes off that lattice score -penalty.
_AUDIO_ORDERS = (1, 2)
_FIXED_PREDICTORS = 3
_LMS_TAPS = 16
_LMS_STEP = 14  # log2 of the step size at the weights' scale (2**16): steps of 2**-2
_LMS_LIMIT = 1 << 24  # weights stay within +-256 (sums far inside int64 whatever the input)
_AUDIO_FLOOR = -8192  # the lowest score (32 nats)
_LATTICE_RUN = 32  # samples on a lattice before the lattice model trusts it
AUDIO_MIXER_V1 = f"{MIXER}-audio"
AUDIO_MIXER = f"{MIXER}-audio2"
# per audio variant: LMS filters (taps, step shift, residual order they filter), lattice penalty (0: none),
# whether low and high bytes have weight vectors of their own
_AUDIO = {AUDIO_MIXER_V1: (((_LMS_TAPS, _LMS_STEP, 0),), 0, False),
          AUDIO_MIXER: (((16, 14, 1), (16, 14, 2), (16, 14, 3)), 2048, True)}
# The second text variant (``cm/v2``, the default after cm/v1): beside the weight vector chosen by match
# length and contexts seen, one chosen by the previous byte and one by the two previous bytes, all three added
# (how far to trust the word model after a letter, the long orders after a tag ...); the byte vectors start at
# zero and learn at 1/2**_BYTE_WEIGHT_SHIFT of the rate. Replayed on the same network logits
# (benchmarks/mixer_replay.py, text-800k), the last 256 KiB of the held-out enwik8 head / enwik5: cm/v1 0.2488 /
# 0.2355; the previous byte's vector alone 0.2456 / 0.2340 (at the full rate 0.2473 / 0.2355, 1/2 0.2459, 1/8
# 0.2458); the two bytes' alone 0.2439 / 0.2331; both 0.2431 / 0.2327 (rate 1/2: 0.2433, 1/8: 0.2438); halving
# cm/v1's own rate instead 0.2485 / 0.2362. Archives of cm/v1 still decode.
TEXT_MIXER_V2 = "cm/v2"
_BYTE_WEIGHT_SHIFT = 2
_BYTE_VECTORS = 256 + 65536  # by the previous byte, then by the two previous bytes
# The third text variant (``cm/v3``, the default after cm/v2). A file of a megabyte has far more order-3+ contexts
# than cm/v2's 65536 rows of 256 counts, so long contexts kept evicting each other. cm/v3 keeps the contexts of
# order 3 and up in *slotted* tables: 2**_SLOT_BITS rows of _SLOTS (byte, count) pairs (most long contexts are
# followed by a few bytes; a new byte takes the slot of the smallest count), a context in either row of a pair
# (index, index ^ 1), else it takes the one with fewer counts. Eight times the rows in less memory (28 MB per order
# against 32 MB), and the bytes never seen in a context (most of them) cost nothing: adding the same score to every
# byte changes no probability. Beside that: a context of the current word and the word before it (letters
# lower-cased); the calibration cells split by how many different bytes followed the context (1, 2, 3-4, 5+: a
# context always followed by one byte is surer than one of many with the same counts); the learning rate 512 and,
# per weight vector, four times that at first (rate + 3 rate _RATE_WARMUP / (_RATE_WARMUP + updates)). Replayed on
# the same text-800k logits (benchmarks/mixer_replay.py): the last 1 MB / 256 KiB of the held-out enwik8 head,
# enwik5, calgary book1, calgary news (the last two in text-800k's training split): cm/v2 0.2336 / 0.2431 / 0.2327 /
# 0.2680 / -; bigger hashed tables (dense, 2**18 rows) 0.2311 / 0.2417 / 0.2319; + the word pair 0.2301 / 0.2405 /
# 0.2316; slotted tables instead 0.2266 / 0.2385 / 0.2302; + distinct-byte cells 0.2258 / 0.2379 / 0.2295 / - /
# 0.2538; rate 512 0.2241 / 0.2371 / 0.2292 / 0.2574 / 0.2524; + the warm-up 0.2239 / 0.2364 / 0.2278 / 0.2571 /
# 0.2519; matches from 12 bytes of context instead of 6 (the order-8 context covers short repeats) 0.2235 / 0.2357 /
# 0.2266 / 0.2567 / 0.2513 (8: 0.2237 / 0.2361 / 0.2269; 16: 0.2237 / 0.2357 / 0.2262; 24: 0.2243 / 0.2364 /
# 0.2263). Tried and left: orders 7, 12, 16 beside these (0.2272, 0.2263, 0.2280), 32 slots (0.2260, twice the
# memory), 4 ways (0.2267), decaying the other counts of a context when a byte is seen (0.2257-0.2261), the byte
# vectors' rate 1/2 or 1/8 (no gain), a run model per slotted context (the byte that followed it last, trusted by
# how many times in a row: 0.2253 on the megabyte, worse), leaving order 5 out (0.2249), a secondary estimation of
# the most likely byte's probability by the two previous bytes (0.2262 / 0.2354 on enwik5 / 256 KiB against 0.2266 /
# 0.2357: too little for its state), weight vectors by the network's confidence (its two best logits' margin; no
# gain), halving slotted counts at 60 or 250 (no change).
TEXT_MIXER_V3 = "cm/v3"
# The fourth text variant (``cm/v4``): cm/v3, then its distribution refined bit by bit (``bit_tree.py``: three
# adaptive probability maps per tree node, by the previous one, two and three bytes, and a mixer per node).
# Whole files with text-800k, archives decoded and compared: enwik5 and the last 256 KiB / 1 MiB of the held-out
# enwik8 head, README.md ("Mixer cm/v4"). Tried on the way (replays of enwik5, mixer_replay.py): maps of 2**16 hashed
# contexts without blocks -0.68% (and slow: a byte's 255 nodes read 765 places), blocks of 2**8 contexts for the
# hashed maps -0.75%, 2**12 -0.92%; updating both interpolated cells instead of the nearer one: -0.92% against
# -0.68%; leaving unlikely nodes (below 2**-12 of the mass) unrefined: the same rate, a quarter less time.
TEXT_MIXER = "cm/v4"
DEFAULT_MIXER = TEXT_MIXER  # what byte files are mixed with unless a front end names its own
_WORD_PAIR = 100  # cm/v3's context of the current word and the word before it
_TEXT_ORDERS = (1, 2, 3, 4, 5, 6, 8, WORD, _WORD_PAIR)
_BYTE_WEIGHTS = (TEXT_MIXER_V2, TEXT_MIXER_V3, TEXT_MIXER)
_SLOTTED = (TEXT_MIXER_V3, TEXT_MIXER)  # variants whose orders after 1 and 2 live in slotted tables
_BIT_TREE = (TEXT_MIXER,)  # variants refined by the bit-tree stage
_SLOTS = 16
_SLOT_BITS = 19
_DISTINCT_BUCKETS = 4  # 1, 2, 3-4, 5+ different bytes seen after a context (0 counts as 1)
_SLOTTED_RATE = 512
_RATE_WARMUP = 128
_SLOTTED_MATCH_MIN = 12  # the order-8 context covers shorter repeats
VARIANTS = {MIXER: ORDERS, TEXT_MIXER_V2: ORDERS, TEXT_MIXER_V3: _TEXT_ORDERS, TEXT_MIXER: _TEXT_ORDERS,
            IMAGE_MIXER_V1: _IMAGE_ORDERS, COLOUR_MIXER_V1: _COLOUR_ORDERS,
            IMAGE_MIXER: _IMAGE_ORDERS, COLOUR_MIXER: _COLOUR_ORDERS,
            AUDIO_MIXER_V1: _AUDIO_ORDERS, AUDIO_MIXER: _AUDIO_ORDERS}  # mixer name -> its contexts


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@cache
def count_scores() -> np.ndarray:
    """round(256 * ln(c + 1/2)) for c = 0 .. COUNT_LIMIT + 1, by 40-digit ``decimal`` (no libm)."""
    ctx = Context(prec=40)
    half = Decimal(1) / 2
    return _read_only(np.array([int((ctx.multiply(256, ctx.ln(Decimal(c) + half))).to_integral_value())
                                for c in range(COUNT_LIMIT + 2)], dtype=np.int64))


BINS = 16  # counts and row totals in bins: 0..7 exactly, then by powers of two
PROBABILITY_STEPS = 4096
CALIBRATION_LIMIT = 1 << 16  # trials per cell before its counts halve


@cache
def probability_scores() -> np.ndarray:
    """round(256 * ln((i + 1/2) / PROBABILITY_STEPS)) for i < PROBABILITY_STEPS, by ``decimal``."""
    ctx = Context(prec=40)
    steps = Decimal(PROBABILITY_STEPS)
    return _read_only(np.array(
        [int(ctx.multiply(256, ctx.ln((Decimal(i) + Decimal(1) / 2) / steps)).to_integral_value())
         for i in range(PROBABILITY_STEPS)], dtype=np.int64))


@cache
def digest(variant: str = MIXER) -> str:
    """SHA-256 of a mixer's definition (its constants and tables), part of an archive's arithmetic id."""
    constants = {k: v for k, v in globals().items() if k.isupper() and isinstance(v, (int, str, tuple))
                 and not k.startswith("_") and not re.search(r"_MIXER(_V\d+)?$", k)}  # names change, not the mixer
    h = hashlib.sha256(json.dumps(constants, sort_keys=True).encode())
    h.update(count_scores().astype("<i8").tobytes())
    h.update(probability_scores().astype("<i8").tobytes())
    if variant != MIXER:
        h.update(json.dumps({"variant": variant, "orders": VARIANTS[variant], "stripe": _STRIPE}).encode())
    if variant in _BYTE_WEIGHTS:
        h.update(json.dumps({"byte_weights": [256, 65536], "byte_weight_shift": _BYTE_WEIGHT_SHIFT}).encode())
    if variant in _SLOTTED:
        h.update(json.dumps({"slots": _SLOTS, "slot_bits": _SLOT_BITS, "ways": 2, "dense_orders": [1, 2],
                             "distinct_buckets": [1, 2, 4], "rate": _SLOTTED_RATE, "warmup": _RATE_WARMUP,
                             "word_pair": "lower-cased letters of two words",
                             "match_min": _SLOTTED_MATCH_MIN}).encode())
    if variant in _BIT_TREE:
        h.update(bit_tree.digest().encode())
    if variant == AUDIO_MIXER_V1:
        h.update(json.dumps({"predictors": _FIXED_PREDICTORS + 1, "floor": _AUDIO_FLOOR, "taps": _LMS_TAPS,
                             "step": _LMS_STEP, "limit": _LMS_LIMIT}).encode())
    elif variant in _AUDIO:
        filters, lattice, parity = _AUDIO[variant]
        h.update(json.dumps({"fixed": _FIXED_PREDICTORS, "filters": filters, "lattice": lattice,
                             "lattice_run": _LATTICE_RUN, "byte_sets": parity, "floor": _AUDIO_FLOOR,
                             "limit": _LMS_LIMIT}).encode())
    elif variant in _PIXEL:
        h.update(json.dumps({"pixel_predictors": _PIXEL[variant], "taps": _PIXEL_TAPS, "step": _PIXEL_STEP,
                             "error_min": _PIXEL_ERROR_MIN, "activity_buckets": _ACTIVITY_BUCKETS,
                             "weight_sets": "activity",
                             "floor": _AUDIO_FLOOR, "limit": _LMS_LIMIT}).encode())
    return h.hexdigest()


def mixed_id(network_digest: str, variant: str = MIXER) -> str:
    """The arithmetic id (SHA-256, hex) of an exact network mixed with a mixer: what archives record."""
    return hashlib.sha256((network_digest + digest(variant)).encode()).hexdigest()


class ContextMixer:
    """Mixer state for one block: ``begin`` a batch, then ``mix`` network logits and ``update`` with the
    coded bytes, step by step; ``retain`` drops finished rows (their history stays for matches).

    ``orders`` and ``match`` leave components out, for the ablation (``benchmarks/mixing_ablation.py``);
    archives always use a named mixer's whole definition (``VARIANTS``)."""

    def __init__(self, total: int, logit_exp: np.ndarray, orders: tuple[int, ...] = ORDERS,
                 match: bool = True, name: str = DEFAULT_MIXER, plane: int = 0) -> None:
        self.name = name
        self.plane = plane  # bytes back to the same pixel in the plane before (colour contexts; 0: none)
        filters, self.lattice, self.byte_sets = _AUDIO.get(name, ((), 0, False))
        self.filters = np.array(filters, dtype=np.int64).reshape(-1, 3)  # taps, step shift, residual order
        # sample predictors: the fixed ones, the filters, and the lattice model's slot (scores only)
        self.predictors = (_FIXED_PREDICTORS + len(filters) + (self.lattice > 0)) if filters else 0
        self.pixel = np.array(_PIXEL.get(name, ()), dtype=np.int64)  # pixel predictors (image variants)
        if len(self.pixel):
            self.predictors = len(self.pixel)
        self.total = total
        self.logit_exp = logit_exp
        self.scores = count_scores()
        self.probability_scores = probability_scores()
        self.count_bins = np.array([_bin(c) for c in range(COUNT_LIMIT + 2)], dtype=np.int64)  # bin of a count
        self.orders = np.array(orders, dtype=np.int64)
        self.use_match = match

    def begin(self, batch: int) -> None:
        n = len(self.orders)
        slotted = self.name in _SLOTTED
        # the orders kept as 256 counts per row (all of them, or cm/v3's orders 1 and 2, which come first)
        dense = sum(1 for order in self.orders if order in (1, 2)) if slotted else n
        if slotted and not all(order in (1, 2) for order in self.orders[:dense]):
            raise ValueError("a slotted mixer's orders 1 and 2 come first")
        self.counts = np.zeros((dense, 1 << TABLE_BITS, 256), dtype=np.uint16)
        self.checks = np.zeros((dense, 1 << TABLE_BITS), dtype=np.int64)
        # the other orders' slotted tables: per row, its check, its total count and _SLOTS (byte, count)
        shape = (n - dense, 1 << _SLOT_BITS) if slotted else (0, 2)
        self.slot_checks = np.zeros(shape, dtype=np.int32)
        self.slot_totals = np.zeros(shape, dtype=np.int32)
        self.slot_bytes = np.zeros((*shape, _SLOTS), dtype=np.uint8)
        self.slot_counts = np.zeros((*shape, _SLOTS), dtype=np.uint16)
        self.hash_bits = _SLOT_BITS if slotted else TABLE_BITS
        self.distinct_cells = slotted
        self.rate, self.warmup = (_SLOTTED_RATE, _RATE_WARMUP) if slotted else (LEARNING_RATE, 0)
        self.match_min = _SLOTTED_MATCH_MIN if slotted else MATCH_MIN
        # per order, row-total bin (by distinct bytes seen, cm/v3) and count bin: how often a byte with that
        # count came next (hits, trials)
        self.calibration = np.zeros((n, _DISTINCT_BUCKETS * BINS, BINS, 2), dtype=np.int64)
        self.row_scores = np.zeros((batch, n, BINS), dtype=np.int64)
        self.total_bins = np.zeros((batch, n), dtype=np.int64)
        sets = _ACTIVITY_BUCKETS if len(self.pixel) else LENGTH_BUCKETS * (n + 1) * (2 if self.byte_sets else 1)
        self.weights = np.zeros((sets, n + 2 + self.predictors), dtype=np.int64)
        self.weights[:, 0] = 1 << WEIGHT_BITS  # the network alone, until the others earn their weight
        self.weights[:, 1:n + 1] = INITIAL_CONTEXT_WEIGHT
        self.weights[:, n + 1] = 1 << WEIGHT_BITS  # and the match model, whose score is calibrated by its hits
        self.weights[:, n + 2:] = 1 << (WEIGHT_BITS - 3)  # the sample predictors, 1/8 each at the start
        self.byte_base = -1  # cm/v2: the row of ``weights`` where the vectors by the previous bytes start
        if self.name in _BYTE_WEIGHTS:  # (zero at the start: cm/v1's mix)
            self.byte_base = sets
            self.weights = np.concatenate([self.weights, np.zeros((_BYTE_VECTORS, self.weights.shape[1]), np.int64)])
        self.updates = np.zeros(len(self.weights), dtype=np.int64)  # per weight vector (cm/v3's warm-up)
        # per batch row and sample predictor: its prediction, the mean size of its errors (1/16), byte scores
        self.predictions = np.zeros((batch, self.predictors), dtype=np.int64)
        self.error_sizes = np.full((batch, self.predictors), 256 << 4, dtype=np.int64)
        self.predictor_scores = np.zeros((batch, self.predictors, 256), dtype=np.int64)
        self.lms = np.zeros((batch, self.filters[:, 0].sum()), dtype=np.int64)  # LMS filter weights, one after another
        self.lattice_runs = np.zeros((batch, 8), dtype=np.int64)  # samples in a row that were multiples of 2, 4, ...
        # pixel predictors: error sizes (1/16 of a level) per predictor and activity, shared by the rows; per row
        # the NLMS weights, its inputs and prediction (the last entry); a pixel's activity bucket is its weight set
        self.pixel_sizes = np.full((len(self.pixel), _ACTIVITY_BUCKETS), 8 << 4, dtype=np.int64)
        self.pixel_lms = np.zeros((batch, _PIXEL_TAPS), dtype=np.int64)
        self.pixel_inputs = np.zeros((batch, _PIXEL_TAPS + 1), dtype=np.int64)
        self.match_stats = np.zeros((LENGTH_BUCKETS, 2), dtype=np.int64)  # hits, misses per match length
        self.match_table = np.zeros(1 << MATCH_BITS, dtype=np.int64)  # row << 32 | next position, + 1
        self.history = np.zeros((batch, 4096), dtype=np.uint8)
        self.steps = 0
        self.rows = np.arange(batch, dtype=np.int64)  # the history row of each batch row
        self.context_rows = np.zeros((batch, n), dtype=np.int64)
        self.match = np.zeros((batch, 4), dtype=np.int64)  # length, history row, next position, score
        self.sets = np.zeros(batch, dtype=np.int64)  # the weight vector each row mixed with
        self.network = np.zeros((batch, 256), dtype=np.int64)
        self.mixed = np.zeros((batch, 256), dtype=np.int64)
        self.bit_tree = bit_tree.BitTree(batch) if self.name in _BIT_TREE else None

    def mix(self, logits: np.ndarray) -> np.ndarray:
        """Coder weights (int64 [batch, 256]) for the network's integer logits of this step."""
        self.network[:] = logits
        _predict(self.network, self.history, self.steps, self.plane, self.rows, self.orders, self.counts,
                 self.checks, self.slot_checks, self.slot_totals, self.slot_bytes, self.slot_counts, self.hash_bits,
                 self.distinct_cells, self.scores, self.match, self.match_stats, self.weights, self.sets,
                 self.context_rows, self.calibration, self.probability_scores, self.row_scores, self.total_bins,
                 self.count_bins, self.predictions, self.error_sizes, self.predictor_scores, self.lms, self.filters,
                 self.lattice, self.lattice_runs, self.byte_sets, self.pixel, self.pixel_sizes, self.pixel_lms,
                 self.pixel_inputs, self.byte_base, self.mixed)
        self.coder_weights = ops.frequencies_from_logits(self.mixed, self.logit_exp, self.total)
        if self.bit_tree is None:
            return self.coder_weights
        # the byte mixer learns from its own distribution (``coder_weights``); the coder takes the refined one
        refined = self.bit_tree.refine(self.coder_weights, self._previous_bytes())
        return ops.frequencies_from_logits(refined, self.logit_exp, self.total)

    def _previous_bytes(self) -> np.ndarray:
        """Each row's last three bytes, most recent first (0 before its segment's start)."""
        previous = np.zeros((len(self.rows), 3), dtype=np.int64)
        for back in range(1, min(self.steps, 3) + 1):
            previous[:, back - 1] = self.history[self.rows, self.steps - back]
        return previous

    def update(self, symbols: np.ndarray) -> None:
        """Learn from the bytes just coded (int64, one per batch row), then record them."""
        if self.steps == self.history.shape[1]:
            self.history = np.concatenate([self.history, np.zeros_like(self.history)], axis=1)
        _update(symbols, self.network, self.coder_weights, self.total, self.history,
                self.steps, self.rows, self.counts, self.slot_totals, self.slot_bytes, self.slot_counts, self.rate,
                self.warmup, self.updates, self.scores, self.match, self.match_stats, self.weights,
                self.sets, self.context_rows, self.calibration, self.row_scores, self.total_bins, self.count_bins,
                self.predictions, self.error_sizes, self.predictor_scores, self.lms, self.filters, self.lattice_runs,
                self.pixel, self.pixel_sizes, self.pixel_lms, self.pixel_inputs, self.byte_base)
        if self.bit_tree is not None:
            self.bit_tree.update(symbols)
        self.steps += 1
        if self.use_match:
            _find_matches(self.history, self.steps, self.rows, self.match, self.match_table, self.match_min)

    def retain(self, rows: np.ndarray) -> None:
        for name in ("rows", "context_rows", "match", "sets", "network", "mixed", "coder_weights", "row_scores",
                     "total_bins", "predictions", "error_sizes", "predictor_scores", "lms", "lattice_runs", "pixel_lms",
                     "pixel_inputs"):
            setattr(self, name, np.ascontiguousarray(getattr(self, name)[rows]))
        if self.bit_tree is not None:
            self.bit_tree.retain(rows)


@njit(cache=True, nogil=True)
def _byte_vectors(history, row, t, base):  # pragma: no cover - compiled
    """cm/v2: the rows of ``weights`` chosen by the byte before position t and by the two bytes before it."""
    a = np.int64(history[row, t - 1]) if t >= 1 else 0
    b = np.int64(history[row, t - 2]) if t >= 2 else 0
    return base + a, base + 256 + (b << 8 | a)


@njit(cache=True, nogil=True)
def _bin(n):  # pragma: no cover - compiled
    if n < 8:
        return n
    bits = 0
    while n > 0:
        bits += 1
        n >>= 1
    return min(bits + 4, BINS - 1)  # 8-15 -> 8, 16-31 -> 9, ...


@njit(cache=True, nogil=True)
def _length_bucket(length):  # pragma: no cover - compiled
    s = 0
    while length > 0 and s < LENGTH_BUCKETS - 1:
        s += 1
        length >>= 1
    return s


@njit(cache=True, nogil=True)
def _bit_length(v):  # pragma: no cover - compiled
    """Bits of a non-negative integer (0 for 0): the neighbourhood activity's bucket."""
    bits = 0
    while v > 0:
        bits += 1
        v >>= 1
    return bits


@njit(cache=True, nogil=True)
def _pixel(history, row, t, back):  # pragma: no cover - compiled
    return np.int64(history[row, t - back]) if t >= back else np.int64(0)


@njit(cache=True, nogil=True)
def _gradient(history, row, t):  # pragma: no cover - compiled
    w, n, nw = _pixel(history, row, t, 1), _pixel(history, row, t, _STRIPE), _pixel(history, row, t, _STRIPE + 1)
    return min(max(w + n - nw, 0), 255)


@njit(cache=True, nogil=True)
def _image_context(history, row, t, order, plane):  # pragma: no cover - compiled
    """Values whose hash is an image context: the pixels around position t of a stripe (rows of _STRIPE),
    and for the colour contexts the same pixel ``plane`` bytes back."""
    w, ww = _pixel(history, row, t, 1), _pixel(history, row, t, 2)
    n, nn = _pixel(history, row, t, _STRIPE), _pixel(history, row, t, 2 * _STRIPE)
    nw, ne = _pixel(history, row, t, _STRIPE + 1), _pixel(history, row, t, _STRIPE - 1)
    if order == _PLANE_ERROR or order == _PLANE_SHAPE:
        if plane == 0 or t < plane:  # the first plane: no plane before
            return min(max(w + n - nw, 0), 255), -100, order
        u = np.int64(history[row, t - plane])
        which = order * 4 - min(t // plane, 3)  # planes differ (red and blue differences, low bytes)
        if order == _PLANE_ERROR:
            miss = min(max(u - _gradient(history, row, t - plane), -48), 48)
            return min(max(w + n - nw, 0), 255), miss >> 1, which
        uw, un = _pixel(history, row, t - plane, 1), _pixel(history, row, t - plane, _STRIPE)
        return min(max(w + u - uw, 0), 255) >> 1, min(max(n + u - un, 0), 255) >> 1, which
    if order == _IMAGE_NW:
        return n, w, -1
    if order == _IMAGE_GRADIENT:  # the gradient predictor's value (as in JPEG-LS / PNG's Paeth family)
        return min(max(w + n - nw, 0), 255), (n - nw) >> 3, (w - nw) >> 3
    if order == _IMAGE_ACTIVITY:  # the gradient prediction and how busy the neighbourhood is (CALIC's energy)
        activity = abs(n - nw) + abs(w - nw) + abs(ne - n) + abs(w - ww) + abs(n - nn)
        return min(max(w + n - nw, 0), 255) >> 1, _bit_length(activity), -4
    if order == _IMAGE_NEIGHBOURS:
        return (n >> 2) << 8 | (nw >> 2), (ne >> 2) << 8 | (w >> 2), -2
    if order == _IMAGE_VERTICAL:
        return n, nn, -3
    return w, ww, ne >> 2  # _IMAGE_HORIZONTAL


@njit(cache=True, nogil=True)
def _context_row(history, row, t, order, k, plane, bits):  # pragma: no cover - compiled
    """(table row, check) of the context of ``order`` bytes before position t of a history row; a hashed
    context's row has ``bits`` bits."""
    if order < 0:
        a, b, c = _image_context(history, row, t, order, plane)
        h = np.uint64(k + 1) * np.uint64(0x9E3779B97F4A7C15)
        for v in (a, b, c):
            h = (h ^ np.uint64(v + 1024)) * np.uint64(0x100000001B3)
            h ^= h >> np.uint64(29)
        return np.int64(h >> np.uint64(64 - bits)), np.int64((h >> np.uint64(8)) & np.uint64(0xFFFF)) + 1
    if order == 1:
        return (np.int64(history[row, t - 1]) if t >= 1 else 0), 0
    if order == 2:
        a = np.int64(history[row, t - 1]) if t >= 1 else 0
        b = np.int64(history[row, t - 2]) if t >= 2 else 0
        return (b << 8) | a, 0
    h = np.uint64(k + 1) * np.uint64(0x9E3779B97F4A7C15)
    if order == _WORD_PAIR:  # the letters of this word and the word before (lower-cased), the byte after that one
        words, in_word, i = 0, True, 1
        while i <= 64 and t >= i:
            c = history[row, t - i]
            if (c >= 65 and c <= 90) or (c >= 97 and c <= 122):
                in_word = True
                h = (h ^ np.uint64(c | 32)) * np.uint64(0x100000001B3)
            elif in_word:  # the first byte before a word (more of them are left out)
                words += 1
                in_word = False
                if words == 2:
                    break
                h = (h ^ np.uint64(c + 256)) * np.uint64(0x100000001B3)
            i += 1
        h ^= h >> np.uint64(29)
        return np.int64(h >> np.uint64(64 - bits)), np.int64((h >> np.uint64(8)) & np.uint64(0xFFFF)) + 1
    if order == 0:  # the letters of the current word and the byte before it
        i = 1
        while i <= 32 and t >= i:
            c = history[row, t - i]
            h = (h ^ np.uint64(c + 1)) * np.uint64(0x100000001B3)
            if not ((c >= 65 and c <= 90) or (c >= 97 and c <= 122)):
                break
            i += 1
        h ^= h >> np.uint64(29)
        return np.int64(h >> np.uint64(64 - bits)), np.int64((h >> np.uint64(8)) & np.uint64(0xFFFF)) + 1
    for i in range(1, order + 1):
        byte = np.uint64(history[row, t - i]) if t >= i else np.uint64(0)
        h = (h ^ (byte + np.uint64(1))) * np.uint64(0x100000001B3)
        h ^= h >> np.uint64(29)
    return np.int64(h >> np.uint64(64 - bits)), np.int64((h >> np.uint64(8)) & np.uint64(0xFFFF)) + 1


@njit(cache=True, nogil=True)
def _predict(network, history, t, plane, rows, orders, counts, checks, slot_checks, slot_totals, slot_bytes,
             slot_counts, hash_bits, distinct_cells, scores, match, match_stats, weights, sets,
             context_rows, calibration, probability_scores, row_scores, total_bins, count_bins,
             predictions, error_sizes, predictor_scores, lms, filters, lattice, lattice_runs, byte_sets,
             pixel, pixel_sizes, pixel_lms, pixel_inputs, byte_base, mixed):  # pragma: no cover - compiled
    n_orders = orders.shape[0]
    n_dense = counts.shape[0]  # the first orders have 256 counts per row, the others slots
    for b in range(network.shape[0]):
        row = rows[b]
        seen = 0
        for k in range(n_orders):
            index, check = _context_row(history, row, t, orders[k], k, plane, hash_bits)
            if k < n_dense:
                if check != 0 and checks[k, index] != check:  # another context hashed here: start it afresh
                    counts[k, index, :] = 0
                    checks[k, index] = check
                c = counts[k, index]
                n, distinct = np.int64(0), 0
                for s in range(256):
                    n += c[s]
                    distinct += c[s] != 0
            else:
                j = k - n_dense
                index = _slot_row(slot_checks[j], slot_totals[j], slot_counts[j], index, check)
                n, distinct = np.int64(slot_totals[j, index]), 0
                for i in range(_SLOTS):
                    distinct += slot_counts[j, index, i] != 0
            context_rows[b, k] = index
            if n > 0:
                seen += 1
            tb = _bin(n)
            if distinct_cells:
                tb += BINS * (0 if distinct <= 1 else 1 if distinct == 2 else 2 if distinct <= 4 else 3)
            total_bins[b, k] = tb
            for cb in range(BINS):  # the calibrated score of a byte with a count in bin cb
                hits, trials = calibration[k, tb, cb, 0], calibration[k, tb, cb, 1]
                row_scores[b, k, cb] = probability_scores[((2 * hits + 1) * PROBABILITY_STEPS) // (2 * trials + 2)]
        if pixel.shape[0] > 0:  # images: weights by how busy the neighbourhood is (alone: fewer sets learn faster)
            sets[b] = _pixel_scores(history, row, t, plane, pixel, pixel_sizes, pixel_lms[b], pixel_inputs[b],
                                    predictions[b], predictor_scores[b])
        else:
            sets[b] = _length_bucket(match[b, 0]) * (n_orders + 1) + seen
        if byte_sets:  # low and high bytes of samples
            sets[b] = 2 * sets[b] + (t & 1)
        w = weights[sets[b]]
        if byte_base >= 0:  # plus the vectors of the previous bytes (cm/v2)
            one, two = _byte_vectors(history, row, t, byte_base)
            w = w + weights[one] + weights[two]
        out = mixed[b]
        for s in range(256):
            out[s] = w[0] * network[b, s]
        for k in range(n_orders):  # one context at a time: each pass reads one row of counts
            wk, rs = w[1 + k], row_scores[b, k]
            if k < n_dense:
                c = counts[k, context_rows[b, k]]
                for s in range(256):
                    out[s] += wk * rs[count_bins[c[s]]]
            else:  # the bytes not in a slot would all add wk * rs[0]: the same odds without it
                j, index = k - n_dense, context_rows[b, k]
                for i in range(_SLOTS):
                    c = slot_counts[j, index, i]
                    if c != 0:
                        out[slot_bytes[j, index, i]] += wk * (rs[count_bins[c]] - rs[0])
        if match[b, 0] > 0:
            hits, misses = match_stats[_length_bucket(match[b, 0])]
            match[b, 3] = scores[hits] - scores[misses] + LN_255
            mixed[b, history[match[b, 1], match[b, 2]]] += w[1 + n_orders] * match[b, 3]
        if predictions.shape[1] > 0:
            if pixel.shape[0] == 0:
                _sample_scores(history, row, t, predictions[b], error_sizes[b], lms[b], filters, predictor_scores[b])
            if lattice > 0:
                _lattice_scores(lattice_runs[b], t, lattice, predictor_scores[b, predictions.shape[1] - 1])
            for k in range(predictions.shape[1]):
                wk, sc = w[2 + n_orders + k], predictor_scores[b, k]
                for s in range(256):
                    mixed[b, s] += wk * sc[s]
        for s in range(256):
            mixed[b, s] >>= WEIGHT_BITS


@njit(cache=True, nogil=True)
def _slot_row(checks, totals, counts, index, check):  # pragma: no cover - compiled
    """The row of a slotted table that holds a context: of the pair (index, index ^ 1), the one with its
    check, else the one with fewer counts, emptied for it."""
    first = index & ~1
    if checks[first] == check:
        return first
    if checks[first + 1] == check:
        return first + 1
    row = first + 1 if totals[first + 1] < totals[first] else first
    checks[row] = check
    totals[row] = 0
    counts[row, :] = 0
    return row


@njit(cache=True, nogil=True)
def _update(symbols, network, coder_weights, total, history, t, rows, counts, slot_totals, slot_bytes, slot_counts,
            rate, warmup, updates, scores, match, match_stats, weights, sets, context_rows, calibration, row_scores,
            total_bins, count_bins, predictions, error_sizes, predictor_scores, lms, filters, lattice_runs, pixel,
            pixel_sizes, pixel_lms, pixel_inputs, byte_base):  # pragma: no cover - compiled
    n_orders = context_rows.shape[1]
    n_dense = counts.shape[0]
    n_predictors = predictions.shape[1]
    grad = np.empty(2 + n_orders + n_predictors, dtype=np.int64)
    for b in range(symbols.shape[0]):
        x = symbols[b]
        row = rows[b]
        # the gradient of -ln p(x): score_i(x) - E_p[score_i], p = the coder's frequencies (weight + 1)
        expect_net = np.int64(0)
        for s in range(256):
            expect_net += (coder_weights[b, s] + 1) * network[b, s]
        grad[0] = network[b, x] - expect_net // total
        for k in range(n_orders):
            rs = row_scores[b, k]
            # sum over s of p(s) * score(count of s); the unseen bytes (count 0, bin 0) together: the
            # frequencies (weight + 1) sum to total
            expect = np.int64(0)
            seen = np.int64(0)
            if k < n_dense:
                c = counts[k, context_rows[b, k]]
                count_x = c[x]
                for s in range(256):
                    if c[s] != 0:
                        p = coder_weights[b, s] + 1
                        expect += p * rs[count_bins[c[s]]]
                        seen += p
            else:
                j, index = k - n_dense, context_rows[b, k]
                count_x = 0
                for i in range(_SLOTS):
                    c_i = slot_counts[j, index, i]
                    if c_i != 0:
                        s = slot_bytes[j, index, i]
                        if s == x:
                            count_x = c_i
                        p = coder_weights[b, s] + 1
                        expect += p * rs[count_bins[c_i]]
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
        for k in range(n_predictors):
            sc = predictor_scores[b, k]
            expect = np.int64(0)
            for s in range(256):
                expect += (coder_weights[b, s] + 1) * sc[s]
            grad[2 + n_orders + k] = sc[x] - expect // total
        if pixel.shape[0] > 0:
            _pixel_update(x, sets[b], predictions[b], pixel_sizes, pixel_lms[b], pixel_inputs[b])  # set = activity
        elif n_predictors > 0 and t & 1:  # a high byte: the sample is whole; the predictors learn from it
            sample = _signed_sample(np.int64(history[row, t - 1]), np.int64(x))
            for k in range(n_predictors):  # each one's error size follows its errors
                size = error_sizes[b, k]
                error_sizes[b, k] = max(size + (((abs(sample - predictions[b, k]) << 4) - size) >> 4), 16)
            offset = 0
            for f in range(filters.shape[0]):
                taps, shift, order = filters[f, 0], filters[f, 1], filters[f, 2]
                _lms_update(history, row, t - 3, sample - predictions[b, _FIXED_PREDICTORS + f],
                            lms[b, offset:offset + taps], shift, order)
                offset += taps
            for k in range(8):
                lattice_runs[b, k] = lattice_runs[b, k] + 1 if sample & ((2 << k) - 1) == 0 else 0
        v = sets[b]
        step = rate + (3 * rate * warmup) // (warmup + updates[v]) if warmup > 0 else rate  # (cm/v3's warm-up)
        updates[v] += 1
        w = weights[v]
        for i in range(2 + n_orders + n_predictors):
            w[i] += (grad[i] * step) >> LEARNING_SHIFT
        if byte_base >= 0:  # the vectors of the previous bytes (cm/v2)
            for v in _byte_vectors(history, row, t, byte_base):
                w = weights[v]
                for i in range(2 + n_orders + n_predictors):
                    w[i] += (grad[i] * rate) >> (LEARNING_SHIFT + _BYTE_WEIGHT_SHIFT)
        for k in range(n_orders):
            cal = calibration[k, total_bins[b, k]]
            if k < n_dense:
                _count_dense(counts[k, context_rows[b, k]], x, cal, count_bins)
            else:
                j, index = k - n_dense, context_rows[b, k]
                _count_slots(slot_bytes[j, index], slot_counts[j, index], slot_totals[j], index, x, cal,
                             count_bins, 256)
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


@njit(cache=True, nogil=True)
def _count_dense(c, x, cal, count_bins):  # pragma: no cover - compiled
    """Byte x came after a context with counts c: the calibration's trials and hit, then x's count."""
    unseen = 0  # bytes of count 0 (bin 0), added at once rather than one by one into one cell
    for s in range(256):
        if c[s] == 0:
            unseen += 1
        else:
            cal[count_bins[c[s]], 1] += 1
    cal[0, 1] += unseen
    cal[count_bins[c[x]], 0] += 1
    c[x] += 1
    if c[x] > COUNT_LIMIT:
        for s in range(256):
            c[s] >>= 1


@njit(cache=True, nogil=True)
def _count_slots(slot_bytes, slot_counts, totals, index, x, cal, count_bins, alphabet):  # pragma: no cover
    """The same for a slotted row (of an alphabet of that many symbols): a symbol not in a slot takes the first
    empty one or the smallest count's."""
    used, slot, smallest = 0, -1, 0
    for i in range(_SLOTS):
        c = slot_counts[i]
        if c != 0:
            used += 1
            cal[count_bins[c], 1] += 1
            if slot_bytes[i] == x:
                slot = i
        if c < slot_counts[smallest]:
            smallest = i
    cal[0, 1] += alphabet - used
    if slot >= 0:
        cal[count_bins[slot_counts[slot]], 0] += 1
    else:
        cal[0, 0] += 1
        slot = smallest
        totals[index] -= slot_counts[slot]
        slot_bytes[slot] = x
        slot_counts[slot] = 0
    slot_counts[slot] += 1
    totals[index] += 1
    if slot_counts[slot] > COUNT_LIMIT:
        total = 0
        for i in range(_SLOTS):
            slot_counts[i] >>= 1
            total += slot_counts[i]
        totals[index] = total


@njit(cache=True, nogil=True)
def _signed_sample(low, high):  # pragma: no cover - compiled
    return ((high ^ 128) - 128) * 256 + low


@njit(cache=True, nogil=True)
def _sample_at(history, row, i):  # pragma: no cover - compiled
    """The 16-bit sample whose low byte is at position i of a history row (0 before the row starts)."""
    return _signed_sample(np.int64(history[row, i]), np.int64(history[row, i + 1])) if i >= 0 else np.int64(0)


@njit(cache=True, nogil=True)
def _fixed_prediction(history, row, i, order):  # pragma: no cover - compiled
    """FLAC's fixed polynomial prediction of order 0-3 for the sample after the one whose low byte is at i."""
    s1 = _sample_at(history, row, i)
    if order == 0:
        return np.int64(0)
    if order == 1:
        return s1
    s2 = _sample_at(history, row, i - 2)
    if order == 2:
        return 2 * s1 - s2
    return 3 * s1 - 3 * s2 + _sample_at(history, row, i - 4)


@njit(cache=True, nogil=True)
def _residual_at(history, row, i, order):  # pragma: no cover - compiled
    """The sample whose low byte is at i less its fixed prediction of ``order`` (0: the sample itself)."""
    return _sample_at(history, row, i) - _fixed_prediction(history, row, i - 2, order)


@njit(cache=True, nogil=True)
def _lms_update(history, row, start, error, weights, shift, order):  # pragma: no cover - compiled
    """Normalized LMS: weights += error x / (|x|^2 + 1), x the residuals of ``order`` before (the last one's
    low byte at start)."""
    norm = np.int64(1)
    for i in range(weights.shape[0]):
        v = _residual_at(history, row, start - 2 * i, order)
        norm += v * v
    for i in range(weights.shape[0]):
        step = (error * _residual_at(history, row, start - 2 * i, order) << shift) // norm
        weights[i] = min(max(weights[i] + step, -_LMS_LIMIT), _LMS_LIMIT)


@njit(cache=True, nogil=True)
def _lattice_scores(runs, t, penalty, scores):  # pragma: no cover - compiled
    """-penalty for a low byte off the lattice of the last samples (multiples of 2^z), 0 otherwise."""
    z = 0
    for k in range(runs.shape[0]):
        if runs[k] >= _LATTICE_RUN:
            z = k + 1
    for s in range(256):
        scores[s] = -penalty if (t & 1) == 0 and s & ((1 << z) - 1) != 0 else 0


@njit(cache=True, nogil=True)
def _sample_scores(history, row, t, predictions, error_sizes, lms, filters, scores):  # pragma: no cover - compiled
    """Each sample predictor's prediction for the sample that position t belongs to, and its byte scores."""
    start = t - 2 - (t & 1)  # the last whole sample's low byte (streams start at even positions)
    offset = 0
    for k in range(_FIXED_PREDICTORS + filters.shape[0]):
        if k < _FIXED_PREDICTORS:
            p = _fixed_prediction(history, row, start, k + 1)
        else:
            taps, order = filters[k - _FIXED_PREDICTORS, 0], filters[k - _FIXED_PREDICTORS, 2]
            p = np.int64(0)
            for i in range(taps):
                p += lms[offset + i] * _residual_at(history, row, start - 2 * i, order)
            p = (p >> 16) + _fixed_prediction(history, row, start, order)
            offset += taps
        p = min(max(p, -32768), 32767)
        predictions[k] = p
        size = error_sizes[k]
        if t & 1:  # the high byte: the sample it makes with the known low byte
            low = np.int64(history[row, t - 1])
            for s in range(256):
                scores[k, s] = max(-((abs(_signed_sample(low, np.int64(s)) - p) << 12) // size), _AUDIO_FLOOR)
        else:  # the low byte: the distance round the circle to the prediction's low byte
            target = p & 255
            for s in range(256):
                d = abs(s - target)
                scores[k, s] = max(-((min(d, 256 - d) << 12) // size), _AUDIO_FLOOR)


@njit(cache=True, nogil=True)
def _known_pixel(history, row, t, back):  # pragma: no cover - compiled
    return np.int64(history[row, t - back]) if t >= back else np.int64(-1)


@njit(cache=True, nogil=True)
def _neighbours(history, row, t):  # pragma: no cover - compiled
    """W, N, NW, NE, WW, NN, NWW, NNE of position t in its stripe; a neighbour outside the stripe (left or
    right of it, above its first row) is the nearest one inside, and the first pixel's are 128."""
    col = t % _STRIPE
    n = _known_pixel(history, row, t, _STRIPE)
    w = _known_pixel(history, row, t, 1) if col > 0 else n
    if n < 0:
        n = w
    if w < 0:
        w = n = np.int64(128)
    nw = _known_pixel(history, row, t, _STRIPE + 1) if col > 0 else n
    if nw < 0:
        nw = w
    ne = _known_pixel(history, row, t, _STRIPE - 1) if col < _STRIPE - 1 else n
    if ne < 0:
        ne = n
    ww = _known_pixel(history, row, t, 2) if col > 1 else w
    nn = _known_pixel(history, row, t, 2 * _STRIPE)
    if nn < 0:
        nn = n
    nww = _known_pixel(history, row, t, _STRIPE + 2) if col > 1 else nw
    if nww < 0:
        nww = nw
    nne = _known_pixel(history, row, t, 2 * _STRIPE - 1) if col < _STRIPE - 1 else nn
    if nne < 0:
        nne = ne
    return w, n, nw, ne, ww, nn, nww, nne


@njit(cache=True, nogil=True)
def _med(w, n, nw):  # pragma: no cover - compiled
    """JPEG-LS's median edge detector: min(W, N) or max(W, N) across an edge, else the gradient W + N - NW."""
    if nw >= max(w, n):
        return min(w, n)
    if nw <= min(w, n):
        return max(w, n)
    return w + n - nw


@njit(cache=True, nogil=True)
def _pixel_scores(history, row, t, plane, pixel, sizes, lms, inputs, predictions, scores):  # pragma: no cover
    """Each pixel predictor's prediction for position t and its byte scores, the Laplace log-density of the
    distance with the predictor's error size at this activity; returns the activity bucket. The NLMS filter's
    inputs and prediction go to ``inputs`` for its update."""
    w, n, nw, ne, ww, nn, nww, nne = _neighbours(history, row, t)
    med = _med(w, n, nw)
    bucket = min(_bit_length(abs(n - nw) + abs(w - nw) + abs(ne - n) + abs(w - ww) + abs(n - nn)),
                 _ACTIVITY_BUCKETS - 1)
    around = (w, n, nw, ne, ww, nn, nww, nne)
    acc = np.int64(0)
    for i in range(_PIXEL_TAPS):
        inputs[i] = around[i] - med
        acc += lms[i] * inputs[i]
    inputs[_PIXEL_TAPS] = med + (acc >> 16)
    u = uw = un = u_med = np.int64(0)
    if plane > 0 and t >= plane:  # the same pixel and its neighbours in the plane before
        u = np.int64(history[row, t - plane])
        uw, un, unw, _, _, _, _, _ = _neighbours(history, row, t - plane)
        u_med = _med(uw, un, unw)
    for k in range(pixel.shape[0]):
        kind = pixel[k]
        if kind == _MED:
            p = med
        elif kind == _PIXEL_LMS:
            p = inputs[_PIXEL_TAPS]
        elif kind == _PLANE_MED:
            p = med + u - u_med
        elif kind == _PLANE_W:
            p = w + u - uw
        else:
            p = n + u - un
        p = min(max(p, 0), 255)
        predictions[k] = p
        size = sizes[k, bucket]
        for s in range(256):
            scores[k, s] = max(-((abs(s - p) << 12) // size), _AUDIO_FLOOR)
    return bucket


@njit(cache=True, nogil=True)
def _pixel_update(x, bucket, predictions, sizes, lms, inputs):  # pragma: no cover - compiled
    """After pixel x: each predictor's error size at this activity follows its error; the NLMS filter steps."""
    for k in range(predictions.shape[0]):
        size = sizes[k, bucket]
        sizes[k, bucket] = max(size + (((abs(x - predictions[k]) << 4) - size) >> 4), _PIXEL_ERROR_MIN)
    error = x - inputs[_PIXEL_TAPS]
    norm = np.int64(1)
    for i in range(_PIXEL_TAPS):
        norm += inputs[i] * inputs[i]
    for i in range(_PIXEL_TAPS):
        lms[i] = min(max(lms[i] + ((error * inputs[i]) << _PIXEL_STEP) // norm, -_LMS_LIMIT), _LMS_LIMIT)


@njit(cache=True, nogil=True)
def _match_hash(history, row, t, length):  # pragma: no cover - compiled
    h = np.uint64(0)
    for i in range(1, length + 1):
        h = (h + np.uint64(history[row, t - i]) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64(h >> np.uint64(64 - MATCH_BITS))


@njit(cache=True, nogil=True)
def _find_matches(history, t, rows, match, match_table, least):  # pragma: no cover - compiled
    """After step t-1: rows without a match look up the last ``least`` bytes (entries of earlier steps only,
    so the byte a match predicts is known), then every row records where its context occurs."""
    if t < least:
        return
    for b in range(rows.shape[0]):
        if match[b, 0] > 0:
            continue
        entry = match_table[_match_hash(history, rows[b], t, least)]
        if entry == 0:
            continue
        other, pos = (entry - 1) >> 32, (entry - 1) & 0xFFFFFFFF
        length = 0
        while length < MATCH_VERIFY and length < pos and length < t and history[other, pos - 1 - length] == \
                history[rows[b], t - 1 - length]:
            length += 1
        if length >= least:
            match[b, 0], match[b, 1], match[b, 2] = length, other, pos
    for b in range(rows.shape[0]):
        match_table[_match_hash(history, rows[b], t, least)] = (rows[b] << 32 | t) + 1
