"""Pretrained LLMs (Llama family, Gemma 3) in integer-exact arithmetic: the model the coder runs.

Derived from the float network of ``models/llm.py`` (weights as transformers
de-quantized them from the GGUF file) by elementwise IEEE operations only, so
the same file gives the same integers on any machine. The arithmetic is the
byte model's (``byte_model.py``, ``ops.py``, ``kernels.py``), with what LLMs add:

* 8-bit weights per output channel (7-bit in the arithmetics before
  ``exact-int/v3``), multiplied in integers by ``torch._int_mm`` (int8 x int8
  -> int32, a quarter of float32's bytes) where that is exact and faster, else
  by float32 matmuls of the same integers (``products.Int8Matrix``);
* the residual stream at ``RESIDUAL_BITS`` = 8 (LLM residuals hold outliers
  up to ~10**5), embeddings as int8 rows with integer multipliers;
* gated MLPs (SiLU or GELU by integer tables), Gemma's q/k norms, post-norms
  and per-layer RoPE bases and sliding windows;
* KV caches that grow by 256 positions, or rings with attention sinks
  (``--window``), laid out for the attention kernel.
"""

from __future__ import annotations

import copy
import hashlib
import json

import numpy as np
import torch

from lmpress.errors import LmpressError
from lmpress.models.exact import kernels as k
from lmpress.models.exact import ops, rows, tables
from lmpress.models.exact.byte_model import (
    ARITHMETIC,
    MUL_SHIFT,
    NO_HEAD_NORM,
    QKV_BITS,
    QKV_LIMIT,
    ROPE_BITS,
    ROW_MUL_SHIFT,
    SCORE_SHIFT,
    attention_tables,
    logit_table,
)

# The LLM arithmetics, oldest first (an archive names its own; every one still decodes):
# * ``exact-int/v1``: the byte models' ``ARITHMETIC`` with 7-bit weights (``torch._int_mm`` is exact on them on
#   every kernel, see ``products.PAIR_SAFE_WEIGHT_MAX``);
# * ``exact-int/v2``: post-norms (Gemma 3) computed on the products at 24 bits (``kernels.product_norm_add``)
#   instead of at the residual's 8 fractional bits;
# * ``exact-int/v3``: v2 with 8-bit weights (+-127), multiplied by ``torch._int_mm`` where its probe finds it
#   exact and else by float32 matmuls in parts (``products.Int8Matrix``), and queries, keys and values at 12
#   fractional bits instead of 10. Measured with ``benchmarks/exact_positions.py gemma3-270m`` against
#   float32 (held-out Wikipedia, 8 x 2048 bytes at 100,000 and 4 x 2048 at 500,000): v2 +1.32% / +1.17%,
#   8-bit weights +1.22% / +0.71%, with the 12-bit heads +0.99% / +0.45%. Gemma's weights come from 4-bit
#   GGUF blocks with a scale per 32 values, which one 7-bit scale per output channel blurred (in float32
#   alone, 7-bit weights cost +0.62% and 8-bit +0.03%).
# The weights' integer range and the heads' fractional bits of each arithmetic:
WIDTHS = {ARITHMETIC: (63, QKV_BITS), "exact-int/v2": (63, QKV_BITS), "exact-int/v3": (127, 12)}
ARITHMETICS = tuple(WIDTHS)
LLM_ARITHMETIC = ARITHMETICS[-1]  # the arithmetic new archives are made with
RESIDUAL_BITS = 8  # Gemma 3's residual stream reaches ~10**5 (measured: 103,795 on held-out Wikipedia)
RESIDUAL_LIMIT = 1 << 26  # real 262144; 2**52 * hidden stays within int64 for the sum of squares
HIDDEN_BITS = 9
ACTIVATION_LIMIT = {"silu": 16, "gelu_tanh": 8}  # beyond, the activation is x or 0 (to < 2**-20)
# Gemma's q norm gain carries the attention scale (1/16): its queries are held with this many more bits
# (at 10 bits they kept ~6: +45% code length), and the score index shifts by as many less.
QUERY_EXTRA_BITS = 6
# RMSNorm gains before a matmul multiply the (16-bit) activations instead of being folded into the int8
# weights: Gemma's gains span 0.1 to 234 across channels, which folded cost 4% of each q/k/v's range.
NORM_GAIN_BITS = 12
# Activation levels at each matmul's input: 16 bits (ops.WIDE_MAX, two int8 halves) or int8 (127).
# Measured on SmolLM2 (held-out Wikipedia, against float32): all 16-bit +0.40% bits; int8 into o: the
# same; int8 also into down +0.86%, into the head +0.82%, everywhere +2.0%. Gemma 3 (whose post-norm
# gains reach 1657) keeps o at 16 bits too: +1.14% against +1.40% with int8.
LEVELS = {"qkv": ops.WIDE_MAX, "o": ops.ACT_MAX, "gate_up": ops.WIDE_MAX, "down": ops.WIDE_MAX,
          "head": ops.WIDE_MAX}
