"""Exact products of int8 matrices: the one place that decides how a weight matmul runs.

A weight matmul of the exact arithmetic is q @ W for int8-valued q [rows, K]
and int8 W [K, N]: it has one right answer, integers. Three kernels compute it:

* a float32 matmul (numpy's BLAS) of the same values: exact in any summation
  order as long as every partial sum stays below 2**24 (K * 128 * max|W|),
  so longer inputs are multiplied in parts whose products add in int32;
* ``torch._int_mm`` (int8 x int8 -> int32, oneDNN): exact where its kernels
  accumulate in int32 (VNNI, AMX), but not where they add pairs of u8 x s8
  products into int16 with saturation (pmaddubsw on CPUs with AVX2 or SSE4.1
  and no VNNI: +-127 values give other integers there);
* ``kernels.int8_product``, compiled integer dot products over the weights
  stored output by output: exact on every CPU, and on a few rows, where a
  product is bound by reading the weights, faster than the float32 matmul
  (it reads a quarter of the bytes).

``Int8Matrix.product`` takes ``torch._int_mm`` where it is exact and faster
than BLAS, else the compiled kernel for few rows (``FEW_ROWS``, more for large
matrices) and the float32 matmul for more. Exact: always for weights within +-63 (no int16 pair sum can
saturate), else where a probe on the worst case for int16 pair sums came out
exact (once per shape, in this process, with its code paths). Faster: timed
once, on this CPU. All give the same integers, so the choice decides how fast
a step is, never what it computes or what an archive holds.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import torch

from lmpress.models.exact import kernels
from lmpress.models.exact import rows as row_threads

ACTIVATION_MAX = 128  # |q| of a matmul input: int8 values, or the low half of a 16-bit value (-128..127)
PAIR_SAFE_WEIGHT_MAX = 63  # 2 * 255 * 63 < 2**15: oneDNN's u8 (activation + 128) x s8 pairs fit int16
# Where the compiled kernel beats BLAS's float32 matmul: on few rows, and on more for matrices too large for
# the caches as float32, whose products are bound by reading them (measured with AVX2 code, one thread,
# compiled / float32: 16 x 128 @ 128 x 384 0.023 / 0.021 ms, 64 x 128 @ 128 x 384 0.101 / 0.067 ms;
# 64 x 576 @ 576 x 3072 2.30 / 2.53 ms, 64 x 576 @ 576 x 49152 35.7 / 43.8 ms)
FEW_ROWS = 16
LARGE_MATRIX = 1 << 18  # weights (1 MiB as float32)
LARGE_MATRIX_ROWS = 64
WIDE_PART = 512  # 16-bit inputs per int32 sum in the compiled kernel: 512 * 32639 * 127 < 2**31
COLUMNS_PER_THREAD = 256  # a product's outputs are split over the step's threads in parts of at least this many
# ... and only products of this many multiply-adds or more: a hand-over costs ~0.05-0.1 ms, about what a
# thread does in 2**23 (measured with AVX2 code, one thread against two: 8 x 576 @ 576 x 960 0.087 / 0.119 ms,
# 8 x 1536 @ 1536 x 576 0.127 / 0.144 ms, 8 x 576 @ 576 x 3072 0.289 / 0.236 ms, the head 4.6 / 2.5 ms)
THREAD_MACS = 1 << 23


def int_mm_exact(rows: int, k_in: int, n_out: int, weight_max: int) -> bool:
    """Whether ``torch._int_mm`` gives exact integers for this shape and weight range here.

    Weights within PAIR_SAFE_WEIGHT_MAX are exact on every kernel: a pair of u8 x s8 products stays below
    2**15, so even int16 pair sums cannot saturate (the 7-bit weights of LLM arithmetics before exact-int/v3).
    Wider weights are probed."""
    return weight_max <= PAIR_SAFE_WEIGHT_MAX or _probe_int_mm(rows, k_in, n_out, weight_max)


@functools.cache
def _probe_int_mm(rows: int, k_in: int, n_out: int, weight_max: int) -> bool:
    """Probed on the inputs where int16 pair sums saturate if a kernel has them: activations of 127 (255 after
    oneDNN's shift to u8), -127 and -128 against weights of +-weight_max (columns of either sign), whose exact
    products are known; then random values, with the weights a random block of columns repeated along the
    output (cheap for a 262,144-wide LLM head), compared with the block's float64 product (exact: sums below
    2**53)."""
    generator = np.random.default_rng(0)
    signs = np.where(np.arange(n_out) % 2 == 0, weight_max, -weight_max).astype(np.int8)
    alternating = torch.from_numpy(np.ascontiguousarray(np.broadcast_to(signs, (k_in, n_out))))
    for value in (127, -127, -128):
        got = torch._int_mm(torch.full((rows, k_in), value, dtype=torch.int8), alternating).numpy()
        if not (got == value * k_in * signs.astype(np.int64)).all():
            return False
    block = generator.integers(-weight_max, weight_max + 1, (k_in, min(n_out, 256)), dtype=np.int8)
    q = generator.integers(-128, 128, (rows, k_in), dtype=np.int8)
    tiles = -(-n_out // block.shape[1])
    weights = np.tile(block, (1, tiles))[:, :n_out]
    got = torch._int_mm(torch.from_numpy(q), torch.from_numpy(np.ascontiguousarray(weights))).numpy()
    want = np.tile(q.astype(np.float64) @ block.astype(np.float64), (1, tiles))[:, :n_out]
    return bool(np.array_equal(got.astype(np.float64), want))


@functools.cache
def int_mm_faster() -> bool:
    """Whether ``torch._int_mm`` beats a float32 matmul on this CPU (best of three each, 32 x 576 @ 576 x 1536).
    It runs on VNNI / AMX kernels where the CPU has them and on a slow path elsewhere (measured on an AMD EPYC
    with AVX2 only, one thread: 42 ms against 1.3 ms in float32; on one with AVX-512 VNNI, 32 x 128 @ 128 x 512:
    9.4 us against 47 us). One choice for every shape: a step that mixed torch's and BLAS's thread pools
    stalled on their spinning threads (measured: 8 ms for a 0.12 ms product on two threads). Timed on one
    thread each, so that it compares the kernels and not how busy the other cores are: a run here on a VNNI CPU
    (where ``torch._int_mm`` is 6x faster than float32) once went to the compiled kernel, the probe having
    run on a step's two torch threads while another process held a core."""
    q, w = torch.ones((32, 576), dtype=torch.int8), torch.ones((576, 1536), dtype=torch.int8)
    qf, wf = q.numpy().astype(np.float32), w.numpy().astype(np.float32)

    def fastest(product) -> float:
        product()
        times = []
        for _ in range(3):
            start = time.perf_counter()
            product()
            times.append(time.perf_counter() - start)
        return min(times)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with row_threads.blas_threads(1):
            return fastest(lambda: torch._int_mm(q, w)) < fastest(lambda: np.matmul(qf, wf))
    except RuntimeError:  # a torch build without int8 matmuls on this CPU: float32 everywhere
        return False
    finally:
        torch.set_num_threads(threads)


