"""A small decoder-only byte transformer, in the spirit of nanoGPT's model.py.

Symbols are the 256 byte values (or, for the tokenization study, the ids of a
byte-level BPE vocabulary: ``TransformerConfig.vocab``), plus BOS as input
only. Two ways to run it:

* ``forward(tokens)``: teacher-forced over whole sequences, for training and
  for measuring cross-entropy;
* ``step(tokens, cache)``: one symbol per sequence for a batch of sequences,
  with a key/value cache, for coding. Encoder and decoder both use ``step``,
  so they compute bit-identical probabilities (DESIGN.md, contract 2).

Design choices that make coding fast on a CPU (the memory bus, not the
matmuls, bounds incremental decoding):

* multi-query / grouped-query attention (``n_kv_head`` < ``n_head``) shrinks
  the cache every step re-reads;
* a sliding attention span (``attn_span``): every position sees itself and
  the ``attn_span - 1`` symbols before it, so the cache is a ring buffer of
  fixed size;
* rotary position embeddings: attention depends only on relative distance,
  so a model trained on sequences a little longer than its span behaves the
  same at every position of a longer chunk.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

BOS = 256  # of byte models: the input id after the 256 byte values; never predicted


@dataclass(frozen=True)
class TransformerConfig:
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 1
    attn_span: int = 512
    mlp_ratio: int = 4
    rope_base: float = 10000.0
    vocab: int = 256  # symbols predicted: 256 bytes, or a BPE vocabulary (the tokenization study)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def to_dict(self) -> dict:
        """The config as stored and hashed into the model id; byte models omit ``vocab``, so their
        files and ids are those of before the field existed."""
        d = asdict(self)
        if self.vocab == 256:
            del d["vocab"]
        return d


# The papers' family (Delétang et al. 2023: 200K / 800K / 3.2M parameters).
PRESETS: dict[str, TransformerConfig] = {
    "200k": TransformerConfig(d_model=64, n_layer=4, n_head=4, n_kv_head=1),
    "800k": TransformerConfig(d_model=128, n_layer=4, n_head=4, n_kv_head=1),
    "3.2m": TransformerConfig(d_model=256, n_layer=4, n_head=8, n_kv_head=2),
}


def rope_tables(cfg: TransformerConfig, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of shape [len(positions), head_dim // 2]."""
    half = cfg.head_dim // 2
    inv_freq = cfg.rope_base ** (-torch.arange(half, dtype=torch.float32) / half)
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]
    return torch.cos(angles), torch.sin(angles)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_head * hd, bias=False)
        self.kv_proj = nn.Linear(cfg.d_model, 2 * cfg.n_kv_head * hd, bias=False)
        self.out_proj = nn.Linear(cfg.n_head * hd, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        cfg, (b, t, _) = self.cfg, x.shape
        hd = cfg.head_dim
        q = self.q_proj(x).view(b, t, cfg.n_head, hd).transpose(1, 2)
        k, v = self.kv_proj(x).view(b, t, 2, cfg.n_kv_head, hd).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, cfg.n_head * hd))

    def fuse_for_inference(self) -> None:
        """One projection matrix for q, k, v, with the 1/sqrt(head_dim) score scale folded into q.

        Called whenever a coding cache is created, so it always reflects the current weights.
        """
        scale = 1.0 / math.sqrt(self.cfg.head_dim)
        self._qkv_weight = torch.cat([self.q_proj.weight * scale, self.kv_proj.weight]).detach()

    def step(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
             k_cache: torch.Tensor, v_cache: torch.Tensor, pos: int) -> torch.Tensor:
        """x: [B, d]; pos: index of x in its sequence.

        Ring buffers: keys [B, n_kv, hd, span] (stored transposed, so that q @ K
        streams contiguous rows), values [B, n_kv, span, hd].
        """
        cfg, b = self.cfg, x.shape[0]
        hd, groups, n_q, n_kv = cfg.head_dim, cfg.n_head // cfg.n_kv_head, cfg.n_head, cfg.n_kv_head
        qkv = F.linear(x, self._qkv_weight).view(b, n_q + 2 * n_kv, hd)
        qk = apply_rope(qkv[:, : n_q + n_kv], cos, sin)  # rotate queries and keys together
        slot = pos % cfg.attn_span
        k_cache[:, :, :, slot] = qk[:, n_q:]
        v_cache[:, :, slot] = qkv[:, n_q + n_kv:]
        filled = min(pos + 1, cfg.attn_span)  # read only what is attended
        q = qk[:, :n_q].reshape(b, n_kv, groups, hd)
        scores = torch.matmul(q, k_cache[..., :filled])  # [B, n_kv, groups, filled]
        y = torch.matmul(torch.softmax(scores, dim=-1), v_cache[:, :, :filled])  # [B, n_kv, groups, hd]
        return self.out_proj(y.reshape(b, cfg.n_head * hd))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.norm2 = nn.RMSNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model, bias=False),
            nn.GELU(approximate="tanh"),
            nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model, bias=False),
        )

    def forward(self, x, cos, sin, mask):
        x = x + self.attn(self.norm1(x), cos, sin, mask)
        return x + self.mlp(self.norm2(x))

    def step(self, x, cos, sin, k_cache, v_cache, pos):
        x = x + self.attn.step(self.norm1(x), cos, sin, k_cache, v_cache, pos)
        return x + self.mlp(self.norm2(x))