GEMMA_LEVELS = {**LEVELS, "o": ops.WIDE_MAX}
# Rows per thread from which a step runs row ranges on the threads (each reads every weight) rather than
# sharing each product. Measured with SmolLM2 on 2 threads (``benchmarks/llm_threads.py``, encode / decode KB/s,
# sharing products -> row ranges): 18 rows 1.10-1.17 / 1.14-1.29 -> 1.37-1.44 / 1.32-1.38 natively (VNNI) and
# 0.66-0.74 / 0.53-0.67 -> 0.95-1.05 / 0.97-1.05 with AVX2 code; 8 rows as 4 + 4: within noise natively,
# 0.57 / 0.55-0.58 -> 0.75-0.78 / 0.75-0.79 with AVX2 code; 4 rows as 2 + 2 (scratch): 0.47 / 0.46 with AVX2 code.
ROWS_PER_THREAD = 4


def _buffer(rows: int, width: int, levels: int) -> np.ndarray:
    return np.empty((rows, width), dtype=np.int8 if levels == ops.ACT_MAX else np.int64)


class _Rows:
    """An embedding table as int16 rows with one integer multiplier per row. (int8 rows cost 4% of a
    q/k/v's range in Gemma 3, whose embedding rows hold outliers 23x their RMS.)"""

    LEVELS = 32767
    MULTIPLIER_BITS = 20

    def __init__(self, q: np.ndarray, multiplier: np.ndarray, shift: int) -> None:
        self.q, self.multiplier, self.shift = q, multiplier, int(shift)  # value = q * multiplier >> shift

    @classmethod
    def quantize(cls, table: np.ndarray, scale: float, out_bits: int) -> _Rows:
        table = np.asarray(table)
        q = np.empty(table.shape, dtype=np.int16)
        row_scale = np.empty(len(table))
        # the rows are the channels: q = clip(round(table * scale / row_scale), +-LEVELS) in float64
        k.quantize_weights(table.T, np.full(len(table), float(scale)), float(cls.LEVELS), q.T, row_scale)
        exponent = int(np.frexp(row_scale.max())[1])
        shift = cls.MULTIPLIER_BITS - exponent - out_bits
        return cls(q, np.round(np.ldexp(row_scale, out_bits + shift)).astype(np.int64), shift)

    def integers(self) -> dict[str, np.ndarray]:
        return {"q": self.q, "multiplier": self.multiplier, "shift": np.array(self.shift)}

    def __getitem__(self, tokens: np.ndarray) -> np.ndarray:
        return ops.round_shift(self.q[tokens].astype(np.int64) * self.multiplier[tokens][:, None], self.shift)