class Int8Matrix:
    """An int8 weight matrix W [K, N] with |W| <= ``weight_max``, and its exact products."""

    def __init__(self, weight: np.ndarray, weight_max: int) -> None:
        self.weight = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.int8))
        self.weight_max = weight_max
        # a float32 matmul is exact on up to this many inputs (every partial sum below 2**24); longer inputs
        # are multiplied in parts of this length, whose exact products add in int32
        self.float_part = ((1 << 24) - 1) // (ACTIVATION_MAX * weight_max)
        # the same integers as float32: the given array when it is one, else made when first used
        self._float32: np.ndarray | None = weight if weight.dtype == np.float32 else None
        # for the compiled kernel, made when first used: int8 [N, K] (each output's weights in a row), and
        # the same in parts of WIDE_PART inputs (16-bit inputs)
        self._by_output: np.ndarray | None = None
        self._by_output_parts: list[np.ndarray] | None = None

    def float32(self) -> np.ndarray:
        """The weights as float32 [K, N] (made when first asked for)."""
        if self._float32 is None:
            self._float32 = self.weight.numpy().astype(np.float32)
        return self._float32

    def kernel(self, rows: int) -> str:
        """Which kernel multiplies ``rows`` int8 rows here: "int_mm", "compiled" or "float32"."""
        k_in, n_out = self.weight.shape
        if int_mm_faster() and int_mm_exact(rows, k_in, n_out, self.weight_max):
            return "int_mm"
        if rows <= FEW_ROWS or (rows <= LARGE_MATRIX_ROWS and k_in * n_out >= LARGE_MATRIX):
            return "compiled"
        return "float32"

    def product(self, q: np.ndarray) -> np.ndarray:
        """q @ W for int8 q [rows, K]: exact integers, as int32 (``torch._int_mm``, the compiled kernel) or
        from float32 matmuls (``float32_product``)."""
        kernel = self.kernel(q.shape[0])
        if kernel == "int_mm":
            return torch._int_mm(torch.from_numpy(q), self.weight).numpy()
        if kernel == "compiled":
            return self.compiled_product(q)
        return self.float32_product(q)

    def wide_product(self, q: np.ndarray) -> np.ndarray:
        """q @ W exactly (int64) for 16-bit q (int64 [rows, K], |q| <= WIDE_MAX = 127 * 256 + 127).

        The compiled kernel takes q as int16, in parts of at most WIDE_PART inputs (int32 sums), added in
        int64. The other kernels take q = 256 hi + lo as int8 halves stacked as rows of one product (the
        weights, which bound a step's time, are read once; int32 products of hi stay below 2**31 for K < 2**15):
        on a CPU without VNNI one pass over 16-bit inputs costs about what one over int8 halves does."""
        rows, k_in = q.shape
        y = np.empty((rows, self.weight.shape[1]), dtype=np.int64)
        if self.kernel(2 * rows) == "compiled":
            if self._by_output_parts is None:
                whole = self._weights_by_output()
                self._by_output_parts = [np.ascontiguousarray(whole[:, start:start + WIDE_PART])
                                         for start in range(0, k_in, WIDE_PART)]
            q16 = q.astype(np.int16)
            y[:] = 0
            for start, weight_t in zip(range(0, k_in, WIDE_PART), self._by_output_parts):
                y += self._compiled(np.ascontiguousarray(q16[:, start:start + WIDE_PART]), weight_t)
            return y
        halves = np.empty((2 * rows, k_in), np.int8)
        kernels.split_wide(q, halves[:rows], halves[rows:])
        both = self.product(halves).astype(np.int32, copy=False)
        kernels.join_wide(both[:rows], both[rows:], y)
        return y

    def compiled_product(self, q: np.ndarray) -> np.ndarray:
        """q @ W in int32 by ``kernels.int8_product`` (int8 q)."""
        return self._compiled(np.ascontiguousarray(q, dtype=np.int8), self._weights_by_output())

    def _weights_by_output(self) -> np.ndarray:
        if self._by_output is None:
            self._by_output = np.ascontiguousarray(self.weight.numpy().T)
        return self._by_output

    @staticmethod
    def _compiled(q: np.ndarray, weight_t: np.ndarray) -> np.ndarray:
        """``kernels.int8_product`` of contiguous q and weight_t [N, K], the outputs of a large product split over
        the step's threads (``rows.threads``; the kernel releases the GIL)."""
        n_out = weight_t.shape[0]
        out = np.empty((q.shape[0], n_out), dtype=np.int32)
        parts = 1 if q.size * n_out < THREAD_MACS else max(1, min(row_threads.count(), n_out // COLUMNS_PER_THREAD))
        bounds = [n_out * i // parts for i in range(parts + 1)]
        row_threads.each(lambda i: kernels.int8_product(q, weight_t[bounds[i]:bounds[i + 1]],
                                                       out[:, bounds[i]:bounds[i + 1]]), parts)
        return out

    def float32_product(self, q: np.ndarray) -> np.ndarray:
        """q @ W by float32 matmuls alone (numpy's BLAS): one for up to ``float_part`` inputs (a float32 result),
        else one per part of K, added in int32."""
        weight = self.float32()
        qf = q.astype(np.float32)
        if q.shape[1] <= self.float_part:
            return np.matmul(qf, weight)
        y = np.zeros((q.shape[0], self.weight.shape[1]), dtype=np.int32)  # |y| <= K * 128 * 127 < 2**31
        for start in range(0, q.shape[1], self.float_part):
            stop = start + self.float_part
            y += np.matmul(qf[:, start:stop], weight[start:stop]).astype(np.int32)
        return y
