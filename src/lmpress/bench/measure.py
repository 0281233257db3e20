"""Measurements shared by benchmarks: timed round trips, the machine's roofline, cross-entropy, peak memory."""

from __future__ import annotations

import math
import platform
import resource
import time
from collections.abc import Callable

import numpy as np
import torch

from lmpress.baselines import BYTES, Compressor, Layout
from lmpress.models.transformer import BOS, ByteTransformer


def round_trip(compress: Callable[[bytes], bytes], decompress: Callable[[bytes], bytes], data: bytes) -> dict:
    """Compress, decompress and compare, timed: the archive's size and rate, encode and decode KB/s.
    A rate counts only for data decoded back, so a difference ends the benchmark."""
    t0 = time.perf_counter()
    blob = compress(data)
    t1 = time.perf_counter()
    if decompress(blob) != data:
        raise SystemExit("decoded data differs")
    t2 = time.perf_counter()
    return {"bytes": len(blob), "rate": len(blob) / len(data),
            "encode_kbs": len(data) / (t1 - t0) / 1e3, "decode_kbs": len(data) / (t2 - t1) / 1e3}


def machine_line() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, torch {torch.__version__}, {platform.python_version()}"


def matmul_flops(threads: int, n: int = 2048, repeats: int = 3) -> float:
    """Float32 FLOP/s of an n x n x n matmul (best of ``repeats``)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    torch.set_num_threads(previous)
    return 2 * n**3 / best


def read_bandwidth(threads: int, gigabytes: float = 1.0, repeats: int = 3) -> float:
    """Bytes/s of summing a float32 tensor of ``gigabytes`` (best of ``repeats``)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    x = torch.ones(int(gigabytes * 2**30) // 4)
    x.sum()
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t)
    torch.set_num_threads(previous)
    return x.numel() * 4 / best


def peak_rss_bytes() -> tuple[int, int]:
    """Peak resident set size of this process, and of the largest of its finished child processes."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return own * 1024, children * 1024  # Linux reports KiB


@torch.no_grad()
def cross_entropy_bits(model: ByteTransformer, data: bytes, chunk_size: int, batch: int = 16) -> float:
    """Total bits of ``data`` under the model, teacher-forced, chunk by chunk (each from BOS)."""
    flat = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    total = 0.0
    full = len(flat) // chunk_size
    pieces = [torch.from_numpy(flat[: full * chunk_size].reshape(full, chunk_size))] if full else []
    if len(flat) > full * chunk_size:
        pieces.append(torch.from_numpy(flat[full * chunk_size:])[None])
    for chunks in pieces:
        for i in range(0, len(chunks), batch):
            targets = chunks[i:i + batch]
            inputs = torch.cat([torch.full((len(targets), 1), BOS), targets[:, :-1]], dim=1)
            logp = torch.log_softmax(model(inputs).double(), dim=-1)
            total -= logp.gather(-1, targets[..., None]).sum().item() / math.log(2)
    return total


def chunked_size(codec: Compressor, data: bytes, layout: Layout = BYTES, chunk: int = 2048) -> int:
    """A classical codec's total size on ``chunk``-byte pieces, its fixed container counted once.

    Every piece is decoded back and compared. ``layout`` describes one piece
    (e.g. a 64-wide, 32-high image for a 2048-byte patch).
    """
    fixed = codec.container_bytes(layout)
    total = fixed
    for i in range(0, len(data), chunk):
        piece = data[i:i + chunk]
        if layout.modality == "image" and len(piece) != layout.width * layout.height:
            raise ValueError("image data must be whole patches")
        blob = codec.compress(piece, layout)
        if codec.decompress(blob, layout) != piece:
            raise RuntimeError(f"{codec.name} failed to round-trip a chunk")
        total += len(blob) - fixed
    return total


def mean_attended_context(chunk_size: int, span: int) -> float:
    """Mean number of cached positions each coded byte attends to (itself included)."""
    positions = np.arange(1, chunk_size + 1)
    return float(np.minimum(positions, span).mean())
