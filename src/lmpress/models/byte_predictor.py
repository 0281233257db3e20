"""A ByteTransformer behind the Predictor protocol, with its KV cache."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lmpress.models.store import load_model, model_id
from lmpress.models.transformer import BOS, ByteTransformer, KVCache
from lmpress.models.vocab import ByteVocabulary


class TransformerPredictor:
    vocab = ByteVocabulary()

    def __init__(self, model: ByteTransformer, name: str, manifest: dict | None = None) -> None:
        self.model = model.eval()
        self.name = name
        self.manifest = manifest or {}
        self.model_id = model_id(model)
        self._cache: KVCache | None = None
        self.embedding_dim = model.cfg.d_model

    @classmethod
    def from_file(cls, path: Path, name: str | None = None) -> TransformerPredictor:
        model, manifest = load_model(path)
        return cls(model, name or str(path), manifest)

    def describe(self) -> dict[str, Any]:
        cfg = self.model.cfg
        return {
            "kind": "byte-transformer",
            "parameters": self.model.num_parameters(),
            "layers": cfg.n_layer,
            "d_model": cfg.d_model,
            "heads": cfg.n_head,
            "kv_heads": cfg.n_kv_head,
            "attention_span": cfg.attn_span,
            "stored_bytes": 4 * self.model.num_parameters(),  # float32 weights
        }

    def _probabilities(self, tokens: torch.Tensor) -> np.ndarray:
        assert self._cache is not None
        logits = self.model.step(tokens, self._cache)
        return torch.softmax(logits, dim=-1).numpy()

    def code_length(self, chunks: list[bytes], prefix: torch.Tensor | None = None) -> torch.Tensor:
        bits = []
        for chunk in chunks:  # one at a time: chunks may differ in length
            targets = torch.frombuffer(bytearray(chunk), dtype=torch.uint8).long()[None]
            inputs = torch.cat([torch.full((1, 1), BOS), targets[:, :-1]], dim=1)
            logits = self.model(inputs, prefix)[0]
            bits.append(F.cross_entropy(logits, targets[0], reduction="sum") / math.log(2))
        return torch.stack(bits)

    @torch.no_grad()
    def embed(self, symbols: np.ndarray) -> np.ndarray:
        return self.model.embed(torch.as_tensor(np.asarray(symbols, dtype=np.int64))).numpy()

    @torch.no_grad()
    def begin(self, batch: int, prefix: np.ndarray | None = None) -> np.ndarray:
        self._cache = self.model.new_cache(batch)
        logits = self.model.step(torch.full((batch,), BOS, dtype=torch.long), self._cache)
        for vector in torch.as_tensor(prefix if prefix is not None else np.zeros((0, self.embedding_dim), np.float32)):
            logits = self.model.step_vectors(vector.expand(batch, -1), self._cache)
        return torch.softmax(logits, dim=-1).numpy()

    @torch.no_grad()
    def advance(self, symbols: np.ndarray) -> np.ndarray:
        return self._probabilities(torch.from_numpy(np.asarray(symbols, dtype=np.int64)))
