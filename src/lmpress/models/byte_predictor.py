"""A ByteTransformer behind the Predictor protocol, with its KV cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

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

    @torch.no_grad()
    def begin(self, batch: int) -> np.ndarray:
        self._cache = self.model.new_cache(batch)
        return self._probabilities(torch.full((batch,), BOS, dtype=torch.long))

    @torch.no_grad()
    def advance(self, symbols: np.ndarray) -> np.ndarray:
        return self._probabilities(torch.from_numpy(np.asarray(symbols, dtype=np.int64)))
