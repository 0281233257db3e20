"""The byte transformer in integer-exact arithmetic: the model the coder runs.

Derived from a trained (float) ``ByteTransformer`` by ``ExactByteModel.from_float``:
RMSNorm gains and the 1/sqrt(head_dim) score scale are folded into the weights,
every weight matrix becomes int8 with one integer multiplier per output channel,
the embedding becomes a 16-bit fixed-point table. A step then only computes
integers (``ops.py``), so encoder and decoder agree on any CPU:

* residual stream at ``RESIDUAL_BITS`` fixed point (int64);
* RMSNorm: exact sum of squares, integer square root; its output is quantized
  to int8 per row (scale-free) and the norm enters as the row scale;
* q, k, v at ``QKV_BITS``; RoPE by integer rotations (``tables.Rotary``);
  queries, keys and values quantized to int8 per position and head, the cache
  holds int8 values and their integer scales;
* attention over the int8 cache in one compiled kernel (``kernels.attention``):
  integer scores, softmax by an integer exp table, exact weighted sum;
* GELU by an integer table; logits at 8 bits; frequencies by the exp table
  (``ops.frequencies_from_logits``).

Weight matmuls multiply int8 values exactly, in float32 BLAS or int32 kernels
(``products.py``). ``reference.py`` is an independent plain-numpy
implementation of the same definition, used to prove it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from lmpress.models.exact import kernels as k
from lmpress.models.exact import ops, rows, tables

ARITHMETIC = "exact-int/v1"  # the definition below; an archive records it
RESIDUAL_BITS = 16
QKV_BITS = 10
HIDDEN_BITS = 9  # MLP hidden activations (the GELU table's resolution)
GELU_LIMIT = 8  # the GELU table covers [-8, 8]; beyond, GELU(x) is 0 or x to better than 2**-40
ROPE_BITS = 14
RESIDUAL_LIMIT = 1 << 27  # |residual| clamp (real 2048): keeps the exact sum of squares within int64
ATTENTION_STEPS = 256  # attention exp table: steps per nat
ATTENTION_ONE = 1 << 15  # exp table value at 0
QKV_LIMIT = 1 << 20  # |q|, |k|, |v| clamp (real 1024): keeps the attention kernel's sums below 2**53
SCORE_SHIFT = 10
MUL_SHIFT = 24
ROW_MUL_SHIFT = SCORE_SHIFT + MUL_SHIFT - 2 * QKV_BITS + ATTENTION_STEPS.bit_length() - 1


NO_HEAD_NORM = np.zeros((0, 1), dtype=np.int64)


def attention_tables() -> np.ndarray:
    return tables.exp_table(ATTENTION_STEPS, ATTENTION_ONE, tables.exp_table_size(ATTENTION_STEPS, ATTENTION_ONE))


def logit_table() -> np.ndarray:
    one = 1 << 30
    return tables.exp_table(ops.LOGIT_STEPS, one, tables.exp_table_size(ops.LOGIT_STEPS, one))


@dataclass
class _Layer:
    qkv: ops.IntLinear
    out: ops.IntLinear
    up: ops.IntLinear
    down: ops.IntLinear


class ExactCache:
    """Per layer, a ring of int8 keys and values [batch, kv heads, head_dim, span] (dimension-major, the
    layout ``kernels.attention`` reads fastest) and their integer scales."""

    def __init__(self, n_layer: int, batch: int, n_kv: int, head_dim: int, span: int) -> None:
        self.k = np.zeros((n_layer, batch, n_kv, head_dim, span), dtype=np.int8)
        self.v = np.zeros((n_layer, batch, n_kv, head_dim, span), dtype=np.int8)
        self.k_amax = np.ones((n_layer, batch, n_kv, span), dtype=np.int64)
        self.v_amax = np.ones((n_layer, batch, n_kv, span), dtype=np.int64)
        self.pos = 0

    def retain(self, rows: np.ndarray) -> None:
        for name in ("k", "v", "k_amax", "v_amax"):
            setattr(self, name, np.ascontiguousarray(getattr(self, name)[:, rows]))


class ExactByteModel:
    def __init__(self, cfg, embed: np.ndarray, layers: list[_Layer], head: ops.IntLinear) -> None:
        self.cfg = cfg
        self.embed = embed  # int64 [vocab + 1, d] at RESIDUAL_BITS
        self.layers = layers
        self.head = head
        self.rotary = tables.Rotary(cfg.head_dim // 2, cfg.rope_base, ROPE_BITS)
        self.attention_exp = attention_tables()
        self.logit_exp = logit_table()
        self.gelu = tables.gelu_table(HIDDEN_BITS, GELU_LIMIT)

    @classmethod
    def from_float(cls, model) -> ExactByteModel:
        """Convert a float ``ByteTransformer`` (elementwise IEEE operations only: the same on any CPU)."""
        cfg = model.cfg
        sd = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
        n_q = cfg.n_head * cfg.head_dim
        layers = []
        for i in range(cfg.n_layer):
            p = f"blocks.{i}."
            g1, g2 = sd[p + "norm1.weight"], sd[p + "norm2.weight"]
            q = sd[p + "attn.q_proj.weight"] * (1.0 / np.sqrt(cfg.head_dim))
            qkv = np.concatenate([q, sd[p + "attn.kv_proj.weight"]]) * g1[None, :]
            layers.append(_Layer(
                qkv=ops.IntLinear(qkv, QKV_BITS),
                out=ops.IntLinear(sd[p + "attn.out_proj.weight"], RESIDUAL_BITS),
                up=ops.IntLinear(sd[p + "mlp.0.weight"] * g2[None, :], HIDDEN_BITS),
                down=ops.IntLinear(sd[p + "mlp.2.weight"], RESIDUAL_BITS),
            ))
            assert layers[-1].qkv.weight.shape[1] == n_q + 2 * cfg.n_kv_head * cfg.head_dim
        head = ops.IntLinear(sd["head.weight"] * sd["norm_out.weight"][None, :], 8)
        embed = ops.to_fixed(sd["embed.weight"], RESIDUAL_BITS)
        return cls(cfg, embed, layers, head)

    def digest(self) -> str:
        """SHA-256 of everything the arithmetic uses: config, integer weights, tables, definition."""
        h = hashlib.sha256()
        h.update(json.dumps({"arithmetic": ARITHMETIC, "config": self.cfg.to_dict()}, sort_keys=True).encode())
        h.update(self.embed.astype("<i8").tobytes())
        for layer in [*self.layers, self.head]:
            parts = [layer.qkv, layer.out, layer.up, layer.down] if isinstance(layer, _Layer) else [layer]
            for lin in parts:
                for a in lin.arrays():
                    h.update(np.ascontiguousarray(a).astype("<f4" if a.dtype == np.float32 else "<i8").tobytes())
        h.update(tables.tables_digest(self.attention_exp, self.logit_exp, self.gelu, self.rotary.digest()))
        return h.hexdigest()

    def export(self, path, positions: int = 8192, mixed_ids: dict[str, str] | None = None) -> None:
        """Everything the arithmetic uses, as integer arrays in one ``.npz`` (read by ``reference.py``,
        which needs neither torch nor this package): config, weights, multipliers, shifts, tables,
        constants, RoPE rotations for positions below ``positions``, and ``mixed_ids``: the arithmetic
        ids of this network mixed with context mixers (by mixer name)."""
        arrays: dict[str, np.ndarray] = {"embed": self.embed, "attention_exp": self.attention_exp,
                                         "logit_exp": self.logit_exp, "gelu": self.gelu}
        rot = [self.rotary.at(p) for p in range(positions)]
        arrays["rope_cos"] = np.stack([c for c, _ in rot])
        arrays["rope_sin"] = np.stack([s for _, s in rot])
        named = {f"layer{i}.{n}": getattr(layer, n) for i, layer in enumerate(self.layers)
                 for n in ("qkv", "out", "up", "down")}
        for name, lin in {**named, "head": self.head}.items():
            arrays[name + ".weight"] = lin.weight.astype(np.int8)  # [in, out]
            arrays[name + ".multiplier"] = lin.multiplier
            arrays[name + ".shift"] = np.array(lin.shift)
        constants = {k: v for k, v in globals().items() if k.isupper() and isinstance(v, int)}
        constants.update(ROW_BITS=ops.ROW_BITS, PRE_SHIFT=ops.PRE_SHIFT, TOTAL=1 << 24,
                         WEIGHT_BITS_ATTENTION=k.WEIGHT_BITS)
        meta = {"arithmetic": ARITHMETIC, "id": self.digest(), "config": self.cfg.to_dict(), "constants": constants,
                "mixed_ids": mixed_ids or {}}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        np.savez(path, **arrays)

    def new_cache(self, batch: int) -> ExactCache:
        c = self.cfg
        return ExactCache(c.n_layer, batch, c.n_kv_head, c.head_dim, c.attn_span)

    def step(self, x: np.ndarray, cache: ExactCache) -> np.ndarray:
        """Integer logits [B, vocab] at 8 bits for input vectors ``x`` (int64 [B, d] at RESIDUAL_BITS); row
        ranges on the threads ``rows.threads`` allows."""
        pos = cache.pos
        parts = rows.run(lambda part: self._step_rows(x[part], cache, part, pos), len(x))
        cache.pos += 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)  # (one thread: no copy per step)

    def _step_rows(self, x: np.ndarray, cache: ExactCache, part: slice, pos: int) -> np.ndarray:
        """``step`` for the batch rows ``part`` (their inputs ``x``), at position ``pos``."""
        cfg, b = self.cfg, x.shape[0]
        hd, n_q, n_kv = cfg.head_dim, cfg.n_head, cfg.n_kv_head
        slot = pos % cfg.attn_span
        cos, sin = self.rotary.at(pos)
        x = np.array(x, dtype=np.int64)  # the residual stream, updated in place
        q8 = np.empty((b, x.shape[1]), dtype=np.int8)
        row_scale = np.empty(b, dtype=np.int64)
        q = np.empty((b, n_q, hd), dtype=np.int32)  # int8 values, as the attention kernel takes them
        q_amax = np.empty((b, n_q), dtype=np.int64)
        attended = np.empty((b, n_kv, n_q // n_kv, hd), dtype=np.int64)
        hidden = np.empty((b, self.layers[0].up.weight.shape[1]), dtype=np.int64)
        hidden8 = np.empty(hidden.shape, dtype=np.int8)
        amax = np.empty(b, dtype=np.int64)
        limit = GELU_LIMIT << HIDDEN_BITS
        for i, layer in enumerate(self.layers):
            keys, values = cache.k[i, part], cache.v[i, part]  # this layer's ring, these rows (views)
            k_amax, v_amax = cache.k_amax[i, part], cache.v_amax[i, part]
            k.norm_quantize_rows(x, q8, row_scale, ops.ROW_BITS)
            lin = layer.qkv
            k.qkv_step(lin.product(q8), lin.multiplier, row_scale, ops.PRE_SHIFT, lin.shift, QKV_LIMIT,
                       NO_HEAD_NORM, cos, sin, ROPE_BITS, n_q, n_kv, q, q_amax, keys, k_amax, values, v_amax, slot)
            k.attention(q.reshape(b, n_kv, n_q // n_kv, hd), q_amax.reshape(b, n_kv, -1), keys, k_amax, values,
                        v_amax, min(pos + 1, cfg.attn_span), ROW_MUL_SHIFT, SCORE_SHIFT, MUL_SHIFT,
                        self.attention_exp, attended)
            k.quantize_rows(attended.reshape(b, n_q * hd), q8, amax)  # the attention output at QKV_BITS, x 127
            self._add(layer.out, q8, ops.fixed_row_scale(amax, QKV_BITS, ops.ACT_MAX), x)
            k.norm_quantize_rows(x, q8, row_scale, ops.ROW_BITS)
            lin = layer.up
            k.rescale_gelu(lin.product(q8), lin.multiplier, row_scale, ops.PRE_SHIFT, lin.shift,
                           self.gelu, limit, hidden)
            k.quantize_rows(hidden, hidden8, amax)
            self._add(layer.down, hidden8, ops.fixed_row_scale(amax, HIDDEN_BITS), x)
        k.norm_quantize_rows(x, q8, row_scale, ops.ROW_BITS)
        logits = np.empty((b, self.head.weight.shape[1]), dtype=np.int64)
        k.rescale(self.head.product(q8), self.head.multiplier, row_scale, ops.PRE_SHIFT, self.head.shift,
                  logits)
        return logits

    @staticmethod
    def _add(lin: ops.IntLinear, q8: np.ndarray, row_scale: np.ndarray, residual: np.ndarray) -> None:
        k.rescale_add(lin.product(q8), lin.multiplier, row_scale, ops.PRE_SHIFT, lin.shift, residual,
                      RESIDUAL_LIMIT)
