"""`lmpress train`: a real (tiny) run on corpus text, its outputs, and exact resume from a checkpoint."""

import json
import subprocess
import sys

import pytest
import torch

from lmpress.models.store import load_model


def train(out, steps, corpus, *extra):
    cmd = [sys.executable, "-m", "lmpress.cli", "train", str(out), "--size", "200k", "--steps", str(steps),
           "--batch-size", "2", "--seq-len", "64", "--image", "0", "--audio", "0", "--threads", "1",
           "--data", f"text={corpus / 'text/canterbury/alice29.txt'}",
           "--eval-data", f"text={corpus / 'text/canterbury/fields.c'}",
           "--eval-data", f"image={corpus / 'image/kodak/kodim01.png'}",
           "--eval-data", f"audio={corpus / 'audio/librispeech_test-clean'}",
           "--eval-every", "2", "--eval-chunks", "2", *extra]
    return subprocess.run(cmd, capture_output=True, timeout=600)


def test_train_outputs_and_exact_resume(tmp_path, corpus):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train(straight, 4, corpus).returncode == 0
    assert train(resumed, 2, corpus).returncode == 0
    r = train(resumed, 4, corpus)  # continues from step 2's checkpoint
    assert r.returncode == 0, r.stderr
    assert b"resuming from step 2" in r.stderr

    a, manifest = load_model(straight / "model.pt")
    b, _ = load_model(resumed / "model.pt")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name  # same weights: optimizer, data order and RNG all restored

    assert manifest["steps"] == 4 and manifest["tokens"] == 4 * 2 * 64
    assert manifest["train_files"]["text"] == ["text/canterbury/alice29.txt"]
    assert manifest["eval_files"]["text"][0].endswith("fields.c")
    assert set(manifest["held_out_bits_per_byte"]) >= {"text", "image", "audio"}
    assert 0 < manifest["model_flop_utilization"] < 1
    card = (straight / "MODEL_CARD.md").read_text()
    assert "model id" in card and "lmpress train" in card
    assert (straight / "loss.png").stat().st_size > 0
    assert json.loads((straight / "manifest.json").read_text())["model_id"]


def test_train_refuses_overlapping_split(tmp_path, corpus):
    f = corpus / "text/canterbury/alice29.txt"
    r = train(tmp_path / "x", 1, corpus, "--eval-data", f"text={f}")
    assert r.returncode == 1 and b"both sides of the split" in r.stderr and b"Traceback" not in r.stderr


def test_train_on_ray_gives_the_same_model(tmp_path, corpus):
    pytest.importorskip("ray")
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert train(local, 2, corpus).returncode == 0
    r = train(on_ray, 2, corpus, "--ray")  # a local Ray cluster; the run is one task
    assert r.returncode == 0, r.stderr
    a, _ = load_model(local / "model.pt")
    b, _ = load_model(on_ray / "model.pt")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_bpe_model_trains_resumes_and_codes_any_bytes_exactly(tmp_path, corpus):
    from lmpress.api import compress, decompress
    from lmpress.models.byte_predictor import TransformerPredictor

    out = tmp_path / "bpe"
    assert train(out, 1, corpus, "--vocab", "400").returncode == 0
    tokenizer = (out / "tokenizer.json").read_text()
    r = train(out, 2, corpus, "--vocab", "400")  # resumes with the tokenizer it learned first
    assert r.returncode == 0, r.stderr
    assert (out / "tokenizer.json").read_text() == tokenizer

    model, manifest = load_model(out / "model.pt")
    assert model.cfg.vocab == 400 and manifest["vocab"] == 400 and manifest["tokenizer"] == tokenizer
    assert 1.2 < manifest["bytes_per_token"] < 4  # merges learned from English text
    assert manifest["held_out_bits_per_byte"]["text"] > 0 and set(manifest["held_out_bits_per_byte"]) == {
        "step", "text"}
    predictor = TransformerPredictor.from_file(out / "model.pt")
    assert predictor.vocab.size == 400 and predictor.describe()["vocabulary"] == 400
    assert len(predictor.vocab.tokenize(b"the the the the")) < 15  # BPE tokens, not bytes

    data = (corpus / "text/canterbury/fields.c").read_bytes()[:3000] + bytes(range(256)) + b"\xff\xfe tail"
    archive = compress(data, str(out / "model.pt"))
    assert decompress(archive) == data


def test_bpe_vocabulary_is_for_text_only(tmp_path, corpus):
    cmd = [sys.executable, "-m", "lmpress.cli", "train", str(tmp_path / "x"), "--size", "200k", "--steps", "1",
           "--vocab", "400", "--text", "1", "--image", "1", "--audio", "0"]
    r = subprocess.run(cmd, capture_output=True, timeout=600)
    assert r.returncode == 1 and b"text only" in r.stderr and b"Traceback" not in r.stderr


def test_colour_planes_view_is_what_the_front_end_codes(corpus):
    """--colour-planes trains on the planes the PPM front end codes: green, then red and blue minus green."""
    import numpy as np
    from PIL import Image

    from lmpress.data.views import colour_plane_patches, grayscale_pixels, image_patches
    from lmpress.formats import pnm

    path = corpus / "image" / "kodak" / "kodim03.png"
    rgb = np.asarray(Image.open(path).convert("RGB"))
    patches = colour_plane_patches(path)
    per_plane = len(image_patches(rgb[:, :, 1]))
    assert len(patches) == 3 * per_plane
    parsed = pnm.parse(b"P6 %d %d 255\n" % (rgb.shape[1], rgb.shape[0]) + rgb.tobytes())
    first_stripe = np.frombuffer(parsed.content, np.uint8)[:3 * rgb.shape[0] * 64].reshape(3, rgb.shape[0], 64)
    for plane in range(3):  # the first patch of each plane is the top of the front end's first stripe
        assert np.array_equal(patches[plane * per_plane], first_stripe[plane, :32])
    grey = corpus / "image" / "imagecompression_gray8"
    grey_file = sorted(grey.iterdir())[0]
    assert np.array_equal(colour_plane_patches(grey_file), image_patches(grayscale_pixels(grey_file)))
