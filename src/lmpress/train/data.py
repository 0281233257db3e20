"""Training batches drawn from byte views of several modalities with mixture weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lmpress.data.views import colour_plane_patches, view_bytes
from lmpress.models.bpe import tokenize_all
from lmpress.models.transformer import BOS
from lmpress.models.vocab import TokenVocabulary

CHUNK = 2048


class ModalityStream:
    """All training bytes of one modality, concatenated, and how to pick a start.

    ``data`` holds the bytes, or after ``tokenize`` (text only) the BPE token ids. ``colour_planes``: images
    as the front end codes them (a colour image's green and colour-difference planes), not as luma.
    """

    def __init__(self, modality: str, files: Sequence[Path], colour_planes: bool = False) -> None:
        self.modality = modality
        self.files = [str(f) for f in files]

        def view(f: Path) -> bytes:
            if colour_planes and modality == "image":
                return colour_plane_patches(f).tobytes()
            return view_bytes(f, modality)

        parts = [np.frombuffer(view(Path(f)), dtype=np.uint8) for f in files]
        self.data: np.ndarray = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
        self.raw_bytes = len(self.data)

    def tokenize(self, vocab: TokenVocabulary) -> None:
        """Replace the bytes by their token ids, as the codec tokenizes them."""
        if self.modality != "text":
            raise ValueError("only text is tokenized")
        self.data = tokenize_all(vocab, self.data.tobytes())

    def random_start(self, rng: np.random.Generator, length: int) -> int:
        if self.modality == "image":
            # A patch start or its middle (row 16): windows never straddle two patches.
            patch = int(rng.integers(len(self.data) // CHUNK))
            return patch * CHUNK + int(rng.integers(2)) * (CHUNK // 2) * (length <= CHUNK // 2)
        if self.modality == "audio":
            return 2 * int(rng.integers((len(self.data) - length) // 2))  # keep sample alignment
        return int(rng.integers(len(self.data) - length))


class MixtureSampler:
    """Batches of BOS-prefixed windows; each row's modality drawn by weight."""

    def __init__(self, streams: dict[str, ModalityStream], weights: dict[str, float], seq_len: int,
                 bos: int = BOS) -> None:
        self.streams = streams
        self.bos = bos
        self.names = list(streams)
        w = np.array([weights[n] for n in self.names], dtype=np.float64)
        self.probs = w / w.sum()
        self.seq_len = seq_len

    def batch(self, rng: np.random.Generator, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), both [batch, seq_len]; inputs start with BOS."""
        rows = np.empty((batch_size, self.seq_len), dtype=np.int64)
        for i in range(batch_size):
            stream = self.streams[self.names[rng.choice(len(self.names), p=self.probs)]]
            start = stream.random_start(rng, self.seq_len)
            rows[i] = stream.data[start:start + self.seq_len]
        targets = torch.from_numpy(rows)
        inputs = torch.cat([torch.full((batch_size, 1), self.bos), targets[:, :-1]], dim=1)
        return inputs, targets


def eval_chunks(modality: str, files: Sequence[Path], count: int) -> torch.Tensor:
    """``count`` fixed 2048-byte chunks spread evenly over the held-out files."""
    data = np.concatenate([np.frombuffer(view_bytes(Path(f), modality), dtype=np.uint8) for f in files])
    n_chunks = len(data) // CHUNK
    picks = np.linspace(0, n_chunks - 1, num=min(count, n_chunks)).astype(np.int64)
    return torch.from_numpy(np.stack([data[i * CHUNK:(i + 1) * CHUNK] for i in picks]).astype(np.int64))
