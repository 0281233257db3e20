"""Soft prompts: hyper-prior coding, prompt files, prompted archives, and prompt training."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import lmpress
from lmpress import LmpressError, SoftPrompt
from lmpress.coding import entropy
from lmpress.coding.container import ArchiveReader
from lmpress.coding.hyperprior import PRIORS, decode_vectors, encode_vectors
from lmpress.models.prompt import random_prompt, text_prompt
from lmpress.models.registry import load_predictor
from lmpress.train.tune import TuneConfig, tune

TEXT = b"<page><title>Anarchism</title><text>Anarchism is a political philosophy. " * 20


@pytest.fixture(scope="module")
def predictor():
    return load_predictor("default")


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("levels", [2, 16, 200])
def test_hyperprior_decodes_to_the_nearest_level(prior, levels):
    rng = np.random.default_rng(levels)
    vectors = rng.standard_t(4, size=(5, 37)).astype(np.float32) * 0.3 + 0.05
    coded = encode_vectors(vectors, prior, levels)
    decoded = decode_vectors(coded.code)
    assert decoded.shape == vectors.shape and decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, coded.values)
    # every coordinate sits on the reconstruction level nearest to it (no edge/centre mismatch)
    table = np.unique(decoded)
    nearest = table[np.abs(vectors[..., None] - table).argmin(axis=-1)]
    inside = (vectors >= table.min()) & (vectors <= table.max())
    np.testing.assert_allclose(np.abs(vectors - decoded)[inside], np.abs(vectors - nearest)[inside], atol=1e-6)
    assert coded.mse == pytest.approx(float(np.mean((decoded.astype(np.float64) - vectors) ** 2)))
    assert coded.entropy_per_coordinate <= np.log2(levels) + 1e-9
    # the coded indices cost about their empirical entropy, side information aside
    assert coded.bits_per_coordinate >= coded.entropy_per_coordinate - 0.05


def test_lloyd_max_has_the_lowest_error_and_more_levels_help():
    vectors = np.random.default_rng(0).normal(size=(16, 64)).astype(np.float32)
    mse = {p: encode_vectors(vectors, p, 8).mse for p in PRIORS}
    assert mse["lloyd-max"] < mse["gaussian"] and mse["lloyd-max"] < mse["histogram"]
    assert encode_vectors(vectors, "lloyd-max", 64).mse < mse["lloyd-max"] / 10


def test_corrupted_prompt_code_is_an_error():
    coded = encode_vectors(np.ones((2, 8), np.float32) * np.arange(8), "lloyd-max", 4)
    with pytest.raises(LmpressError):
        decode_vectors(coded.code[:9])
    with pytest.raises(LmpressError):
        encode_vectors(np.zeros((2, 2), np.float32), "laplace", 4)


def test_prompt_file_roundtrip_and_model_check(predictor, tmp_path, other_model):
    prompt = random_prompt(predictor, 3, seed=5)
    path = tmp_path / "p.lmprompt"
    prompt.save(path)
    back = SoftPrompt.load(path)
    np.testing.assert_array_equal(back.vectors, prompt.vectors)
    assert back.id == prompt.id and back.info["kind"] == "random"
    assert random_prompt(predictor, 3, seed=6).id != prompt.id
    with pytest.raises(LmpressError, match="made for model"):
        prompt.check_model(load_predictor(str(other_model)))
    (tmp_path / "bad.lmprompt").write_bytes(b"not a prompt")
    with pytest.raises(LmpressError, match="not an lmpress prompt"):
        SoftPrompt.load(tmp_path / "bad.lmprompt")


def test_teacher_forced_code_length_with_prompt_matches_the_coder(predictor):
    """What tune optimises is what the codec spends: step-by-step and teacher-forced agree, exactly for
    the float model and within the exact arithmetic's cost for the integer model the coder runs."""
    prompt = text_prompt(predictor, "<page>")
    chunk = TEXT[:300]
    forced = predictor.code_length([chunk], torch.from_numpy(prompt.vectors)).item()
    for arithmetic, tolerance in (("float32", 1e-4), ("exact", 1e-2)):
        stepped = load_predictor("default", precision=arithmetic, mix=False)
        probs = stepped.begin(1, prompt.vectors)
        bits = 0.0
        for byte in chunk:
            bits += entropy.code_lengths(entropy.frequencies(probs), np.array([byte]))[0]
            probs = stepped.advance(np.array([byte]))
        assert forced == pytest.approx(bits, rel=tolerance), arithmetic
    assert predictor.code_length([chunk]).item() != pytest.approx(forced, rel=1e-4)  # the prompt matters


