"""Archives decode bit for bit under other CPU code paths and thread counts (subprocesses, real CLI).

This machine stands in for other CPUs by holding torch, MKL, oneDNN and numba to the code paths of an
SSE4-only or an AVX2-only machine (and OpenBLAS / torch to 1 or 2 threads). An exact archive must be
the same bytes made under any of them, and decode under any other; a float archive may fail to
decode elsewhere, but then it must say why (float arithmetic), not that the file is corrupted.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE_PATHS = {
    "native": {},
    "sse4": {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41",
             "NUMBA_CPU_NAME": "generic"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "NUMBA_CPU_NAME": "haswell"},
    "2 threads": {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
    "1 thread": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}


def lmpress(args: list[str], code_path: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **CODE_PATHS[code_path]}
    return subprocess.run([sys.executable, "-m", "lmpress.cli", *args], input=stdin, env=env,
                          capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def sample(corpus) -> bytes:
    return (corpus / "wiki/enwik8_head/enwik8_small_wicked_trimmed").read_bytes()[100_000:103_000]


@pytest.mark.slow
def test_exact_archives_identical_and_decodable_across_code_paths(sample):
    archives = {}
    for path in ("native", "sse4", "1 thread"):
        r = lmpress(["-c", "-q", "--chunk-size", "1024", "--block-chunks", "2", "-"], path, sample)
        assert r.returncode == 0, r.stderr.decode()
        archives[path] = r.stdout
    assert len(set(archives.values())) == 1, "the archive depends on the code path"
    archive = archives["native"]
    for path in ("sse4", "avx2", "2 threads"):  # made natively, decoded elsewhere
        r = lmpress(["-d", "-c", "-q", "-"], path, archive)
        assert r.returncode == 0 and r.stdout == sample, (path, r.stderr.decode())
    r = lmpress(["-d", "-c", "-q", "-"], "native", archives["sse4"])  # and the other way round
    assert r.returncode == 0 and r.stdout == sample


@pytest.mark.slow
def test_float_archive_elsewhere_decodes_or_says_why(sample):
    # the command line writes only exact archives; the API still makes float ones, for comparison
    make = ("import sys, lmpress; "
            "sys.stdout.buffer.write(lmpress.compress(sys.stdin.buffer.read(), precision='float32'))")
    made = subprocess.run([sys.executable, "-c", make], input=sample, capture_output=True, timeout=600)
    assert made.returncode == 0, made.stderr.decode()
    info = lmpress(["info", "-"], "native", made.stdout)
    assert "float32 (float kernels" in info.stdout.decode()
    for path in ("sse4", "avx2"):
        r = lmpress(["-d", "-c", "-q", "-"], path, made.stdout)
        if r.returncode == 0:  # this CPU's kernels happened to agree (e.g. an AVX2-only CI machine)
            assert r.stdout == sample
        else:
            err = r.stderr.decode()
            assert "float32 arithmetic" in err and "not corrupted" in err and "Traceback" not in err, err


@pytest.mark.slow
def test_smollm2_archives_identical_and_decodable_across_code_paths(sample):
    data = sample[:400]
    archives = {}
    for path in ("native", "sse4"):
        r = lmpress(["-c", "-q", "-m", "smollm2-135m", "-"], path, data)
        assert r.returncode == 0, r.stderr.decode()
        archives[path] = r.stdout
    assert archives["native"] == archives["sse4"], "the archive depends on the code path"
    for path in ("avx2", "2 threads"):
        r = lmpress(["-d", "-c", "-q", "-"], path, archives["native"])
        assert r.returncode == 0 and r.stdout == data, (path, r.stderr.decode())


_PRODUCTS = """
import numpy as np, torch
from lmpress.models.exact import products
from lmpress.models.exact import rows as row_threads
rng = np.random.default_rng(5)
for rows, k_in, n_out in [(32, 128, 192), (7, 512, 128), (64, 128, 256), (6, 2600, 96), (12, 576, 1536),
                          (3, 1536, 576)]:
    w = rng.integers(-127, 128, (k_in, n_out)).astype(np.int8)
    w[:, 0], w[:, 1] = 127, -127  # columns where int16 pair sums saturate against the row of 127s
    q = rng.integers(-127, 128, (rows, k_in)).astype(np.int8)
    q[0] = 127
    exact = q.astype(np.int64) @ w.astype(np.int64)
    matrix = products.Int8Matrix(w, 127)
    assert np.array_equal(np.asarray(matrix.product(q)).astype(np.int64), exact)
    assert np.array_equal(np.asarray(matrix.float32_product(q)).astype(np.int64), exact)  # K = 2600: in 3 parts
    assert np.array_equal(matrix.compiled_product(q).astype(np.int64), exact)
    with row_threads.threads(2):  # (12 x 576 x 1536 >= THREAD_MACS: split over both threads)
        assert np.array_equal(matrix.compiled_product(q).astype(np.int64), exact)
        # called from the threads themselves (a byte model's row ranges), it runs there instead of waiting
        # for threads that are busy: no deadlock, the same integers
        ranges = row_threads.run(lambda part: matrix.compiled_product(np.tile(q, (4, 1))[part]), 4 * rows)
        assert np.array_equal(np.concatenate(ranges).astype(np.int64), np.tile(exact, (4, 1)))
    # 16-bit inputs (the LLMs'): int16 in parts of 512 inputs in the compiled kernel, else int8 halves
    wide = rng.integers(-32639, 32640, (rows, k_in))
    wide[0], wide[-1] = 32639, -32639
    assert np.array_equal(matrix.wide_product(wide), wide @ w.astype(np.int64))
    int_mm = torch._int_mm(torch.from_numpy(q), torch.from_numpy(w)).numpy().astype(np.int64)
    assert np.array_equal(int_mm, exact) or not products.int_mm_exact(rows, k_in, n_out, 127)
    print(rows, k_in, n_out, "int_mm exact:", products.int_mm_exact(rows, k_in, n_out, 127))
print("ok")
"""


@pytest.mark.parametrize("code_path", ["native", "sse4", "avx2"])
def test_int8_products_exact_on_every_code_path(code_path):
    """Full-range int8 weight products give the exact integers whichever kernel ``products`` picks, and its
    probe refuses ``torch._int_mm`` wherever that kernel is not exact (oneDNN's int16 pair sums without VNNI)."""
    env = {**os.environ, **CODE_PATHS[code_path]}
    run = subprocess.run([sys.executable, "-c", _PRODUCTS], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.endswith("ok\n")
