"""Named models shipped with lmpress, and how a model name or path becomes a Predictor."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lmpress.errors import LmpressError
from lmpress.models.base import Predictor

WEIGHTS_DIR = Path(__file__).parent / "weights"

# name -> folder under weights/ holding model.pt, MODEL_CARD.md, manifest.json
SHIPPED: dict[str, str] = {
    "multimodal-800k": "multimodal-800k",
}
ALIASES: dict[str, str] = {"default": "multimodal-800k"}


def resolve_name(name: str) -> str:
    return ALIASES.get(name, name)


def shipped_names() -> list[str]:
    return sorted(SHIPPED) + sorted(ALIASES)


@lru_cache(maxsize=4)
def load_predictor(name: str) -> Predictor:
    """A shipped model by name (``default``, ``multimodal-800k``, ...) or a model file by path."""
    from lmpress.models.byte_predictor import TransformerPredictor

    canonical = resolve_name(name)
    if canonical in SHIPPED:
        path = WEIGHTS_DIR / SHIPPED[canonical] / "model.pt"
        if not path.exists():
            raise LmpressError(f"shipped model {canonical!r} is missing its weights ({path})")
        return TransformerPredictor.from_file(path, name=canonical)
    path = Path(name)
    if path.is_file():
        return TransformerPredictor.from_file(path, name=str(path))
    raise LmpressError(f"unknown model {name!r} (shipped: {', '.join(shipped_names())}; or give a model file path)")
