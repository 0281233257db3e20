"""Pretrained decoder-only LLMs (Llama family, Gemma 3) re-implemented for lockstep coding.

Hugging Face ``transformers`` loads the weights (from GGUF or a model folder)
and stays the reference; this module runs the same network with a cache laid
out for the codec: a batch of sequences steps one token at a time, every
sequence at the same position, and each layer's keys and values live in a
preallocated buffer that is read only up to what has been written. Where the
window is limited, the buffer is a ring (sliding window), optionally with a
few first positions kept as "attention sinks" so that a long stream can be
coded with a bounded cache (StreamingLLM, Xiao et al. 2023).

Both encoder and decoder call ``step`` with the same shapes, so they compute
bit-identical probabilities (DESIGN.md, contract 2). ``forward_reference``
(in the tests) checks that the logits agree with transformers' own model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LLMConfig:
    family: str  # "llama" or "gemma3"
    vocab_size: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    norm_eps: float
    rope_theta: tuple[float, ...]  # per layer
    layer_window: tuple[int | None, ...]  # per layer: sliding window in tokens, None = full attention
    attention_scale: float
    max_positions: int

    @staticmethod
    def from_hf(config) -> LLMConfig:
        """From a transformers config (LlamaConfig or Gemma3TextConfig)."""
        kind = config.model_type
        n = config.num_hidden_layers
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        rope = config.rope_parameters
        if kind in ("llama", "mistral", "qwen2"):
            if rope.get("rope_type", "default") != "default":
                raise ValueError(f"rope type {rope['rope_type']!r} is not supported")
            window = getattr(config, "sliding_window", None)
            return LLMConfig("llama", config.vocab_size, config.hidden_size, n, config.num_attention_heads,
                             config.num_key_value_heads, head_dim, config.intermediate_size,
                             float(config.rms_norm_eps), (float(rope["rope_theta"]),) * n, (window,) * n,
                             head_dim ** -0.5, config.max_position_embeddings)
        if kind == "gemma3_text":
            thetas, windows = [], []
            for layer_type in config.layer_types:
                params = rope[layer_type]
                if params.get("rope_type", "default") != "default":
                    raise ValueError(f"rope type {params['rope_type']!r} is not supported")
                thetas.append(float(params["rope_theta"]))
                windows.append(config.sliding_window if layer_type == "sliding_attention" else None)
            if config.final_logit_softcapping or config.attn_logit_softcapping:
                raise ValueError("logit soft-capping is not supported")
            return LLMConfig("gemma3", config.vocab_size, config.hidden_size, n, config.num_attention_heads,
                             config.num_key_value_heads, head_dim, config.intermediate_size,
                             float(config.rms_norm_eps), tuple(thetas), tuple(windows),
                             config.query_pre_attn_scalar ** -0.5, config.max_position_embeddings)
        raise ValueError(f"model type {kind!r} is not supported (llama, mistral, qwen2 or gemma3_text)")

    def cache_layout(self, window: int | None, sinks: int) -> list[tuple[int | None, int]]:
        """Per layer, the KV cache's (capacity, sinks): a layer's own sliding window if it is within
        ``window``, else ``window`` (None: unbounded) with ``sinks`` first positions kept."""
        layout = []
        for layer_window in self.layer_window:
            if layer_window is not None and (window is None or layer_window <= window):
                layout.append((layer_window, 0))
            else:
                layout.append((window, sinks))
        return layout

    @property
    def parameters(self) -> int:
        per_layer = (self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)
                     + 3 * self.hidden * self.intermediate)
        return self.vocab_size * self.hidden + self.layers * per_layer


class LayerCache:
    """Keys and values of one layer: [batch, kv_heads, capacity, head_dim], filled in order.

    ``capacity`` None means unbounded: the buffer grows by ``GROWTH`` positions
    when full (the number of tokens a chunk will need is not known in advance,
    and doubling would hold up to twice the memory needed). Otherwise it is a
    ring over the last positions, except that the first ``sinks`` positions keep
    their slots for good. ``dtype``: of the stored keys and values; attention
    reads the whole cache at every step, so a bfloat16 cache halves the memory
    traffic that dominates the step at long contexts.
    """

    GROWTH = 256

    def __init__(self, batch: int, kv_heads: int, head_dim: int, capacity: int | None, sinks: int,
                 dtype: torch.dtype = torch.float32) -> None:
        self.capacity, self.sinks = capacity, sinks if capacity is not None else 0
        size = capacity if capacity is not None else self.GROWTH
        self.k = torch.zeros(batch, kv_heads, size, head_dim, dtype=dtype)
        self.v = torch.zeros(batch, kv_heads, size, head_dim, dtype=dtype)
        self.length = 0  # positions written so far

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write one position ([batch, kv_heads, head_dim]); return the keys and values to attend to."""
        pos = self.length
        if self.capacity is None:
            if pos == self.k.shape[2]:  # grow: same on both sides, since it depends on the position only
                pad = self.k.new_zeros(*self.k.shape[:2], self.GROWTH, self.k.shape[3])
                self.k, self.v = torch.cat((self.k, pad), dim=2), torch.cat((self.v, pad), dim=2)
            slot = pos
        elif pos < self.capacity:
            slot = pos
        else:
            slot = self.sinks + (pos - self.sinks) % (self.capacity - self.sinks)
        self.k[:, :, slot] = k
        self.v[:, :, slot] = v
        self.length += 1
        used = min(self.length, self.k.shape[2])
        return self.k[:, :, :used], self.v[:, :, :used]

    def retain(self, index: torch.Tensor) -> None:
        """Keep the sequences at these batch rows."""
        self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