class KVCache:
    """Ring-buffer key/value cache for a batch of sequences advancing in lockstep."""

    def __init__(self, cfg: TransformerConfig, batch: int) -> None:
        self.k = torch.zeros(cfg.n_layer, batch, cfg.n_kv_head, cfg.head_dim, cfg.attn_span)
        self.v = torch.zeros(cfg.n_layer, batch, cfg.n_kv_head, cfg.attn_span, cfg.head_dim)
        self.pos = 0


class ByteTransformer(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        assert cfg.n_head % cfg.n_kv_head == 0 and cfg.head_dim % 2 == 0
        self.cfg = cfg
        self.bos = cfg.vocab  # the input id that starts every sequence
        self.embed = nn.Embedding(cfg.vocab + 1, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_out = nn.RMSNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab, bias=False)
        self.apply(self._init_weights)
        # GPT-2 style: scale the residual projections by depth.
        for name, p in self.named_parameters():
            if name.endswith("out_proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def num_parameters(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.embed.weight.numel() if non_embedding else n

    def forward(self, tokens: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits [B, T, vocab] for tokens [B, T] (first token usually BOS).

        ``prefix`` [N, d_model]: input vectors (a soft prompt) placed after the
        first token; the logits returned are still those of the T positions
        that predict the T targets.
        """
        x = self.embed(tokens)
        n = 0 if prefix is None else prefix.shape[0]
        if n:
            x = torch.cat([x[:, :1], prefix.expand(x.shape[0], n, -1), x[:, 1:]], dim=1)
        t = x.shape[1]
        cos, sin = rope_tables(self.cfg, torch.arange(t))
        i = torch.arange(t)
        distance = i[:, None] - i[None, :]
        mask = (distance >= 0) & (distance < self.cfg.attn_span)
        for block in self.blocks:
            x = block(x, cos, sin, mask)
        return self.head(self.norm_out(x[:, n:]))

    def new_cache(self, batch: int) -> KVCache:
        for block in self.blocks:
            block.attn.fuse_for_inference()
        return KVCache(self.cfg, batch)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits [B, vocab] for the symbol after ``tokens`` [B], advancing ``cache`` by one."""
        return self.step_vectors(self.embed(tokens), cache)

    @torch.no_grad()
    def step_vectors(self, x: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """``step`` fed input vectors [B, d_model] instead of symbols (soft prompts)."""
        pos = cache.pos
        cos, sin = rope_tables(self.cfg, torch.tensor([pos]))
        for layer, block in enumerate(self.blocks):
            x = block.step(x, cos, sin, cache.k[layer], cache.v[layer], pos)
        cache.pos += 1
        return self.head(self.norm_out(x))
