"""The shipped default model is real: it beats gzip -9 on 2048-byte chunks of held-out data of each modality."""

import numpy as np
import pytest

import lmpress
from lmpress.baselines import Layout
from lmpress.baselines.general import Gzip
from lmpress.bench.measure import chunked_size
from lmpress.data.corpus import split_files
from lmpress.data.views import colour_plane_patches, view_bytes
from lmpress.models.registry import MODEL_FOR


def held_out_sample(modality: str, n_chunks: int = 4) -> bytes:
    """``n_chunks`` 2048-byte chunks from the middle of held-out files (never trained on)."""
    files = split_files(modality, "eval")
    picks = [files[int(i)] for i in np.linspace(0, len(files) - 1, n_chunks)]
    out = b""
    for f in picks:
        data = view_bytes(f, modality)
        middle = (len(data) // 2) // 2048 * 2048
        out += data[middle:middle + 2048]
    return out


@pytest.mark.parametrize("modality", ["text", "image", "audio"])
def test_default_model_beats_gzip_on_chunks(modality):
    data = held_out_sample(modality)
    archive = lmpress.compress(data)
    assert lmpress.decompress(archive) == data
    layout = {"text": Layout(), "image": Layout("image", 64, 32), "audio": Layout("audio", sample_rate=16000)}
    gz = chunked_size(Gzip(), data, layout[modality])
    assert len(archive) < gz, f"{modality}: lmpress {len(archive)} bytes vs gzip -9 chunked {gz} bytes"


@pytest.mark.parametrize("model,modality", [("text-800k", "text"), ("image-800k", "image"), ("audio-800k", "audio")])
def test_unimodal_models_know_their_modality(model, modality):
    """Each shipped unimodal model beats gzip -9 on chunks of its held-out modality and codes it far better
    than data of a modality it never saw (weak transfer, as in the second study)."""
    data = held_out_sample(modality)
    archive = lmpress.compress(data, model, mix=False)  # the network alone, on the studies' chunks
    assert lmpress.decompress(archive) == data
    layout = {"text": Layout(), "image": Layout("image", 64, 32), "audio": Layout("audio", sample_rate=16000)}
    assert len(archive) < chunked_size(Gzip(), data, layout[modality])
    other = held_out_sample("audio" if modality == "text" else "text")
    assert len(archive) / len(data) < 0.8 * len(lmpress.compress(other, model, mix=False)) / len(other)


def test_the_image_model_chosen_for_images_beats_the_default_on_them():
    """The image model lmpress picks (the default trained further on images; it kept what it knew of text, so
    the transfer test above does not apply to it) must code images better than the default."""
    data = held_out_sample("image")
    chosen = lmpress.compress(data, MODEL_FOR["image"], mix=False)
    default = lmpress.compress(data, "default", mix=False)
    assert lmpress.decompress(chosen) == data
    assert len(chosen) < 0.99 * len(default)


def test_the_colour_planes_model_knows_colour_differences(corpus):
    """image-800k-v3 saw the planes the front end codes (--colour-planes): on a held-out photo's red-green and
    blue-green planes it beats image-800k-v2, which saw luma only."""
    patches = colour_plane_patches(corpus / "image" / "kodak" / "kodim03.png")
    n = len(patches) // 3
    data = patches[n + n // 2:n + n // 2 + 4].tobytes() + patches[2 * n + n // 2:2 * n + n // 2 + 4].tobytes()
    planes = lmpress.compress(data, "image-800k-v3", mix=False)
    luma = lmpress.compress(data, "image-800k-v2", mix=False)
    assert lmpress.decompress(planes) == data
    assert len(planes) < 0.99 * len(luma)