class LLM(torch.nn.Module):
    """The network, with weights taken from a transformers model's state dict."""

    def __init__(self, cfg: LLMConfig, state: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32) -> None:
        """``dtype``: of the weight matrices and the KV cache (float32, or bfloat16 for speed);
        norms, softmax and the residual stream stay float32."""
        super().__init__()
        self.cfg = cfg
        self.dtype = dtype
        gemma = cfg.family == "gemma3"
        # Gemma's RMSNorm multiplies by (1 + w); fold the 1 in once.
        norm = (lambda w: (w.float() + 1.0)) if gemma else (lambda w: w.float())
        self.embed = state["model.embed_tokens.weight"].float().contiguous()
        self.head = state.get("lm_head.weight", self.embed).to(dtype).contiguous()
        self.embed_scale = math.sqrt(cfg.hidden) if gemma else 1.0
        self.final_norm = norm(state["model.norm.weight"])
        self.layers = []
        for i in range(cfg.layers):
            get = lambda name, prefix=f"model.layers.{i}.": state[prefix + name].float()  # noqa: E731
            layer = {
                # One fused matmul for q, k and v (fewer, larger calls per step).
                "qkv": torch.cat((get("self_attn.q_proj.weight"), get("self_attn.k_proj.weight"),
                                  get("self_attn.v_proj.weight"))).t().to(dtype).contiguous(),
                "o": get("self_attn.o_proj.weight").t().to(dtype).contiguous(),
                "gate_up": torch.cat((get("mlp.gate_proj.weight"),
                                      get("mlp.up_proj.weight"))).t().to(dtype).contiguous(),
                "down": get("mlp.down_proj.weight").t().to(dtype).contiguous(),
                "attn_norm": norm(get("input_layernorm.weight")),
            }
            if gemma:
                layer.update(q_norm=norm(get("self_attn.q_norm.weight")), k_norm=norm(get("self_attn.k_norm.weight")),
                             post_attn_norm=norm(get("post_attention_layernorm.weight")),
                             mlp_norm=norm(get("pre_feedforward_layernorm.weight")),
                             post_mlp_norm=norm(get("post_feedforward_layernorm.weight")))
            else:
                layer["mlp_norm"] = norm(get("post_attention_layernorm.weight"))
            self.layers.append(layer)
        half = cfg.head_dim // 2
        self.inv_freq = [theta ** (-torch.arange(half, dtype=torch.float64) / half) for theta in cfg.rope_theta]

    def new_cache(self, batch: int, window: int | None = None, sinks: int = 4) -> list[LayerCache]:
        """Caches for ``batch`` sequences; ``window`` (tokens) bounds every layer's attention."""
        return [LayerCache(batch, self.cfg.kv_heads, self.cfg.head_dim, capacity, layer_sinks, self.dtype)
                for capacity, layer_sinks in self.cfg.cache_layout(window, sinks)]

    def _rope(self, layer: int, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        # float64 angles: positions of long streams grow large, and both sides compute the same table.
        angles = position * self.inv_freq[layer]
        return torch.cos(angles).float(), torch.sin(angles).float()

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, caches: list[LayerCache]) -> torch.Tensor:
        """Feed one token per sequence (all at the same position); return logits [batch, vocab]."""
        return self.step_vectors(self.embed[tokens] * self.embed_scale, caches)

    @torch.no_grad()
    def step_vectors(self, x: torch.Tensor, caches: list[LayerCache]) -> torch.Tensor:
        """``step`` fed input vectors [batch, hidden] (embeddings as the first layer sees them)."""
        position = caches[0].length

        def attend(i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            cos, sin = self._rope(i, position)
            q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
            keys, values = caches[i].append(k, v)
            # The group of query heads sharing a key head act as that head's queries: [b, nkv, group, hd].
            y = F.scaled_dot_product_attention(q.to(keys.dtype), keys, values, scale=self.cfg.attention_scale)
            return y.float()

        for i in range(self.cfg.layers):
            x = self._layer(i, x, attend)
        return _matmul(_rms_norm(x, self.final_norm, self.cfg.norm_eps), self.head.t())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [batch, T, vocab] for input vectors [batch, T, hidden] (differentiable
        in ``x``: soft-prompt training). Same network as ``step``; positions start at 0."""
        cfg, t = self.cfg, x.shape[1]
        positions = torch.arange(t, dtype=torch.float64)
        distance = positions[:, None] - positions[None, :]

        def attend(i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            angles = positions[:, None] * self.inv_freq[i][None, :]
            cos, sin = torch.cos(angles).float(), torch.sin(angles).float()
            q = _rotate(q, cos[:, None, None], sin[:, None, None])  # [b, T, nkv, group, hd]
            k = _rotate(k, cos[:, None], sin[:, None])  # [b, T, nkv, hd]
            b, nkv, group, hd = q.shape[0], q.shape[2], q.shape[3], q.shape[4]
            window = cfg.layer_window[i]
            mask = (distance >= 0) & (distance < (window if window is not None else t))
            y = F.scaled_dot_product_attention(
                q.permute(0, 2, 3, 1, 4).reshape(b, nkv * group, t, hd), k.transpose(1, 2), v.transpose(1, 2),
                attn_mask=mask, scale=cfg.attention_scale, enable_gqa=True)
            return y.transpose(1, 2)  # [b, T, heads, hd]

        for i in range(cfg.layers):
            x = self._layer(i, x, attend)
        return _matmul(_rms_norm(x, self.final_norm, cfg.norm_eps), self.head.t())

    def _layer(self, i: int, x: torch.Tensor, attend) -> torch.Tensor:
        """One decoder layer on x [..., hidden]; ``attend(i, q, k, v)`` does the positional part."""
        cfg, layer = self.cfg, self.layers[i]
        nh, nkv, hd = cfg.heads, cfg.kv_heads, cfg.head_dim
        h = _rms_norm(x, layer["attn_norm"], cfg.norm_eps)
        qkv = _matmul(h, layer["qkv"])
        lead = qkv.shape[:-1]
        q = qkv[..., : nh * hd].reshape(*lead, nkv, nh // nkv, hd)
        k = qkv[..., nh * hd: (nh + nkv) * hd].reshape(*lead, nkv, hd)
        v = qkv[..., (nh + nkv) * hd:].reshape(*lead, nkv, hd)
        if "q_norm" in layer:
            q = _rms_norm(q, layer["q_norm"], cfg.norm_eps)
            k = _rms_norm(k, layer["k_norm"], cfg.norm_eps)
        out = _matmul(attend(i, q, k, v).reshape(*lead, nh * hd), layer["o"])
        if "post_attn_norm" in layer:
            out = _rms_norm(out, layer["post_attn_norm"], cfg.norm_eps)
        x = x + out
        h = _rms_norm(x, layer["mlp_norm"], cfg.norm_eps)
        gate, up = _matmul(h, layer["gate_up"]).chunk(2, dim=-1)
        act = F.gelu(gate, approximate="tanh") if cfg.family == "gemma3" else F.silu(gate)
        out = _matmul(act * up, layer["down"])
        if "post_mlp_norm" in layer:
            out = _rms_norm(out, layer["post_mlp_norm"], cfg.norm_eps)
        return x + out


def _matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x @ weight in the weight's dtype, back to float32 (a no-op cast for float32 weights)."""
    if weight.dtype == x.dtype:
        return x @ weight
    return (x.to(weight.dtype) @ weight).float()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding in the Hugging Face layout (first half, second half of each head)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
