"""Soft prompts: input vectors placed before every chunk to steer a model.

A prompt is N vectors in the model's input space (what its first layer sees),
fed after BOS and before the chunk's first symbol (``Predictor.begin``). Three
kinds, as in the LLM-compressor study:

* ``text``: the embeddings of a fixed text's tokens (a hard prefix);
* ``random``: Gaussian vectors with the scale of the model's embeddings (a static soft prompt);
* ``trained``: vectors optimised to minimise the code length of training data
  (``lmpress tune``, ``train/tune.py``).

A prompt file (``.lmprompt``, NumPy ``.npz`` without pickles) holds the vectors
(float32), the id of the model they belong to and a small JSON description. Its
id is the SHA-256 of the model id and the vectors, so an archive that names a
prompt can refuse any other.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmpress.errors import LmpressError
from lmpress.models.base import Predictor

SUFFIX = ".lmprompt"
FORMAT = "lmpress-prompt/1"


@dataclass
class SoftPrompt:
    vectors: np.ndarray  # float32 [tokens, embedding_dim]
    model_id: str
    info: dict = field(default_factory=dict)  # kind, training data, steps, loss, command...

    def __post_init__(self) -> None:
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2:
            raise LmpressError("a soft prompt is a matrix [tokens, embedding dim]")

    @property
    def tokens(self) -> int:
        return self.vectors.shape[0]

    @property
    def id(self) -> str:
        digest = hashlib.sha256(bytes.fromhex(self.model_id))
        digest.update(np.asarray(self.vectors.shape, dtype="<u4").tobytes())
        digest.update(self.vectors.astype("<f4").tobytes())
        return digest.hexdigest()

    @property
    def stored_bytes(self) -> int:
        """Size of the vectors at float32, the precision a prompt file stores."""
        return self.vectors.size * 4

    def check_model(self, predictor: Predictor) -> None:
        if self.model_id != predictor.model_id or self.vectors.shape[1] != predictor.embedding_dim:
            raise LmpressError(f"the soft prompt was made for model id {self.model_id[:12]}, "
                               f"not {predictor.name!r} (id {predictor.model_id[:12]})")

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temporary file, then rename)."""
        path = Path(path)
        buffer = io.BytesIO()
        meta = json.dumps({"format": FORMAT, "model_id": self.model_id, "info": self.info})
        np.savez(buffer, vectors=self.vectors, meta=np.frombuffer(meta.encode(), dtype=np.uint8))
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent or ".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buffer.getvalue())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> SoftPrompt:
        try:
            with np.load(path, allow_pickle=False) as f:
                vectors, meta = f["vectors"], json.loads(f["meta"].tobytes().decode())
        except FileNotFoundError:
            raise LmpressError(f"prompt file {path} does not exist") from None
        except (OSError, ValueError, KeyError) as e:
            raise LmpressError(f"{path} is not an lmpress prompt file ({e})") from None
        if meta.get("format") != FORMAT:
            raise LmpressError(f"{path} is not an lmpress prompt file (format {meta.get('format')!r})")
        return cls(vectors, meta["model_id"], meta.get("info", {}))


def text_prompt(predictor: Predictor, text: str) -> SoftPrompt:
    """The embeddings of ``text``'s tokens: a fixed text prefix as a prompt."""
    symbols = predictor.vocab.tokenize(text.encode())
    if (symbols >= predictor.vocab.size).any():
        raise LmpressError("the prefix text has bytes the model's vocabulary cannot embed")
    return SoftPrompt(predictor.embed(symbols), predictor.model_id, {"kind": "text", "text": text})


def random_prompt(predictor: Predictor, tokens: int, seed: int = 0) -> SoftPrompt:
    """Gaussian vectors whose per-coordinate scale matches the model's token embeddings."""
    if tokens < 1:
        raise LmpressError("a soft prompt needs at least one token")
    sample = predictor.embed(np.arange(min(predictor.vocab.size, 4096)))
    scale = float(np.sqrt(np.mean(sample.astype(np.float64) ** 2)))
    rng = np.random.default_rng(seed)
    vectors = rng.normal(0.0, scale, size=(tokens, predictor.embedding_dim))
    return SoftPrompt(vectors, predictor.model_id, {"kind": "random", "seed": seed, "scale": scale})