class _Linear:
    """``IntLinear`` with int8 weights of any range up to +-127; ``products.Int8Matrix`` decides how its
    products run (``torch._int_mm``, the compiled kernel or float32 BLAS: the same integers)."""

    def __init__(self, lin: ops.IntLinear) -> None:
        self.lin = lin
        self.weight = self.lin.matrix.weight  # torch int8 [in, out]
        self.multiplier, self.shift = self.lin.multiplier, self.lin.shift

    @classmethod
    def quantize(cls, weight: torch.Tensor, out_bits: int, weight_max: int,
                 out_scale: np.ndarray | None = None) -> _Linear:
        return cls(ops.IntLinear(weight.detach().numpy(), out_bits, max_k=None, weight_max=weight_max,
                                 gains=out_scale))  # (a view [out, in] of the float32 weights)

    def matmul(self, q: np.ndarray) -> np.ndarray:
        """q @ W exactly: int8 q (int32 out), or 16-bit q (int64 in and out, |q| <= WIDE_MAX)."""
        if q.dtype == np.int8:
            return self.lin.product(q).astype(np.int32, copy=False)
        return self.lin.matrix.wide_product(q)


class ExactLayerCache:
    """int8 keys and values [batch, kv_heads, head_dim, slots] (the layout ``kernels.attention`` reads) and
    their scales; grows or rings like ``llm.LayerCache`` (capacity None: grows by ``GROWTH``; else a ring
    keeping ``sinks``)."""

    GROWTH = 256

    def __init__(self, batch: int, kv_heads: int, head_dim: int, capacity: int | None, sinks: int) -> None:
        self.capacity, self.sinks = capacity, sinks if capacity is not None else 0
        size = capacity if capacity is not None else self.GROWTH
        self.k = np.zeros((batch, kv_heads, head_dim, size), dtype=np.int8)
        self.v = np.zeros((batch, kv_heads, head_dim, size), dtype=np.int8)
        self.k_amax = np.ones((batch, kv_heads, size), dtype=np.int64)
        self.v_amax = np.ones((batch, kv_heads, size), dtype=np.int64)
        self.length = 0

    def next_slot(self) -> int:
        pos = self.length
        if self.capacity is None:
            if pos == self.k.shape[-1]:
                def grow(a: np.ndarray, fill: int) -> np.ndarray:
                    return np.concatenate([a, np.full((*a.shape[:-1], self.GROWTH), fill, dtype=a.dtype)], axis=-1)

                self.k, self.v = grow(self.k, 0), grow(self.v, 0)
                self.k_amax, self.v_amax = grow(self.k_amax, 1), grow(self.v_amax, 1)
            return pos
        if pos < self.capacity:
            return pos
        return self.sinks + (pos - self.sinks) % (self.capacity - self.sinks)

    def used(self) -> int:
        return min(self.length, self.k.shape[-1])

    def rows(self, part: slice) -> ExactLayerCache:
        """The cache of a range of the batch's rows (views: a step on them writes into this cache)."""
        view = copy.copy(self)
        view.k, view.v, view.k_amax, view.v_amax = self.k[part], self.v[part], self.k_amax[part], self.v_amax[part]
        return view

    def retain(self, rows: np.ndarray) -> None:
        for name in ("k", "v", "k_amax", "v_amax"):
            setattr(self, name, np.ascontiguousarray(getattr(self, name)[rows]))


