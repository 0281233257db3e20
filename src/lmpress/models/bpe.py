"""Byte-level BPE vocabularies trained on our own data (the tokenization study).

Hugging Face ``tokenizers`` learns the merges: GPT-2's byte-level
pre-tokenization, no normalization, and all 256 byte values in the initial
alphabet, so every byte string has a tokenization and the codec never needs
an escape. A trained tokenizer travels inside its model file as JSON;
``TokenVocabulary`` (models/vocab.py) makes it exact on any bytes, as it does
for the pretrained LLMs' tokenizers.
"""

from __future__ import annotations

import numpy as np

from lmpress.models.vocab import TokenVocabulary

PIECE_BYTES = 1 << 20  # training text is tokenized in pieces of about this size, cut after a newline


def train_bpe(text: bytes, vocab_size: int):
    """A byte-level BPE tokenizer with ``vocab_size`` tokens (256 bytes + merges) learned from ``text``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size <= 256:
        raise ValueError("a BPE vocabulary has more than the 256 byte tokens")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[], show_progress=False)
    # Merges are learned from text; bytes that are not UTF-8 only need their single-byte tokens.
    lines = text.decode("utf-8", errors="replace").splitlines(keepends=True)
    tokenizer.train_from_iterator(lines, trainer=trainer, length=len(lines))
    return tokenizer


def vocabulary(tokenizer_json: str) -> TokenVocabulary:
    from tokenizers import Tokenizer

    return TokenVocabulary(Tokenizer.from_str(tokenizer_json))


def tokenize_all(vocab: TokenVocabulary, data: bytes) -> np.ndarray:
    """Token ids (int32) of a long byte string, exactly as the codec would tokenize its pieces."""
    parts, start = [], 0
    while start < len(data):
        end = data.find(b"\n", start + PIECE_BYTES)
        end = len(data) if end < 0 else end + 1
        parts.append(vocab.tokenize(data[start:end]).astype(np.int32))
        start = end
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)
