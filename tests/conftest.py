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


def _retained_matches_full_batch(predictor, steps: int = 6, drop_after: int = 3, atol: float = 1e-5) -> None:
    """Dropping finished sequences (Predictor.retain) leaves the others' distributions as they were."""
    import numpy as np

    symbols = np.random.default_rng(0).integers(0, 200, size=(3, steps))
    predictor.begin(3)
    for t in range(steps):
        full = predictor.advance(symbols[:, t])
    predictor.begin(3)
    for t in range(steps):
        if t == drop_after:
            predictor.retain(np.array([0, 2]))
        kept = predictor.advance(symbols[[0, 2], t] if t >= drop_after else symbols[:, t])
    assert kept.shape == (2, full.shape[1])
    assert np.allclose(kept, full[[0, 2]], atol=atol)
    assert not np.allclose(kept[1], full[1], atol=atol)  # row 1 now holds the third sequence


@pytest.fixture(scope="session")
def retain_check():
    return _retained_matches_full_batch
