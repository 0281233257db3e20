"""The integer-exact coding arithmetic: tables, kernels against their definitions, the model against its
float original, batch independence, and the independent numpy reference decoder."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import lmpress
from lmpress.coding import entropy
from lmpress.models.exact import kernels, ops, tables
from lmpress.models.exact.byte_model import ExactByteModel
from lmpress.models.registry import WEIGHTS_DIR, load_predictor
from lmpress.models.store import load_model

REFERENCE = ops.__file__.replace("ops.py", "reference.py")


def test_tables_are_the_integers_they_were():
    """Pinned: a machine (or decimal library) that computes other tables would make other archives."""
    e = tables.exp_table(256, 1 << 15, tables.exp_table_size(256, 1 << 15))
    assert e[0] == 1 << 15 and e[256] == round((1 << 15) / math.e) and e[-1] == 0 and e[-2] > 0
    rotary = tables.Rotary(16, 10000.0, 14)
    cos, sin = rotary.at(0)
    assert (cos == 1 << 14).all() and (sin == 0).all()
    cos, sin = rotary.at(5000)  # far positions come from the two-level table
    assert np.abs(cos / 2**14 - np.cos(5000 * 10000.0 ** (-np.arange(16) / 16))).max() < 1e-4
    digest = tables.tables_digest(e, tables.gelu_table(9, 8), rotary.digest()).hex()
    assert digest[:16] == "097a2dfb32ae470e", digest


def _python_quantize(row: list[int]) -> tuple[list[int], int]:
    amax = max(1, *(abs(v) for v in row))
    inv = (127 << 40) // amax
    return [(v * inv + (1 << 39)) >> 40 for v in row], amax


def test_kernels_match_their_definitions_in_python_integers():
    rng = np.random.default_rng(0)
    x = rng.integers(-(1 << 27), 1 << 27, size=(5, 128))
    x[1] = 0  # all-zero row: amax 1
    x[2, :] = 1 << 27  # the clamp limit
    q, row_scale = np.empty(x.shape, np.float32), np.empty(5, np.int64)
    kernels.norm_quantize_rows(x, q, row_scale, ops.ROW_BITS)
    for b in range(5):
        row = [int(v) for v in x[b]]
        expected, amax = _python_quantize(row)
        assert q[b].astype(int).tolist() == expected
        assert all(-127 <= v <= 127 for v in expected)
        rms = max(math.isqrt(sum(v * v for v in row) // 128), 1)
        assert row_scale[b] == (amax << ops.ROW_BITS) // (127 * rms)

    y = rng.integers(-(1 << 23), 1 << 23, size=(3, 7)).astype(np.float32)
    mult = rng.integers(1, 1 << 20, size=7)
    scale = rng.integers(1, 1 << 21, size=3)
    out = np.empty((3, 7), np.int64)
    kernels.rescale(y, mult, scale, ops.PRE_SHIFT, 9, out)
    for b in range(3):
        for o in range(7):
            t = (int(y[b, o]) * int(mult[o]) + (1 << 11)) >> 12
            assert out[b, o] == (t * int(scale[b]) + (1 << 8)) >> 9


def _round_shift(x: int, s: int) -> int:
    return x << -s if s <= 0 else (x + (1 << (s - 1))) >> s


def test_post_norm_kernel_matches_its_definition_at_any_row_scale():
    """``product_norm_add`` (LLM post-norms): RMSNorm of the product held at 24 bits, in Python integers;
    a row of small products gets the same precision as a row of large ones."""
    rng = np.random.default_rng(1)
    y = rng.integers(-(1 << 20), 1 << 20, size=(3, 40))
    y[1] = y[0] >> 12  # the same direction, 4096 times smaller
    mult = rng.integers(1 << 10, 1 << 20, size=40)
    gain = rng.integers(1, 1 << 19, size=40)
    residual = rng.integers(-(1 << 20), 1 << 20, size=(3, 40))
    out = residual.copy()
    kernels.product_norm_add(y, mult, ops.PRE_SHIFT, gain, out, 1 << 26)
    for b in range(3):
        u = [_round_shift(int(v) * int(m), ops.PRE_SHIFT) for v, m in zip(y[b], mult)]
        bits = max(1, *(abs(v) for v in u)).bit_length()
        u = [_round_shift(v, bits - 24) for v in u]
        squares = sum(v * v for v in u)
        p = 0
        while p < 16 and squares >> (60 - 2 * p) == 0:
            p += 1
        rms = max(math.isqrt((squares << 2 * p) // 40), 1)
        expected = [min(max(int(r) + ((v * int(g)) << p) // rms, -(1 << 26)), 1 << 26)
                    for r, v, g in zip(residual[b], u, gain)]
        assert out[b].tolist() == expected
    added = out - residual
    assert np.abs(added[1] - added[0]).max() <= 0.01 * np.abs(added[0]).max()


def _python_attention(q, q_amax, keys, k_amax, values, v_amax, row_mul_shift, table):
    """The attention step's definition (``kernels.attention``) for one query, in Python integers."""
    from lmpress.models.exact.byte_model import MUL_SHIFT, SCORE_SHIFT

    scores = [sum(int(a) * int(b) for a, b in zip(q, key)) * int(ka) for key, ka in zip(keys, k_amax)]
    row_mul = (int(q_amax) << row_mul_shift) // (127 * 127)
    last = len(table) - 1
    p = [int(table[min((((max(scores) - s) >> SCORE_SHIFT) * row_mul) >> MUL_SHIFT, last)]) for s in scores]
    w = [pj * int(va) for pj, va in zip(p, v_amax)]
    peak = max(1, *w)
    inverse = (1 << kernels.WEIGHT_BITS << 40) // peak
    w14 = [(wj * inverse + (1 << 39)) >> 40 for wj in w]
    shift = max(0, peak.bit_length() - 24)
    out = []
    for c in range(len(q)):
        t = (sum(wj * int(v[c]) for wj, v in zip(w14, values)) * (peak >> shift)) // sum(p)
        back = shift - kernels.WEIGHT_BITS
        out.append(t << back if back >= 0 else (t + (1 << (-back - 1))) >> -back)
    return out


