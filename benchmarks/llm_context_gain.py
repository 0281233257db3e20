"""How much an LLM gains from a longer window: teacher-forced bits per token against the context it sees.

Development estimate, float32, no archive: ``--spans`` spans of ``--targets`` tokens spread over the
input, each preceded by W tokens of context (BOS first), for every W asked; the same target tokens for
every W. (A coder with ``--window W`` gives a token between W and W + its segment's tokens of context.)

    python benchmarks/llm_context_gain.py FILE --bytes 262144 --offset 400000 --windows 128 512 1024 2048
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lmpress.models.registry import load_predictor


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--bytes", type=int, default=262144)
    p.add_argument("--windows", type=int, nargs="+", default=[512, 2048])
    p.add_argument("--spans", type=int, default=12)
    p.add_argument("--targets", type=int, default=384, help="tokens scored per span")
    p.add_argument("--first", type=int, default=4096, help="token where the first span starts")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    predictor = load_predictor(a.model, precision="float32", mix=False)
    llm, vocab = predictor.llm, predictor.vocab
    data = a.file.read_bytes()[a.offset:a.offset + a.bytes]
    tokens = vocab.tokenize(data)
    tokens = np.where(tokens >= vocab.size, vocab.escape if vocab.escape is not None else 0, tokens)
    if max(a.windows) > a.first or len(tokens) < a.first + a.targets:
        raise SystemExit(f"{len(tokens)} tokens, the first span at {a.first}: too few for these windows")
    starts = [a.first + i * (len(tokens) - a.first - a.targets) // max(a.spans - 1, 1) for i in range(a.spans)]
    bos = llm.embed[predictor.bos][None] * llm.embed_scale
    print(f"{a.file.name} [{a.offset:,}, +{len(data):,}): {len(tokens):,} tokens ({len(data) / len(tokens):.2f} "
          f"bytes each), {a.model} float32, {a.spans} spans of {a.targets} target tokens\n"
          "| window (tokens) | bits/token | change against the first |\n|---:|---:|---:|")
    first = None
    for window in a.windows:
        nats, t0 = 0.0, time.perf_counter()
        for s in starts:
            seq = torch.from_numpy(tokens[s - window:s + a.targets].astype(np.int64))
            x = torch.cat([bos, llm.embed[seq[:-1]] * llm.embed_scale])[None]
            with torch.no_grad():
                logits = llm(x)[0, -a.targets:]
            nats += F.cross_entropy(logits, seq[-a.targets:], reduction="sum").item()
        bits = nats / math.log(2) / (len(starts) * a.targets)
        first = first or bits
        print(f"| {window} | {bits:.4f} | {100 * (bits / first - 1):+.1f}% | ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