def test_prompted_archives(predictor):
    data = TEXT + os.urandom(500)
    prompt = random_prompt(predictor, 4)
    named = lmpress.compress(data, chunk_size=512, block_chunks=2, prompt=prompt)
    assert lmpress.decompress(named, prompt=prompt) == data
    with pytest.raises(LmpressError, match="pass it with --prompt"):
        lmpress.decompress(named)
    with pytest.raises(LmpressError, match="soft prompt"):
        lmpress.decompress(named, prompt=random_prompt(predictor, 4, seed=1))
    plain = lmpress.compress(data, chunk_size=512, block_chunks=2)
    assert named != plain
    for prior in PRIORS:
        embedded = lmpress.compress(data, chunk_size=512, block_chunks=2, prompt=prompt, embed_prompt=prior,
                                    prompt_levels=8)
        assert lmpress.decompress(embedded) == data  # self-contained: the prompt travels in the archive
        header = ArchiveReader(io.BytesIO(embedded)).header
        assert header.prompt_code == encode_vectors(prompt.vectors, prior, 8).code  # its bytes are counted
    # the incremental API agrees with the one-shot one
    compressor = lmpress.LmpressCompressor(chunk_size=512, block_chunks=2, prompt=prompt, embed_prompt="gaussian")
    stream = compressor.compress(data[:700]) + compressor.compress(data[700:]) + compressor.flush()
    assert stream == lmpress.compress(data, chunk_size=512, block_chunks=2, prompt=prompt, embed_prompt="gaussian")
    assert lmpress.LmpressDecompressor().decompress(stream) == data
    corrupted = bytearray(embedded)
    corrupted[len(embedded) // 2] ^= 0x40
    with pytest.raises(LmpressError, match="corrupted"):
        lmpress.decompress(bytes(corrupted))


def test_tune_lowers_the_code_length_and_resumes_exactly(predictor, tmp_path):
    data_file = tmp_path / "data.txt"
    data_file.write_bytes(TEXT[:1024])

    def run(out, steps):
        return tune(TuneConfig(out=str(out), tokens=2, steps=steps, batch=1, chunk_size=512, lr=0.5,
                               data=[str(data_file)], threads=1, checkpoint_every=1))

    straight = run(tmp_path / "straight.lmprompt", 12)
    run(tmp_path / "resumed.lmprompt", 5)  # an interrupted run...
    resumed = run(tmp_path / "resumed.lmprompt", 12)  # ...continued from its checkpoint
    np.testing.assert_array_equal(straight.vectors, resumed.vectors)
    assert resumed.info["steps"] == 12 and len(resumed.info["commands"]) == 2
    start = random_prompt(predictor, 2)
    chunks = [TEXT[:512], TEXT[512:1024]]
    before = predictor.code_length(chunks, torch.from_numpy(start.vectors)).sum().item()
    after = predictor.code_length(chunks, torch.from_numpy(straight.vectors)).sum().item()
    assert after < before


def test_cli_tune_then_embedded_prompt(tmp_path):
    data = tmp_path / "page.xml"
    data.write_bytes(TEXT)
    prompt = tmp_path / "page.lmprompt"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "lmpress.cli", *args], capture_output=True, timeout=300)

    r = cli("tune", str(prompt), "--tokens", "2", "--steps", "2", "--batch", "1", "--chunk-size", "256",
            "--data", str(data))
    assert r.returncode == 0, r.stderr
    r = cli("-k", "--prompt", str(prompt), "--embed-prompt", "histogram", "--prompt-levels", "8", str(data))
    assert r.returncode == 0, r.stderr
    r = cli("-d", "-c", str(data) + ".lmpz")  # no --prompt needed: the archive carries it
    assert r.returncode == 0 and r.stdout == TEXT, r.stderr
    r = cli("-c", "--prompt", str(tmp_path / "missing.lmprompt"), str(data))
    assert r.returncode == 1 and "does not exist" in r.stderr.decode() and b"Traceback" not in r.stderr
    r = cli("tune", str(prompt), "--data", str(tmp_path / "nothing"))
    assert r.returncode == 1 and "does not exist" in r.stderr.decode() and b"Traceback" not in r.stderr


PINNED_GAUSSIAN_MASSES = [3440883155879, 15363672265377, 44985373311021, 76947559623051]  # Phi at 2**48


def test_prior_frequencies_are_integer_arithmetic():
    """The Gaussian prior's masses come from decimal arithmetic, not libm: pinned integers, and within
    float rounding of math.erf's."""
    from lmpress.coding.hyperprior import _gaussian_masses, _gaussian_probabilities, _uniform_levels

    levels = _uniform_levels(-3.0, 3.0, 8)
    masses = _gaussian_masses(0.0, 1.0, levels)
    assert masses.sum() == 1 << 48 and masses.dtype == np.int64
    assert np.abs(masses / 2.0**48 - _gaussian_probabilities(0.0, 1.0, levels)).max() < 1e-13
    assert masses[:4].tolist() == PINNED_GAUSSIAN_MASSES
