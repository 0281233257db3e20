"""A ByteTransformer behind the Predictor protocol, with its KV cache.

Byte models code bytes; a model trained on a BPE vocabulary (the tokenization
study) codes that vocabulary's tokens, its tokenizer stored in the model file's
manifest.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lmpress.errors import LmpressError
from lmpress.models.store import load_model, model_id
from lmpress.models.transformer import ByteTransformer, KVCache
from lmpress.models.vocab import ByteVocabulary, Vocabulary


def teacher_forced_bits(model: ByteTransformer, vocab: Vocabulary, chunk: bytes,
                        prefix: torch.Tensor | None = None) -> torch.Tensor:
    """Code length in bits of one chunk's symbols from BOS (after ``prefix``), teacher-forced."""
    targets = torch.from_numpy(vocab.tokenize(chunk))[None]
    inputs = torch.cat([torch.full((1, 1), model.bos), targets[:, :-1]], dim=1)
    return F.cross_entropy(model(inputs, prefix)[0], targets[0], reduction="sum") / math.log(2)


class TransformerPredictor:
    def __init__(self, model: ByteTransformer, name: str, manifest: dict | None = None) -> None:
        self.model = model.eval()
        self.name = name
        self.manifest = manifest or {}
        tokenizer = self.manifest.get("tokenizer")
        if tokenizer is None:
            self.vocab: Vocabulary = ByteVocabulary()
        else:
            from lmpress.models.bpe import vocabulary

            self.vocab = vocabulary(tokenizer)
        if self.vocab.size != model.cfg.vocab:
            raise LmpressError(f"{name}: the model predicts {model.cfg.vocab} symbols, "
                               f"its vocabulary has {self.vocab.size}")
        self.model_id = model_id(model, tokenizer)
        self._cache: KVCache | None = None
        self.embedding_dim = model.cfg.d_model

    @classmethod
    def from_file(cls, path: Path, name: str | None = None) -> TransformerPredictor:
        model, manifest = load_model(path)
        return cls(model, name or str(path), manifest)

    def describe(self) -> dict[str, Any]:
        cfg = self.model.cfg
        tokens = {} if cfg.vocab == 256 else {"vocabulary": cfg.vocab, "tokenizer": "byte-level-bpe"}
        return {
            "kind": "byte-transformer",
            "parameters": self.model.num_parameters(),
            "layers": cfg.n_layer,
            "d_model": cfg.d_model,
            "heads": cfg.n_head,
            "kv_heads": cfg.n_kv_head,
            "attention_span": cfg.attn_span,
            "stored_bytes": 4 * self.model.num_parameters(),  # float32 weights
            **tokens,
        }

    def _probabilities(self, tokens: torch.Tensor) -> np.ndarray:
        assert self._cache is not None
        logits = self.model.step(tokens, self._cache)
        return torch.softmax(logits, dim=-1).numpy()

    def code_length(self, chunks: list[bytes], prefix: torch.Tensor | None = None) -> torch.Tensor:
        # One at a time: chunks may differ in length.
        return torch.stack([teacher_forced_bits(self.model, self.vocab, chunk, prefix) for chunk in chunks])

    @torch.no_grad()
    def embed(self, symbols: np.ndarray) -> np.ndarray:
        return self.model.embed(torch.as_tensor(np.asarray(symbols, dtype=np.int64))).numpy()

    @torch.no_grad()
    def begin(self, batch: int, prefix: np.ndarray | None = None) -> np.ndarray:
        self._cache = self.model.new_cache(batch)
        logits = self.model.step(torch.full((batch,), self.model.bos, dtype=torch.long), self._cache)
        for vector in torch.as_tensor(prefix if prefix is not None else np.zeros((0, self.embedding_dim), np.float32)):
            logits = self.model.step_vectors(vector.expand(batch, -1), self._cache)
        return torch.softmax(logits, dim=-1).numpy()

    @torch.no_grad()
    def advance(self, symbols: np.ndarray) -> np.ndarray:
        return self._probabilities(torch.from_numpy(np.asarray(symbols, dtype=np.int64)))

    def retain(self, rows: np.ndarray) -> None:
        assert self._cache is not None
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        self._cache.k = self._cache.k.index_select(1, index)
        self._cache.v = self._cache.v.index_select(1, index)
