"""A pretrained LLM (GGUF file or Hugging Face folder) behind the Predictor protocol.

Loading a GGUF through transformers de-quantizes every tensor and converts the
tokenizer, which takes 15-50 s; the result (float32 weights, config, tokenizer)
is cached under ``$LMPRESS_CACHE`` (default ``~/.cache/lmpress``) by the
file's SHA-256, so later runs and worker processes start in about a second.
Beside it, the exact arithmetic's integer weights (``exact_model``), made by
this version of lmpress's code. The model id recorded in archives is that SHA-256 (of the GGUF file, or of a
folder's config, tokenizer and weight files).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lmpress.coding import entropy
from lmpress.errors import LmpressError
from lmpress.models.exact import ops, token_mixer
from lmpress.models.exact.llm_model import LLM_ARITHMETIC, RESIDUAL_BITS, ExactLLM
from lmpress.models.llm import LLM, LLMConfig
from lmpress.models.vocab import TokenVocabulary

CACHE_FORMAT = "lmpress-llm-cache/1"
MIX_BY_DEFAULT = False  # whether exact LLMs mix with the token mixer unless told (see the README's measurements)
ATTENTION_SINKS = 4  # first positions kept in a windowed cache (see llm.py)


def cache_root() -> Path:
    return Path(os.environ.get("LMPRESS_CACHE", Path.home() / ".cache" / "lmpress"))


def _sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


def source_files(source: Path) -> list[Path]:
    """The files that define a model: one GGUF, or a folder's config, tokenizer and weights."""
    if source.is_file():
        return [source]
    names = ("config.json", "tokenizer.json", "tokenizer_config.json")
    files = [source / n for n in names if (source / n).exists()]
    files += sorted(source.glob("*.safetensors")) + sorted(source.glob("*.bin"))
    if not (source / "config.json").exists() or len(files) < 3:
        raise LmpressError(f"{source} is not a Hugging Face model folder (config.json, tokenizer, weights)")
    return files


def _convert(source: Path, target: Path) -> None:
    """Load with transformers (the reference loader) and write our cache folder atomically."""
    try:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise LmpressError("pretrained LLMs need the optional extra: pip install 'lmpress[llm]'") from None
    folder, gguf = (source.parent, source.name) if source.is_file() else (source, None)
    kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
    try:
        config = AutoConfig.from_pretrained(str(folder), **kwargs)
        cfg = LLMConfig.from_hf(getattr(config, "text_config", config))
        tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kwargs)
    except Exception as e:  # transformers reports unsupported or broken files in many ways
        raise LmpressError(f"cannot load {source} as a language model: {e}") from None
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    bos = tokenizer.bos_token_id
    if cfg.family == "llama" and tokenizer.convert_ids_to_tokens(0) == "<|endoftext|>":
        bos = 0  # GPT-2-style vocabularies: documents start after the end-of-text token
    if bos is None:
        raise LmpressError(f"{source}: the tokenizer has no beginning-of-sequence token")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    torch.save(state, staging / "weights.pt")
    tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"))
    meta = {"format": CACHE_FORMAT, "source": str(source), "config": asdict(cfg), "bos": int(bos),
            "architecture": config.model_type}
    (staging / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        staging.rename(target)
    except OSError:  # another process converted it first
        if not (target / "meta.json").exists():
            raise


def _code_digest() -> str:
    """SHA-256 of this lmpress's Python sources: a cache of integers made by other code is not read."""
    package = Path(__file__).resolve().parents[1]
    return _sha256_files(sorted(package.rglob("*.py")))[:16]


def exact_model(llm: LLM, arithmetic: str, folder: Path) -> ExactLLM:
    """The exact model of ``llm``, its integers read from ``folder`` when this code stored them there before
    (quantizing SmolLM2's weights takes ~2 s, reading them back ~0.2 s). The cache holds the model's digest;
    a file that does not give it back (damaged) is made again. Only the current code's file is kept."""
    path = folder / f"exact-{arithmetic.replace('/', '-')}-{_code_digest()}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as stored:
                integers = {name: stored[name] for name in stored.files}
            digest = bytes(integers.pop("digest")).decode()
            exact = ExactLLM(llm, arithmetic, integers)
            if exact.digest() == digest:
                return exact
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # made again below
    exact = ExactLLM(llm, arithmetic)
    staging = None
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=path.name + ".", delete=False) as f:
            staging = Path(f.name)
            np.savez(f, digest=np.frombuffer(exact.digest().encode(), dtype=np.uint8), **exact.integers)
        os.replace(staging, path)
        for old in folder.glob(path.name.rsplit("-", 1)[0] + "-*.npz"):  # other code's (temporary files
            if old != path:                                                   # end otherwise)
                old.unlink(missing_ok=True)
    except OSError:  # a read-only or full cache: the model still runs, quantized at every load
        if staging is not None:
            staging.unlink(missing_ok=True)
    return exact


