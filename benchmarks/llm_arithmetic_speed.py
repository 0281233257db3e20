"""An LLM's exact arithmetics against each other and float32, alternating in one run: rate and speed.

    python benchmarks/llm_arithmetic_speed.py                     # SmolLM2, 32 KiB of held-out Wikipedia
    python benchmarks/llm_arithmetic_speed.py --model gemma3-270m --bytes 8192 --rounds 1

Each archive is decoded and compared; every arithmetic codes the same bytes with ``--workers`` processes
(the CLI's default on this machine: one per core).
"""

from __future__ import annotations

import argparse

import lmpress
from lmpress.bench.measure import machine_line, round_trip
from lmpress.data.corpus import corpus_root

SOURCE = "wiki/enwik8_head/enwik8_small_wicked_trimmed"  # Wikipedia XML no shipped model was trained on


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--bytes", type=int, default=32768)
    p.add_argument("--offset", type=int, default=400_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2, help="rounds of the exact arithmetics (float32 runs once)")
    p.add_argument("--arithmetics", nargs="+", default=["exact-int/v2", "exact"])
    a = p.parse_args()
    data = (corpus_root() / SOURCE).read_bytes()[a.offset: a.offset + a.bytes]
    print(f"{a.model}, {len(data):,} bytes of {SOURCE} at {a.offset:,}, {a.workers} workers")
    runs = [name for _ in range(a.rounds) for name in a.arithmetics] + ["float32"]
    for name in runs:
        r = round_trip(lambda d, n=name: lmpress.compress(d, a.model, precision=n, workers=a.workers),
                       lambda blob: lmpress.decompress(blob, workers=a.workers), data)
        print(f"{name:13s} {r['bytes']:7,d} bytes  rate {r['rate']:.4f}  "
              f"encode {r['encode_kbs']:.2f} KB/s  decode {r['decode_kbs']:.2f} KB/s", flush=True)
    print(machine_line())


if __name__ == "__main__":
    main()
