from __future__ import annotations

from pathlib import Path

import pytest

from lmpress.data.corpus import corpus_root
from lmpress.models.store import save_model
from lmpress.models.transformer import ByteTransformer, TransformerConfig


@pytest.fixture(scope="session")
def corpus() -> Path:
    return corpus_root()  # raises a clear LmpressError when ../shared/corpus is missing


@pytest.fixture(scope="session")
def other_model(tmp_path_factory) -> Path:
    """A second, tiny, untrained model: archives made with it must not decode with another."""
    import torch

    torch.manual_seed(1234)
    model = ByteTransformer(TransformerConfig(d_model=32, n_layer=1, n_head=2, n_kv_head=1, attn_span=64))
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    save_model(path, model.eval(), {"name": "tiny-untrained"})
    return path
