"""A ByteTransformer behind the Predictor protocol, with its KV cache.

Byte models code bytes; a model trained on a BPE vocabulary (the tokenization
study) codes that vocabulary's tokens, its tokenizer stored in the model file's
manifest.

Two arithmetics (``precision``): ``"exact"`` (the default) runs the integer
model derived from the weights (``models/exact/byte_model.py``) and returns the
coder's integer weights, identical on any CPU; ``"float32"`` runs the float
model as archives of format version 1 did (their probabilities depend on the
CPU's float kernels).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lmpress.coding import entropy
from lmpress.errors import LmpressError
from lmpress.models.exact import mixer, ops
from lmpress.models.exact.byte_model import ARITHMETIC, RESIDUAL_BITS, ExactByteModel, ExactCache
from lmpress.models.store import load_model, model_id
from lmpress.models.transformer import ByteTransformer, KVCache
from lmpress.models.vocab import ByteVocabulary, Vocabulary

PRECISIONS = ("exact", "float32")


def teacher_forced_bits(model: ByteTransformer, vocab: Vocabulary, chunk: bytes,
                        prefix: torch.Tensor | None = None) -> torch.Tensor:
    """Code length in bits of one chunk's symbols from BOS (after ``prefix``), teacher-forced."""
    targets = torch.from_numpy(vocab.tokenize(chunk))[None]
    inputs = torch.cat([torch.full((1, 1), model.bos), targets[:, :-1]], dim=1)
    return F.cross_entropy(model(inputs, prefix)[0], targets[0], reduction="sum") / math.log(2)


class TransformerPredictor:
    def __init__(self, model: ByteTransformer, name: str, manifest: dict | None = None,
                 precision: str = "exact", mix: bool | str | None = None) -> None:
        """``mix``: context mixing: None or True: the default mixer where it applies; a name from
        ``mixer.VARIANTS`` (e.g. the image front end's ``cm/v1-image``); False: the network alone."""
        if precision not in PRECISIONS:
            raise LmpressError(f"byte models run with precision {' or '.join(PRECISIONS)}, not {precision!r}")
        self.model = model.eval()
        self.precision = precision
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
        self._cache: KVCache | ExactCache | None = None
        self.embedding_dim = model.cfg.d_model
        self.exact = ExactByteModel.from_float(model) if precision == "exact" else None
        # context mixing (models/exact/mixer.py): by default wherever it applies, integer bytes models
        can_mix = self.exact is not None and self.vocab.size == 256
        if mix and not can_mix:
            raise LmpressError("context mixing needs exact arithmetic and a byte vocabulary")
        # a mixer name, with "@N" for the colour mixer's plane distance (from the image's layout)
        variant, _, plane = (mix if isinstance(mix, str) else mixer.DEFAULT_MIXER).partition("@")
        if variant not in mixer.VARIANTS or not (plane or "0").isdigit():
            raise LmpressError(f"unknown context mixer {mix!r} (this lmpress has {', '.join(mixer.VARIANTS)})")
        self.mixer = (mixer.ContextMixer(entropy.TOTAL, self.exact.logit_exp, mixer.VARIANTS[variant], name=variant,
                                         plane=int(plane or 0))
                      if can_mix and mix is not False else None)
        # archives name the arithmetic by 128 bits of its SHA-256 (as they name soft prompts)
        self.arithmetic = None
        if self.exact is not None:
            digest = self.exact.digest()
            if self.mixer is None:
                self.arithmetic = {"name": ARITHMETIC, "id": digest[:32]}
            else:
                self.arithmetic = {"name": f"{ARITHMETIC}+{variant}", "id": mixer.mixed_id(digest, variant)[:32]}
                if self.mixer.plane:  # the colour contexts' plane distance: the decoder needs it too
                    self.arithmetic["plane"] = self.mixer.plane

    @classmethod
    def from_file(cls, path: Path, name: str | None = None, precision: str = "exact",
                  mix: bool | str | None = None) -> TransformerPredictor:
        model, manifest = load_model(path)
        return cls(model, name or str(path), manifest, precision, mix)

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
            "precision": self.precision,
            "mixer": self.mixer.name if self.mixer is not None else None,
            **tokens,
        }

    def _probabilities(self, tokens: torch.Tensor) -> np.ndarray:
        assert self._cache is not None
        logits = self.model.step(tokens, self._cache)
        return torch.softmax(logits, dim=-1).numpy()

    def _exact_weights(self, vectors: np.ndarray) -> np.ndarray:
        """Coder weights (int64) after feeding integer input vectors to the exact model (and the mixer)."""
        assert self.exact is not None and isinstance(self._cache, ExactCache)
        logits = self.exact.step(vectors, self._cache)
        if self.mixer is not None:
            return self.mixer.mix(logits)
        return ops.frequencies_from_logits(logits, self.exact.logit_exp, entropy.TOTAL)

    def code_length(self, chunks: list[bytes], prefix: torch.Tensor | None = None) -> torch.Tensor:
        # One at a time: chunks may differ in length.
        return torch.stack([teacher_forced_bits(self.model, self.vocab, chunk, prefix) for chunk in chunks])

    @torch.no_grad()
    def embed(self, symbols: np.ndarray) -> np.ndarray:
        return self.model.embed(torch.as_tensor(np.asarray(symbols, dtype=np.int64))).numpy()

    @torch.no_grad()
    def begin(self, batch: int, prefix: np.ndarray | None = None) -> np.ndarray:
        prefix = prefix if prefix is not None else np.zeros((0, self.embedding_dim), np.float32)
        if self.exact is not None:
            self._cache = self.exact.new_cache(batch)
            if self.mixer is not None:
                self.mixer.begin(batch)
            weights = self._exact_weights(self.exact.embed[np.full(batch, self.model.bos)])
            for vector in prefix:  # float32 vectors to fixed point: one IEEE rounding, the same everywhere
                fixed = ops.to_fixed(vector, RESIDUAL_BITS)
                weights = self._exact_weights(np.broadcast_to(fixed, (batch, len(fixed))))
            return weights
        self._cache = self.model.new_cache(batch)
        logits = self.model.step(torch.full((batch,), self.model.bos, dtype=torch.long), self._cache)
        for vector in torch.as_tensor(prefix):
            logits = self.model.step_vectors(vector.expand(batch, -1), self._cache)
        return torch.softmax(logits, dim=-1).numpy()

    @torch.no_grad()
    def advance(self, symbols: np.ndarray) -> np.ndarray:
        if self.exact is not None:
            symbols = np.asarray(symbols, dtype=np.int64)
            if self.mixer is not None:
                self.mixer.update(symbols)
            return self._exact_weights(self.exact.embed[symbols])
        return self._probabilities(torch.from_numpy(np.asarray(symbols, dtype=np.int64)))

    def retain(self, rows: np.ndarray) -> None:
        assert self._cache is not None
        if isinstance(self._cache, ExactCache):
            self._cache.retain(np.asarray(rows, dtype=np.int64))
            if self.mixer is not None:
                self.mixer.retain(np.asarray(rows, dtype=np.int64))
            return
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        self._cache.k = self._cache.k.index_select(1, index)
        self._cache.v = self._cache.v.index_select(1, index)
