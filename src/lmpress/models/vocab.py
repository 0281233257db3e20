"""Vocabularies: how a chunk of bytes becomes the symbols a predictor codes, exactly.

A vocabulary maps every symbol id to the bytes it stands for (its *piece*).
Coding a chunk codes a symbol sequence whose pieces concatenate to the chunk;
the decoder appends pieces until it has the chunk's length (known from the
container), so no end-of-chunk symbol or token count is stored.

* ``ByteVocabulary``: the 256 byte values (the byte models).
* ``TokenVocabulary``: a pretrained LLM's tokenizer (byte-level BPE as in
  GPT-2 / SmolLM2, or SentencePiece with byte fallback as in Gemma). Any
  input is exact (DESIGN.md, contract 4): valid UTF-8 runs are tokenized and
  checked to concatenate back to the same bytes; invalid bytes, and any run
  whose tokenization does not give its bytes back, are coded as single-byte
  tokens. A vocabulary may lack some single-byte tokens (SmolLM2 has none
  for 21 byte values its training never saw, e.g. 0xFF); such a byte is
  coded as an *escape*: a control token the tokenizer never emits, predicted
  by the model like any token, followed by the byte under a uniform
  distribution. Escaped bytes have the symbol ids ``size + byte``.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Protocol

import numpy as np

from lmpress.errors import LmpressError


class Vocabulary(Protocol):
    size: int  # number of symbols the model predicts
    escape: int | None  # the symbol that announces an escaped byte (id size + byte), if any
    piece_lengths: np.ndarray  # int64 [size + 256]: bytes each symbol (or escaped byte) stands for

    def tokenize(self, chunk: bytes) -> np.ndarray:
        """Symbol ids (int64) whose pieces concatenate to exactly ``chunk``."""
        ...

    def piece(self, symbol: int) -> bytes:
        ...


class ByteVocabulary:
    size = 256
    escape = None
    piece_lengths = np.ones(512, dtype=np.int64)

    def tokenize(self, chunk: bytes) -> np.ndarray:
        return np.frombuffer(chunk, dtype=np.uint8).astype(np.int64)

    def piece(self, symbol: int) -> bytes:
        return bytes([symbol])


@lru_cache(maxsize=1)
def _gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character that stands for each byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


_SENTENCEPIECE_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_INVALID_UTF8 = re.compile("([\udc80-\udcff]+)")  # bytes that surrogateescape could not decode


class TokenVocabulary:
    """A Hugging Face fast tokenizer, made exact for arbitrary bytes."""

    def __init__(self, tokenizer) -> None:
        backend = tokenizer.backend_tokenizer if hasattr(tokenizer, "backend_tokenizer") else tokenizer
        spec = json.loads(backend.to_str())
        self._backend = backend
        self._backend.encode_special_tokens = True  # "<bos>" in a file is text, not a control token
        vocab = backend.get_vocab(with_added_tokens=True)
        self.size = max(vocab.values()) + 1
        decoders = json.dumps(spec.get("decoder"))
        pieces: list[bytes] = [b""] * self.size
        if "ByteLevel" in decoders:
            self.kind = "byte-level-bpe"
            table = _gpt2_byte_decoder()
            for token, i in vocab.items():
                try:
                    pieces[i] = bytes(table[c] for c in token)
                except KeyError:  # an added/special token written as plain text
                    pieces[i] = token.encode()
        elif "ByteFallback" in decoders:
            self.kind = "sentencepiece"
            for token, i in vocab.items():
                m = _SENTENCEPIECE_BYTE.fullmatch(token)
                pieces[i] = bytes([int(m.group(1), 16)]) if m else token.replace("\u2581", " ").encode()
        else:
            raise LmpressError("tokenizer is neither byte-level BPE nor SentencePiece with byte fallback; "
                               "it cannot code arbitrary bytes")
        self.pieces = pieces + [bytes([b]) for b in range(256)]  # then the escaped bytes
        self.piece_lengths = np.array([len(p) for p in self.pieces], dtype=np.int64)
        self.byte_tokens = np.full(256, -1, dtype=np.int64)
        if self.kind == "byte-level-bpe":
            for c, b in _gpt2_byte_decoder().items():
                self.byte_tokens[b] = vocab.get(c, -1)
        else:
            for b in range(256):
                self.byte_tokens[b] = vocab.get(f"<0x{b:02X}>", -1)
        missing = np.flatnonzero(self.byte_tokens < 0)
        self.escape = None
        if len(missing):
            special = [t.content for t in backend.get_added_tokens_decoder().values() if t.special]
            if not special:
                raise LmpressError("tokenizer has neither a token for every byte value nor a control token "
                                   "to escape the others with; it cannot code arbitrary bytes")
            self.escape = vocab[sorted(special, key=vocab.get)[0]]  # the lowest id: stable and documented
            self.byte_tokens[missing] = self.size + missing
        self.fallback_bytes = 0  # bytes coded as single-byte tokens so far (for reports)

    def _as_bytes(self, run: str) -> np.ndarray:
        data = run.encode("utf-8", errors="surrogateescape")
        self.fallback_bytes += len(data)
        return self.byte_tokens[np.frombuffer(data, dtype=np.uint8)]

    def tokenize(self, chunk: bytes) -> np.ndarray:
        parts = []
        for i, run in enumerate(_INVALID_UTF8.split(chunk.decode("utf-8", errors="surrogateescape"))):
            if not run:
                continue
            if i % 2:  # odd parts are the captured invalid bytes
                parts.append(self._as_bytes(run))
                continue
            ids = self._backend.encode(run, add_special_tokens=False).ids
            if self.escape not in ids and b"".join(self.pieces[t] for t in ids) == run.encode():
                parts.append(np.asarray(ids, dtype=np.int64))
            else:  # the tokenizer normalized something: code this run byte by byte
                parts.append(self._as_bytes(run))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def piece(self, symbol: int) -> bytes:
        return self.pieces[symbol]