class ExactLLM:
    def __init__(self, llm, arithmetic: str = LLM_ARITHMETIC, integers: dict[str, np.ndarray] | None = None) -> None:
        """From a float ``models.llm.LLM`` (float32 weights), in ``arithmetic`` (one of ``ARITHMETICS``).
        ``integers``: the ``integers`` of this model in this arithmetic, read back instead of
        quantizing the weights again (a cache: SmolLM2's take ~2 s to quantize, ~0.2 s to read)."""
        if arithmetic not in ARITHMETICS:
            raise LmpressError(f"this lmpress has the LLM arithmetics {', '.join(ARITHMETICS)}, not {arithmetic}")
        self.arithmetic = arithmetic
        weight_max, self.qkv_bits = WIDTHS[arithmetic]
        wider = self.qkv_bits - QKV_BITS  # than the byte models' heads
        self.qkv_limit = QKV_LIMIT << wider  # the same real clamp
        self.row_mul_shift = ROW_MUL_SHIFT - 2 * wider  # scores see keys and queries at qkv_bits
        cfg = self.cfg = llm.cfg
        gemma = cfg.family == "gemma3"
        self.activation = "gelu_tanh" if gemma else "silu"
        self.act_limit = ACTIVATION_LIMIT[self.activation] << HIDDEN_BITS
        self.act_table = tables.activation_table(self.activation, HIDDEN_BITS, ACTIVATION_LIMIT[self.activation])
        nh, hd = cfg.heads, cfg.head_dim
        # the attention scale goes into the q rows (or, with q norms, into their gains)
        q_scale = np.ones((nh + 2 * cfg.kv_heads) * hd)
        if not gemma:
            q_scale[: nh * hd] = cfg.attention_scale

        if integers is None:
            integers = self._quantize(llm, weight_max, q_scale)

        def linear(key: str) -> _Linear:
            return _Linear(ops.IntLinear.from_integers(integers[key + ".weight"], integers[key + ".multiplier"],
                                                       integers[key + ".shift"], weight_max))

        self.layers = []
        for i in range(cfg.layers):
            key = f"layers.{i}."
            entry = {name: linear(key + name) for name in ("qkv", "o", "gate_up", "down")}
            entry["head_gain"] = NO_HEAD_NORM
            for name in ("attn_norm", "mlp_norm", "head_gain", "post_attn", "post_mlp"):
                if key + name in integers:
                    entry[name] = integers[key + name]
            self.layers.append(entry)
        self.head = linear("head")
        self.final_norm = integers["final_norm"]
        self.embed = _Rows(integers["embed.q"], integers["embed.multiplier"], integers["embed.shift"])
        self.query_extra = QUERY_EXTRA_BITS if gemma else 0
        self.levels = GEMMA_LEVELS if gemma else LEVELS
        self.rotary = {theta: tables.Rotary(hd // 2, repr(theta), ROPE_BITS) for theta in set(cfg.rope_theta)}
        self.attention_exp = attention_tables()
        self.logit_exp = logit_table()
        self.integers = integers  # every quantized array by name (the same arrays): what a cache stores
        self._digest: str | None = None

    def _quantize(self, llm, weight_max: int, q_scale: np.ndarray) -> dict[str, np.ndarray]:
        """The integers of ``llm``'s weights in this arithmetic, by name (``layers.{i}.qkv.weight``, ...)."""
        cfg, gemma = self.cfg, self.cfg.family == "gemma3"
        arrays: dict[str, np.ndarray] = {}

        def linear(key: str, weight: torch.Tensor, out_bits: int, out_scale: np.ndarray | None = None) -> None:
            lin = _Linear.quantize(weight, out_bits, weight_max, out_scale).lin
            arrays.update({f"{key}.{k}": v for k, v in lin.integers().items()})

        for i, layer in enumerate(llm.layers):
            key = f"layers.{i}."
            linear(key + "qkv", layer["qkv"].float().t(), self.qkv_bits, q_scale)
            linear(key + "o", layer["o"].float().t(), RESIDUAL_BITS)
            linear(key + "gate_up", layer["gate_up"].float().t(), HIDDEN_BITS)
            linear(key + "down", layer["down"].float().t(), RESIDUAL_BITS)
            arrays[key + "attn_norm"] = ops.to_fixed(layer["attn_norm"].double().numpy(), NORM_GAIN_BITS)
            arrays[key + "mlp_norm"] = ops.to_fixed(layer["mlp_norm"].double().numpy(), NORM_GAIN_BITS)
            if gemma:
                arrays[key + "head_gain"] = np.stack([
                    ops.to_fixed(layer["q_norm"].double().numpy() * cfg.attention_scale,
                                 self.qkv_bits + QUERY_EXTRA_BITS),  # the gains at the heads' fixed point
                    ops.to_fixed(layer["k_norm"].double().numpy(), self.qkv_bits)])
                arrays[key + "post_attn"] = ops.to_fixed(layer["post_attn_norm"].double().numpy(), RESIDUAL_BITS)
                arrays[key + "post_mlp"] = ops.to_fixed(layer["post_mlp_norm"].double().numpy(), RESIDUAL_BITS)
        linear("head", llm.head.float(), 8)
        arrays["final_norm"] = ops.to_fixed(llm.final_norm.double().numpy(), NORM_GAIN_BITS)
        arrays.update({f"embed.{k}": v for k, v in
                       _Rows.quantize(llm.embed.numpy(), llm.embed_scale, RESIDUAL_BITS).integers().items()})
        return arrays

    def digest(self) -> str:
        """SHA-256 of everything the arithmetic uses (as ``ExactByteModel.digest``; computed once: ~0.2 s)."""
        if self._digest is None:
            self._digest = self._compute_digest()
        return self._digest

    def _compute_digest(self) -> str:
        h = hashlib.sha256(json.dumps({"arithmetic": self.arithmetic, "kind": "llm", "family": self.cfg.family,
                                       "residual_bits": RESIDUAL_BITS, "query_extra_bits": self.query_extra,
                                       "levels": self.levels}, sort_keys=True).encode())
        for layer in self.layers:
            for name in ("qkv", "o", "gate_up", "down"):
                lin = layer[name]
                h.update(lin.weight.numpy().tobytes() + lin.multiplier.astype("<i8").tobytes()
                         + str(lin.shift).encode())
            for name in ("attn_norm", "mlp_norm", "head_gain", "post_attn", "post_mlp"):
                if name in layer:
                    h.update(np.ascontiguousarray(layer[name], dtype="<i8").tobytes())
        h.update(self.head.weight.numpy().tobytes() + self.head.multiplier.astype("<i8").tobytes()
                 + self.final_norm.astype("<i8").tobytes())
        h.update(self.embed.q.tobytes() + self.embed.multiplier.astype("<i8").tobytes())
        h.update(tables.tables_digest(self.attention_exp, self.logit_exp, self.act_table,
                                      *(r.digest() for _, r in sorted(self.rotary.items()))))
        return h.hexdigest()

    def new_cache(self, batch: int, window: int | None = None, sinks: int = 4) -> list[ExactLayerCache]:
        return [ExactLayerCache(batch, self.cfg.kv_heads, self.cfg.head_dim, capacity, layer_sinks)
                for capacity, layer_sinks in self.cfg.cache_layout(window, sinks)]

    def step(self, x: np.ndarray, caches: list[ExactLayerCache]) -> np.ndarray:
        """Integer logits [B, vocab] at 8 bits for input vectors x (int64 [B, hidden] at RESIDUAL_BITS).

        On the threads ``rows.threads`` allows, a batch of ``ROWS_PER_THREAD`` rows or more per thread runs
        in row ranges, each on its thread; smaller batches, whose steps are bound by reading the weights, share
        each weight product between the threads (by outputs: BLAS's or torch's, or ``rows.each`` for the
        compiled kernel). Every row's integers are its own: the same logits either way."""
        position = caches[0].length
        slots = []
        for cache in caches:  # (a cache may grow here, before any layer runs)
            slots.append(cache.next_slot())
            cache.length += 1
        if rows.count() == 1:  # coding_threads holds BLAS to one thread already
            return self._layers(x, caches, position, slots)
        if len(rows.parts(len(x), ROWS_PER_THREAD)) > 1:
            def part(r: slice) -> np.ndarray:
                torch.set_num_threads(1)  # (this thread's own OpenMP setting, for torch._int_mm)
                return self._layers(x[r], [cache.rows(r) for cache in caches], position, slots)

            return np.concatenate(rows.run(part, len(x), ROWS_PER_THREAD))
        threads = torch.get_num_threads()
        torch.set_num_threads(rows.count())  # for torch._int_mm (``products.py``)
        try:
            with rows.blas_threads(rows.count()):
                return self._layers(x, caches, position, slots)
        finally:
            torch.set_num_threads(threads)

    def _layers(self, x: np.ndarray, caches: list[ExactLayerCache], position: int, slots: list[int]) -> np.ndarray:
        """``step`` with every layer's cache slot taken."""
        cfg, b = self.cfg, x.shape[0]
        nh, nkv, hd = cfg.heads, cfg.kv_heads, cfg.head_dim
        x = np.array(x, dtype=np.int64)
        levels = self.levels
        inputs = {name: _buffer(b, width, levels[name]) for name, width in
                  (("qkv", cfg.hidden), ("o", nh * hd), ("gate_up", cfg.hidden), ("down", cfg.intermediate),
                   ("head", cfg.hidden))}
        row_scale = np.empty(b, dtype=np.int64)
        amax = np.empty(b, dtype=np.int64)
        q = np.empty((b, nh, hd), dtype=np.int32)  # int8 values, as the attention kernel takes them
        q_amax = np.empty((b, nh), dtype=np.int64)
        attended = np.empty((b, nkv, nh // nkv, hd), dtype=np.int64)
        hidden = np.empty((b, cfg.intermediate), dtype=np.int64)
        for i, layer in enumerate(self.layers):
            cache = caches[i]
            keys, k_amax, values, v_amax = cache.k, cache.k_amax, cache.v, cache.v_amax
            cos, sin = self.rotary[cfg.rope_theta[i]].at(position)
            lin, a = layer["qkv"], inputs["qkv"]
            k.norm_gain_quantize_rows(x, layer["attn_norm"], NORM_GAIN_BITS, a, row_scale, ops.ROW_BITS, levels["qkv"])
            k.qkv_step(lin.matmul(a), lin.multiplier, row_scale, ops.PRE_SHIFT, lin.shift, self.qkv_limit,
                       layer["head_gain"], cos, sin, ROPE_BITS, nh, nkv, q, q_amax, keys, k_amax, values, v_amax,
                       slots[i])
            k.attention(q.reshape(b, nkv, nh // nkv, hd), q_amax.reshape(b, nkv, -1), keys, k_amax, values, v_amax,
                        cache.used(), self.row_mul_shift - self.query_extra, SCORE_SHIFT, MUL_SHIFT, self.attention_exp,
                        attended)
            a = inputs["o"]
            k.quantize_rows(attended.reshape(b, nh * hd), a, amax, levels["o"])
            self._add(layer["o"], a, ops.fixed_row_scale(amax, self.qkv_bits, ops.ACT_MAX, levels["o"]), x,
                      layer.get("post_attn"))
            lin, a = layer["gate_up"], inputs["gate_up"]
            k.norm_gain_quantize_rows(x, layer["mlp_norm"], NORM_GAIN_BITS, a, row_scale, ops.ROW_BITS,
                                      levels["gate_up"])
            k.rescale_gated(lin.matmul(a), lin.multiplier, row_scale, ops.PRE_SHIFT, lin.shift, self.act_table,
                            self.act_limit, HIDDEN_BITS, hidden)
            a = inputs["down"]
            k.quantize_rows(hidden, a, amax, levels["down"])
            self._add(layer["down"], a, ops.fixed_row_scale(amax, HIDDEN_BITS, 1, levels["down"]), x,
                      layer.get("post_mlp"))
        a = inputs["head"]
        k.norm_gain_quantize_rows(x, self.final_norm, NORM_GAIN_BITS, a, row_scale, ops.ROW_BITS, levels["head"])
        logits = np.empty((b, cfg.vocab_size), dtype=np.int64)
        k.rescale(self.head.matmul(a), self.head.multiplier, row_scale, ops.PRE_SHIFT, self.head.shift, logits)
        return logits

    def _add(self, lin: _Linear, q: np.ndarray, row_scale: np.ndarray, residual: np.ndarray,
             post_norm: np.ndarray | None) -> None:
        y = lin.matmul(q)
        if post_norm is None:
            k.rescale_add(y, lin.multiplier, row_scale, ops.PRE_SHIFT, lin.shift, residual, RESIDUAL_LIMIT)
        elif self.arithmetic != ARITHMETIC:  # v2 and later
            k.product_norm_add(y, lin.multiplier, ops.PRE_SHIFT, post_norm, residual, RESIDUAL_LIMIT)
        else:
            k.rescale_norm_add(y, lin.multiplier, row_scale, ops.PRE_SHIFT, lin.shift, post_norm, residual,
                               RESIDUAL_LIMIT)