class LLMPredictor:
    """Steps a batch of token sequences in lockstep with the LLM's KV caches."""

    def __init__(self, source: Path, name: str, window: int | None = None, precision: str = "float32",
                 arithmetic: str = LLM_ARITHMETIC, mix: bool | str | None = False) -> None:
        """``arithmetic``: with precision "exact", which exact arithmetic (an archive's, to decode it).
        ``mix``: the token mixer (``models/exact/token_mixer.py``; exact arithmetic only): True or its name
        to mix, None for the LLMs' default (``MIX_BY_DEFAULT``), False for the LLM alone."""
        source = Path(source)
        if not source.exists():
            raise LmpressError(f"model {source} does not exist")
        self.name = name
        self.source = source
        self.model_id = _sha256_files(source_files(source))
        cached = cache_root() / "llm" / self.model_id
        if not (cached / "meta.json").exists():
            _convert(source, cached)
        meta = json.loads((cached / "meta.json").read_text())
        config = meta["config"]
        self.cfg = LLMConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
        dtype = {"exact": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16}.get(precision)
        if dtype is None:
            raise LmpressError(f"LLMs run with precision exact, float32 or bfloat16, not {precision!r}")
        self.precision = precision
        self.llm = LLM(self.cfg, torch.load(cached / "weights.pt", weights_only=True), dtype)
        self.exact = exact_model(self.llm, arithmetic, cached) if precision == "exact" else None
        from tokenizers import Tokenizer

        self.vocab = TokenVocabulary(Tokenizer.from_file(str(cached / "tokenizer.json")))
        if mix is None:
            mix = MIX_BY_DEFAULT and self.exact is not None
        if mix and (self.exact is None or mix not in (True, token_mixer.TOKEN_MIXER)):
            raise LmpressError(f"LLMs mix with {token_mixer.TOKEN_MIXER}, in exact arithmetic (not {mix!r} with "
                               f"precision {precision})")
        self.mixer = (token_mixer.TokenMixer(entropy.TOTAL, self.exact.logit_exp, self.cfg.vocab_size)
                      if mix and self.exact is not None else None)
        # float kernels (no id): the archive decodes on the kind of CPU that made it
        self.arithmetic = None
        if self.exact is not None and self.mixer is None:
            self.arithmetic = {"name": arithmetic, "id": self.exact.digest()[:32]}
        elif self.exact is not None:
            self.arithmetic = {"name": f"{arithmetic}+{token_mixer.TOKEN_MIXER}",
                               "id": token_mixer.mixed_id(self.exact.digest())[:32]}
        self.bos = meta["bos"]
        self.architecture = meta["architecture"]
        if window is not None and window <= ATTENTION_SINKS:
            raise LmpressError(f"context window must be more than {ATTENTION_SINKS} tokens")
        self.window = window
        self._caches: list | None = None  # LayerCache, or ExactLayerCache on the exact path
        self.embedding_dim = self.cfg.hidden

    def describe(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "kind": "llm",
            "architecture": self.architecture,
            "parameters": c.parameters,
            "layers": c.layers,
            "d_model": c.hidden,
            "heads": c.heads,
            "kv_heads": c.kv_heads,
            "vocabulary": self.vocab.size,
            "tokenizer": self.vocab.kind,
            "window": self.window,
            "precision": self.precision,
            "mixer": token_mixer.TOKEN_MIXER if self.mixer is not None else None,
            "stored_bytes": sum(p.stat().st_size for p in source_files(self.source)),
        }

    def _probabilities(self, tokens: torch.Tensor) -> np.ndarray:
        assert self._caches is not None
        return torch.softmax(self.llm.step(tokens, self._caches), dim=-1).numpy()

    def _exact_weights(self, vectors: np.ndarray) -> np.ndarray:
        """Coder weights (int64) after feeding integer input vectors to the exact model (and the mixer)."""
        assert self.exact is not None and self._caches is not None
        logits = self.exact.step(vectors, self._caches)
        if self.mixer is not None:
            return self.mixer.mix(logits)
        return ops.frequencies_from_logits(logits, self.exact.logit_exp, entropy.TOTAL)

    def code_length(self, chunks: list[bytes], prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Bits of each chunk's tokens (escaped bytes: the escape token plus 8 bits)."""
        vocab, bits = self.vocab, []
        bos = self.llm.embed[self.bos][None] * self.llm.embed_scale
        for chunk in chunks:
            symbols = vocab.tokenize(chunk)
            escaped = symbols >= vocab.size
            targets = torch.from_numpy(np.where(escaped, vocab.escape if vocab.escape is not None else 0, symbols))
            parts = [bos] + ([prefix] if prefix is not None else [])
            parts.append(self.llm.embed[targets[:-1]] * self.llm.embed_scale)
            x = torch.cat(parts)[None]
            logits = self.llm(x)[0, x.shape[1] - len(targets):]
            nats = F.cross_entropy(logits, targets, reduction="sum")
            bits.append(nats / math.log(2) + 8.0 * int(escaped.sum()))
        return torch.stack(bits)

    @torch.no_grad()
    def embed(self, symbols: np.ndarray) -> np.ndarray:
        """Input vectors as the first layer sees them (Gemma's embedding scale applied)."""
        return (self.llm.embed[torch.as_tensor(np.asarray(symbols, dtype=np.int64))] * self.llm.embed_scale).numpy()

    @torch.no_grad()
    def begin(self, batch: int, prefix: np.ndarray | None = None) -> np.ndarray:
        prefix = prefix if prefix is not None else np.zeros((0, self.embedding_dim), np.float32)
        if self.window is not None and len(prefix) and len(prefix) + ATTENTION_SINKS >= self.window:
            raise LmpressError("the soft prompt does not fit in the attention window")
        if self.exact is not None:
            self._caches = self.exact.new_cache(batch, self.window, ATTENTION_SINKS)
            if self.mixer is not None:
                self.mixer.begin(batch)
            weights = self._exact_weights(self.exact.embed[np.full(batch, self.bos)])
            for vector in prefix:  # float32 vectors to fixed point: one IEEE rounding, the same everywhere
                fixed = ops.to_fixed(vector, RESIDUAL_BITS)
                weights = self._exact_weights(np.broadcast_to(fixed, (batch, len(fixed))))
            return weights
        self._caches = self.llm.new_cache(batch, self.window, ATTENTION_SINKS)
        logits = self.llm.step(torch.full((batch,), self.bos, dtype=torch.long), self._caches)
        for vector in torch.as_tensor(prefix):  # softmax only after the last input: one per block start
            logits = self.llm.step_vectors(vector.expand(batch, -1), self._caches)
        return torch.softmax(logits, dim=-1).numpy()

    @torch.no_grad()
    def advance(self, symbols: np.ndarray) -> np.ndarray:
        if self.exact is not None:
            if self.mixer is not None:
                self.mixer.update(symbols)
            return self._exact_weights(self.exact.embed[np.asarray(symbols, dtype=np.int64)])
        return self._probabilities(torch.from_numpy(np.asarray(symbols, dtype=np.int64)))

    def retain(self, rows: np.ndarray) -> None:
        assert self._caches is not None
        if self.exact is not None:
            for cache in self._caches:
                cache.retain(np.asarray(rows, dtype=np.int64))
            if self.mixer is not None:
                self.mixer.retain(np.asarray(rows, dtype=np.int64))
            return
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        for cache in self._caches:
            cache.retain(index)