@pytest.mark.parametrize("groups,head_dim,n", [(4, 32, 300), (3, 18, 1030), (6, 8, 40)])
def test_attention_kernel_matches_its_definition(groups, head_dim, n):
    """Any group count (four at a time and the rest), a head size that is not a multiple of 4, and more
    than SUM_PART positions."""
    from lmpress.models.exact.byte_model import MUL_SHIFT, ROW_MUL_SHIFT, SCORE_SHIFT, attention_tables

    rng = np.random.default_rng(n)
    b, h, span = 2, 2, n + 5
    table = attention_tables()
    q = rng.integers(-127, 128, (b, h, groups, head_dim)).astype(np.int32)
    q_amax = rng.integers(1, 1 << 16, (b, h, groups))
    keys = rng.integers(-127, 128, (b, h, span, head_dim)).astype(np.int8)
    values = rng.integers(-127, 128, (b, h, span, head_dim)).astype(np.int8)
    k_amax, v_amax = rng.integers(1, 1 << 12, (b, h, span)), rng.integers(1, 1 << 20, (b, h, span))
    out = np.empty((b, h, groups, head_dim), np.int64)
    dimension_major = lambda a: np.ascontiguousarray(np.swapaxes(a, -1, -2))  # noqa: E731 - the caches' layout
    kernels.attention(q, q_amax, dimension_major(keys), k_amax, dimension_major(values), v_amax, n,
                      ROW_MUL_SHIFT, SCORE_SHIFT, MUL_SHIFT, table, out)
    for i, j, g in [(0, 0, 0), (1, 1, groups - 1), (0, 1, 1)]:
        expected = _python_attention(q[i, j, g], q_amax[i, j, g], keys[i, j, :n], k_amax[i, j, :n],
                                     values[i, j, :n], v_amax[i, j, :n], ROW_MUL_SHIFT, table)
        assert out[i, j, g].tolist() == expected


def test_int_linear_exact_for_any_kernel_order():
    """q @ W on int8 values in float32 equals the int64 product (all partial sums below 2**24)."""
    rng = np.random.default_rng(1)
    lin = ops.IntLinear(rng.normal(size=(64, ops.MAX_EXACT_K)), 10)
    q = np.full((4, ops.MAX_EXACT_K), 127, dtype=np.float32)
    q[1:] = rng.integers(-127, 128, size=(3, ops.MAX_EXACT_K))
    exact = q.astype(np.int64) @ lin.weight.astype(np.int64)
    assert np.array_equal(np.matmul(q, lin.weight).astype(np.int64), exact)
    assert np.array_equal(np.matmul(q[:, ::-1].copy(), lin.weight[::-1].copy()).astype(np.int64), exact)
    with pytest.raises(ValueError):
        ops.IntLinear(rng.normal(size=(4, ops.MAX_EXACT_K + 1)), 10)


def test_frequencies_from_logits_floor_and_total():
    logits = np.array([[0, 0, 0, 0], [5000, -5000, 0, 1], [-(1 << 20), 1 << 20, 0, 0]])
    table = tables.exp_table(256, 1 << 30, tables.exp_table_size(256, 1 << 30))
    w = ops.frequencies_from_logits(logits, table, entropy.TOTAL)
    assert (w >= 0).all() and (w.sum(axis=1) == entropy.TOTAL - 4).all()
    assert w[0].tolist() == [w[0, 0]] * 4 or w[0, 0] == w[0].max()  # ties: remainder to the first
    assert w[2, 1] == entropy.TOTAL - 4  # the others keep frequency 1 (weight 0)


@pytest.fixture(scope="module")
def models():
    model, _ = load_model(WEIGHTS_DIR / "multimodal-800k" / "model.pt")
    return model, ExactByteModel.from_float(model)


