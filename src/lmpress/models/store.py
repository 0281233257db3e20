"""Model files: weights, config and training manifest in one ``.pt`` file, and the model id.

The model id is a SHA-256 over the canonical config, every weight tensor's
bytes (float32, in name order) and, for a BPE model, its tokenizer. Archives
record it, so an archive can never be decoded with other weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

from lmpress.errors import LmpressError
from lmpress.models.transformer import ByteTransformer, TransformerConfig

FORMAT = "lmpress-byte-transformer/1"


def model_id(model: ByteTransformer, tokenizer: str | None = None) -> str:
    """``tokenizer``: the JSON of a BPE model's tokenizer (byte models have none)."""
    h = hashlib.sha256()
    h.update(json.dumps(model.cfg.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    if tokenizer is not None:
        h.update(tokenizer.encode())
    return h.hexdigest()


def save_model(path: Path, model: ByteTransformer, manifest: dict) -> None:
    """Write atomically: a killed save never leaves a half model file."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "config": model.cfg.to_dict(),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "manifest": manifest,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a model file is not
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_model(path: Path) -> tuple[ByteTransformer, dict]:
    """(model in eval mode, manifest)."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise LmpressError(f"model file not found: {path}") from None
    except Exception as e:  # torch raises many types for a file that is not a model
        raise LmpressError(f"{path}: not an lmpress model file ({e.__class__.__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise LmpressError(f"{path}: not an lmpress model file")
    model = ByteTransformer(TransformerConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload.get("manifest", {})
