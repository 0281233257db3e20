"""The Predictor protocol: what the codec needs from any model.

A predictor advances a batch of independent sequences in lockstep. Each
sequence starts from a BOS state; every ``advance`` call feeds one symbol per
sequence and returns the next-symbol distribution of every sequence. Symbols
are the ids of the predictor's vocabulary (``models/vocab.py``): the 256 byte
values for byte models, tokens with exact byte pieces for LLMs. The
encoder and the decoder make exactly the same calls, so both see bit-identical
probabilities (DESIGN.md, contract 2).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from lmpress.models.vocab import Vocabulary


class Predictor(Protocol):
    name: str  # the name an archive records (registry name or path)
    model_id: str  # hex SHA-256 of weights and config
    vocab: Vocabulary  # symbols and the bytes each stands for
    embedding_dim: int  # width of the input vectors (soft prompts live there)
    precision: str  # the arithmetic: "exact" (integer, portable) or a float dtype ("float32", "bfloat16")
    arithmetic: dict | None  # exact: {"name", "id"} recorded in archives; None for float kernels
    mixer: Any | None  # the context mixer mixed into the network's predictions (models/exact/mixer.py), or None

    def describe(self) -> dict[str, Any]:
        """Facts for the archive header and ``lmpress info`` (parameters, layers, ...)."""
        ...

    def begin(self, batch: int, prefix: np.ndarray | None = None) -> np.ndarray:
        """Start ``batch`` sequences at BOS; return the first distributions [batch, vocab.size]: float32
        probabilities, or (exact predictors) int64 coder weights, as ``coding/entropy.frequencies`` takes them.

        ``prefix`` [N, embedding_dim]: input vectors fed after BOS (a soft prompt,
        ``models/prompt.py``); the first distributions are those after its last vector.
        """
        ...

    def embed(self, symbols: np.ndarray) -> np.ndarray:
        """The input vectors of symbols, float32 [len(symbols), embedding_dim]."""
        ...

    def code_length(self, chunks: list[bytes], prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced code length in bits of each chunk, as the codec would code it from BOS
        (after ``prefix``); differentiable in ``prefix``, for soft-prompt training."""
        ...

    def advance(self, symbols: np.ndarray) -> np.ndarray:
        """Feed one symbol per sequence (int array [batch]); return the next distributions."""
        ...

    def retain(self, rows: np.ndarray) -> None:
        """Keep only the sequences at these batch rows (ascending); they become rows 0, 1, ..."""
        ...
