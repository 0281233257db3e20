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
    predictor = load_predictor("default", mix=False)
    model_curve = predictor_curve(predictor, chunks, 256)
    teacher_forced = cross_entropy_bits(predictor.model, data, CHUNK) / len(data)
    assert abs(model_curve.mean() - teacher_forced) < 0.01 * teacher_forced  # quantization costs < 1%
    assert model_curve[0] > model_curve[-1]  # more context, fewer bits


def test_quantized_storage_sizes_and_errors():
    from lmpress.analysis.model_size import quantized
    from lmpress.models.registry import SHIPPED, WEIGHTS_DIR
    from lmpress.models.store import load_model

    model, _ = load_model(WEIGHTS_DIR / SHIPPED["multimodal-800k"] / "model.pt")
    matrices = [p for p in model.parameters() if p.dim() == 2]
    vectors = sum(p.numel() for p in model.parameters() if p.dim() < 2)
    n2 = sum(p.numel() for p in matrices)
    _, fp32 = quantized(model, "float32")
    half, fp16 = quantized(model, "float16")
    int8, q8 = quantized(model, "int8")
    assert fp32 == 4 * model.num_parameters()
    assert fp16 == 2 * n2 + 4 * vectors
    assert q8 == n2 + 4 * sum(p.shape[0] for p in matrices) + 4 * vectors
    for original, rounded in zip(matrices, [p for p in int8.parameters() if p.dim() == 2]):
        step = original.abs().amax(dim=1, keepdim=True) / 127
        assert ((original - rounded).abs() <= step / 2 + 1e-7).all()  # nearest of the 255 levels
        assert all(len(row.unique()) <= 255 for row in rounded[:4])
    assert next(p for p in half.parameters() if p.dim() == 2).dtype.is_floating_point
    assert list(model.parameters())[0] is not list(int8.parameters())[0]  # the original is untouched


def test_model_size_adjusts_by_dataset_size(other_model, tmp_path):
    from lmpress.analysis.model_size import plot, run, training_budget

    result = run([str(other_model)], "text", 2048, ["float32", "int8"], [1e4, 1e9], workers=1)
    fp32, int8 = result["points"]
    assert fp32["model"] == int8["model"] == "tiny-untrained"  # named as its manifest names it, not by path
    assert fp32["trained"] == "unknown data"  # its manifest says nothing of its training
    assert training_budget({"modalities": ["text"], "tokens": 2_457_600}) == "text, 2.5M tokens"
    plot(result, tmp_path / "size.png")
    assert (tmp_path / "size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fp32["stored_bytes"] > int8["stored_bytes"]
    for p in (fp32, int8):
        assert p["adjusted"]["1e+04"] == p["rate"] + p["stored_bytes"] / 1e4
    assert result["best"]["1e+04"].endswith("(int8)")  # small data: the smaller stored model wins


def test_tokenization_study_trains_codes_and_reuses_models(tmp_path):
    from lmpress.analysis import tokenization

    runs = tmp_path / "runs"
    result = tokenization.run(runs, ["200k"], [256, 300], steps=1, sample_bytes=4096, batch_size=2, seq_len=32,
                              workers=1, eval_chunks=4)
    byte_row, bpe_row = result["rows"]
    assert (byte_row["vocab"], bpe_row["vocab"]) == (256, 300)
    assert byte_row["bytes_per_token"] == 1.0 and bpe_row["bytes_per_token"] > 1.0
    assert bpe_row["parameters"] - byte_row["parameters"] == 2 * 44 * 64  # 44 more embedding and output rows
    assert 0 < byte_row["rate"] < 2 and 0 < bpe_row["rate"] < 2  # coded and decoded (coded_rate checks)
    assert tokenization.best_vocab(result)["200k"] in (256, 300)
    tokenization.write(result, tmp_path / "out")
    assert (tmp_path / "out" / "tokenization.png").stat().st_size > 0

    stamp = (runs / "200k-v300" / "model.pt").stat().st_mtime_ns
    again = tokenization.run(runs, ["200k"], [300], steps=1, sample_bytes=4096, batch_size=2, seq_len=32, workers=1,
                             eval_chunks=4)
    assert (runs / "200k-v300" / "model.pt").stat().st_mtime_ns == stamp  # finished models are reused
    assert again["rows"][0]["rate"] == bpe_row["rate"]
