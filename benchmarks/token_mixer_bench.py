"""An LLM alone against the LLM mixed with the token mixer (``tm/v1``), in one run; every archive decoded.

    python benchmarks/token_mixer_bench.py FILE --bytes 16384 [--model smollm2-135m] [--workers 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lmpress
from lmpress.bench.measure import machine_line


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path)
    p.add_argument("--bytes", type=int, default=16384, help="the first bytes of the file")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args()
    data = a.file.read_bytes()[:a.bytes]
    print(f"{a.file} (first {len(data):,} bytes), {a.model}, default chunks\n"
          "| mixer | archive bytes | rate | encode KB/s | decode KB/s |\n|---|---:|---:|---:|---:|")
    for mix in (False, "tm/v1"):
        t0 = time.perf_counter()
        blob = lmpress.compress(data, a.model, mix=mix, workers=a.workers)
        t1 = time.perf_counter()
        if lmpress.decompress(blob, workers=a.workers) != data:
            raise SystemExit("decoded data differs")
        t2 = time.perf_counter()
        print(f"| {mix or 'none (the LLM alone)'} | {len(blob):,} | {len(blob) / len(data):.4f} | "
              f"{len(data) / (t1 - t0) / 1e3:.2f} | {len(data) / (t2 - t1) / 1e3:.2f} |", flush=True)
    print(f"\nMachine: {machine_line()}")


if __name__ == "__main__":
    main()