def test_exact_model_codes_like_the_float_model(models, corpus):
    """On held-out text the integer model's code length is within 0.5% of the float model's."""
    import torch

    model, exact = models
    data = (corpus / "wiki/enwik8_head/enwik8_small_wicked_trimmed").read_bytes()[:4 * 600]
    chunks = np.frombuffer(data, np.uint8).reshape(4, 600).astype(np.int64)
    cache, exact_cache = model.new_cache(4), exact.new_cache(4)
    bits_float = bits_exact = 0.0
    with torch.no_grad():
        logits = model.step(torch.full((4,), 256), cache)
        ints = exact.step(exact.embed[np.full(4, 256)], exact_cache)
        for t in range(600):
            w_float = entropy.frequencies(torch.softmax(logits, -1).numpy())
            w_exact = ops.frequencies_from_logits(ints, exact.logit_exp, entropy.TOTAL)
            bits_float += entropy.code_lengths(w_float, chunks[:, t]).sum()
            bits_exact += entropy.code_lengths(w_exact.astype(np.float64), chunks[:, t]).sum()
            logits = model.step(torch.from_numpy(chunks[:, t]), cache)
            ints = exact.step(exact.embed[chunks[:, t]], exact_cache)
    assert bits_float / len(data) < 3.5  # the model predicts this text at all
    assert abs(bits_exact / bits_float - 1) < 0.005, (bits_exact, bits_float)


def test_rows_do_not_depend_on_the_batch(retain_check):
    """Exact rows are computed independently: the same integers alone, in any batch, after retain."""
    predictor = load_predictor("default", mix=False)  # the network alone (mixed rows share tables)
    symbols = np.random.default_rng(2).integers(0, 256, size=(3, 40))
    predictor.begin(3)
    for t in range(40):
        batched = predictor.advance(symbols[:, t])
    predictor.begin(1)
    for t in range(40):
        alone = predictor.advance(symbols[2:3, t])
    assert np.array_equal(alone[0], batched[2])
    retain_check(predictor, atol=0)


def test_rows_on_threads_give_the_same_integers():
    """A step's row ranges on several threads (a block coded alone on several cores) give the integers of
    one thread, the context mixer included, also after finished rows are dropped."""
    from lmpress.models.exact import rows

    predictor = load_predictor("default")
    symbols = np.random.default_rng(3).integers(0, 256, size=(27, 30))
    runs = []
    for threads in (1, 3):
        with rows.threads(threads):
            assert len(rows.parts(27)) == min(threads, 27 // rows.MIN_ROWS)
            steps = [predictor.begin(27)]
            for t in range(30):
                if t == 20:
                    predictor.retain(np.arange(2, 27))
                steps.append(predictor.advance(symbols[2 if t >= 20 else 0:, t]))
        runs.append(steps)
    assert all(np.array_equal(a, b) for a, b in zip(*runs))


@pytest.mark.slow
def test_reference_decoder_without_torch_decodes_lmpress_archives(tmp_path, corpus):
    """Archives of the network alone, with the context mixer (the default, cm/v4) and with its predecessors
    cm/v3, cm/v2 and cm/v1, each of two blocks with a shorter last segment (the codec drops finished rows: the mixer
    sees that)."""
    data = (corpus / "text/canterbury/alice29.txt").read_bytes()[:7000]
    npz = tmp_path / "model.npz"
    r = subprocess.run([sys.executable, "-m", "lmpress.cli", "export-exact", "default", str(npz), "--positions",
                        "1024"], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for mix, name in ((False, b'"exact-int/v1"'), (None, b'"exact-int/v1+cm/v4"'), ("cm/v3", b'"exact-int/v1+cm/v3"'),
                      ("cm/v2", b'"exact-int/v1+cm/v2"'), ("cm/v1", b'"exact-int/v1+cm/v1"')):
        archive, out = tmp_path / f"{mix}.lmpz".replace("/", "-"), tmp_path / f"{mix}.out".replace("/", "-")
        archive.write_bytes(lmpress.compress(data, "default", chunk_size=1024, block_chunks=4, mix=mix))
        assert name in archive.read_bytes()[:500]
        script = ("import runpy, sys\n"
                  f"sys.argv = ['reference.py', {str(archive)!r}, {str(npz)!r}, {str(out)!r}]\n"
                  "try:\n"
                  f"    runpy.run_path({REFERENCE!r}, run_name='__main__')\n"
                  "except SystemExit as e:\n"
                  "    assert not e.code, e.code\n"
                  "assert 'torch' not in sys.modules and not any(m.startswith('lmpress') for m in sys.modules)\n")
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=600)
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        assert out.read_bytes() == data


def test_reference_decoder_refuses_a_mixer_it_does_not_restate(tmp_path, corpus):
    data = (corpus / "text/canterbury/alice29.txt").read_bytes()[:600]
    archive = tmp_path / "a.lmpz"
    archive.write_bytes(lmpress.compress(data, "default", chunk_size=1024, mix="cm/v1-audio2"))
    npz = tmp_path / "model.npz"
    r = subprocess.run([sys.executable, "-m", "lmpress.cli", "export-exact", "default", str(npz), "--positions",
                        "1024"], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, REFERENCE, str(archive), str(npz), str(tmp_path / "a.out")],
                       capture_output=True, timeout=300)
    assert r.returncode != 0 and b"cm/v1-audio2" in r.stderr and b"Traceback" not in r.stderr
    assert not (tmp_path / "a.out").exists()
