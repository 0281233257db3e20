"""Exact against float32 arithmetic for an LLM, token by token: where in a chunk the exact path costs bits.

    python benchmarks/exact_positions.py gemma3-270m                  # 4 x 2048 bytes of held-out Wikipedia
    python benchmarks/exact_positions.py smollm2-135m --arithmetic exact-int/v1 --chunks 8

Both predictors step the same token sequences in lockstep batches (teacher-forced through the
coder's integer frequencies: the bits an archive's payload spends, without container bytes); the
rows are cut to the shortest chunk's token count. Prints the mean bits per token by position range
and the total change. A cost that grows with position points at the attention and the layers that
accumulate over it; one that is flat, at the per-token arithmetic.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from lmpress.bench.measure import machine_line
from lmpress.coding import entropy
from lmpress.data.corpus import corpus_root
from lmpress.models.registry import load_predictor

SOURCE = "wiki/enwik8_head/enwik8_small_wicked_trimmed"  # Wikipedia XML no shipped model was trained on


def token_bits(model: str, precision: str, chunks: list[bytes]) -> np.ndarray:
    """Bits of each token [chunks, T] under the coder's frequencies."""
    predictor = load_predictor(model, precision=precision)
    tokens = [predictor.vocab.tokenize(c) for c in chunks]
    t_n = min(map(len, tokens))
    tokens = np.stack([t[:t_n] for t in tokens])
    if (tokens >= predictor.vocab.size).any():
        raise SystemExit("a chunk needs escaped bytes; pick another offset")
    weights = entropy.frequencies(predictor.begin(len(chunks)))
    bits = np.zeros(tokens.shape)
    for t in range(t_n):
        bits[:, t] = entropy.code_lengths(weights, tokens[:, t])
        if t + 1 < t_n:
            weights = entropy.frequencies(predictor.advance(tokens[:, t]))
    return bits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--arithmetic", default="exact", help="exact (the current one) or an exact arithmetic by name")
    p.add_argument("--chunks", type=int, default=4)
    p.add_argument("--offset", type=int, default=500_000, help="byte offset in the held-out file")
    p.add_argument("--bucket", type=int, default=96, help="tokens per printed range")
    p.add_argument("--json", help="write the per-token bits here")
    a = p.parse_args()
    data = (corpus_root() / SOURCE).read_bytes()
    chunks = [data[a.offset + i * 2048: a.offset + (i + 1) * 2048] for i in range(a.chunks)]
    base = token_bits(a.model, "float32", chunks)
    exact = token_bits(a.model, a.arithmetic, chunks)
    print(f"{a.model}, {a.chunks} x 2048 bytes from {SOURCE} at {a.offset:,}: {base.shape[1]} tokens each")
    for lo in range(0, base.shape[1], a.bucket):
        hi = min(base.shape[1], lo + a.bucket)
        f, e = base[:, lo:hi], exact[:, lo:hi]
        print(f"tokens {lo:4d}-{hi:4d}: float32 {f.mean():.4f}  {a.arithmetic} {e.mean():.4f} bits/token "
              f"({e.sum() / f.sum() - 1:+.2%})")
    print(f"all: float32 {base.sum():.1f} bits, {a.arithmetic} {exact.sum():.1f} bits "
          f"({exact.sum() / base.sum() - 1:+.2%})")
    print(machine_line())
    if a.json:
        with open(a.json, "w") as out:
            json.dump({"model": a.model, "arithmetic": a.arithmetic, "float32": base.tolist(),
                       "exact": exact.tolist(), "machine": machine_line()}, out)


if __name__ == "__main__":
    main()
