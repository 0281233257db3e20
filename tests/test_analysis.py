"""The studies' analyses on tiny inputs: compressors as generative models."""

from __future__ import annotations

import numpy as np

from lmpress.analysis.generative import CompressorModel, PredictorModel, continue_sample
from lmpress.models.registry import load_predictor


def test_compressor_distribution_prefers_the_repetition():
    context = b"abcdefgh" * 40 + b"abcd"
    for name in ("gzip", "xz"):
        p = CompressorModel(name).distribution(context)
        assert p.shape == (256,) and abs(p.sum() - 1) < 1e-12 and (p > 0).all()
        assert p.argmax() == ord("e"), name  # the byte that continues the pattern is the cheapest
        assert p[ord("e")] > 2 * np.median(p)


def test_predictor_distribution_is_the_models_and_restarts_on_a_new_context():
    predictor = load_predictor("default")
    model = PredictorModel(predictor)
    text = b"<title>Autism</title>"
    expected = predictor.begin(1)
    for b in text:
        expected = predictor.advance(np.array([b]))
    p = model.distribution(text)
    assert np.allclose(p, expected[0] / expected[0].sum())
    other = model.distribution(b"<text>")  # not an extension: the state restarts from BOS
    again = PredictorModel(predictor).distribution(b"<text>")
    assert np.array_equal(other, again)


def test_sampling_is_seeded_and_teacher_forced_cost_is_the_code_length():
    model = CompressorModel("gzip")
    truth = b"abcdefgh"
    prompt = b"abcdefgh" * 20
    first, cost = continue_sample(model, prompt, truth, np.random.default_rng(7), teacher_forced=True)
    second, _ = continue_sample(model, prompt, truth, np.random.default_rng(7), teacher_forced=True)
    assert first == second and len(first) == len(truth)
    expected = -np.mean([np.log2(model.distribution(prompt + truth[:i])[truth[i]]) for i in range(len(truth))])
    assert abs(cost - expected) < 1e-9
    _, nan = continue_sample(model, prompt, truth, np.random.default_rng(7))
    assert np.isnan(nan)  # an autoregressive run does not claim a cost for the truth


def test_in_context_curves_add_up_to_the_whole_chunk(corpus):
    import zlib

    from lmpress.analysis.in_context import CHUNK, compressor_curve, predictor_curve
    from lmpress.bench.measure import cross_entropy_bits

    data = (corpus / "wiki" / "enwik8_head" / "enwik5").read_bytes()[: 2 * CHUNK]
    chunks = np.frombuffer(data, dtype=np.uint8).reshape(2, CHUNK)
    curve = compressor_curve("gzip", chunks, 256)
    whole = np.mean([8 * (len(zlib.compress(c.tobytes(), 9)) - len(zlib.compress(b"", 9))) for c in chunks])
    assert abs(curve.sum() * 256 - whole) < 1e-6  # the buckets telescope to the whole chunk's size
    predictor = load_predictor("default")
    model_curve = predictor_curve(predictor, chunks, 256)
    teacher_forced = cross_entropy_bits(predictor.model, data, CHUNK) / len(data)
    assert abs(model_curve.mean() - teacher_forced) < 0.01 * teacher_forced  # quantization costs < 1%
    assert model_curve[0] > model_curve[-1]  # more context, fewer bits
