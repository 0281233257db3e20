"""An LLM block on two threads: row ranges per thread against each product shared, alternating in one run.

    python benchmarks/llm_threads.py                                   # SmolLM2, 36 KB (18 rows) and 16 KB (8)
    python benchmarks/llm_threads.py --sizes 51200 --rounds 1 --json out.json
    ONEDNN_MAX_CPU_ISA=AVX2 NUMBA_CPU_NAME=haswell ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python benchmarks/llm_threads.py                               # a CPU without VNNI (compiled products)

A block coded alone with ``workers=2`` runs its steps on two threads (``models/exact/rows.py``). With
``llm_model.ROWS_PER_THREAD`` rows or more per thread, a step runs row ranges, each on its thread; else each
weight product is shared between the threads. This codes the same bytes both ways (the model loaded once,
outside the timing), decodes and compares every archive, and stops if an archive differs from the first.
"""

from __future__ import annotations

import argparse
import functools
import json

import lmpress
from lmpress.bench.measure import machine_line, round_trip
from lmpress.data.corpus import corpus_root
from lmpress.models.exact import llm_model

SOURCE = "wiki/enwik8_head/enwik8_small_wicked_trimmed"  # Wikipedia XML no shipped model was trained on
POLICIES = {"products shared": 1 << 30, "row ranges": llm_model.ROWS_PER_THREAD}  # rows per thread to split


def _compress_same(data: bytes, model: str, workers: int, archives: set[bytes]) -> bytes:
    blob = lmpress.compress(data, model, workers=workers)
    archives.add(blob)
    if len(archives) > 1:
        raise SystemExit("the archive depends on how the threads share the work")
    return blob


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--sizes", type=int, nargs="+", default=[36_000, 16_384])
    p.add_argument("--offset", type=int, default=400_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", help="also write the rows here")
    a = p.parse_args()
    text = (corpus_root() / SOURCE).read_bytes()
    print(f"{a.model}, {SOURCE} at {a.offset:,}, {a.workers} workers; encode / decode KB/s, model loaded once")
    lmpress.compress(text[:300], a.model)  # load (and compile) outside the timing
    rows = []
    for size in a.sizes:
        data = text[a.offset: a.offset + size]
        compress = functools.partial(_compress_same, model=a.model, workers=a.workers, archives=set())
        for r in range(a.rounds):
            for policy, rows_per_thread in POLICIES.items():
                llm_model.ROWS_PER_THREAD = rows_per_thread
                m = round_trip(compress, lambda b: lmpress.decompress(b, workers=a.workers), data)
                rows.append({"bytes": size, "round": r, "policy": policy, **m})
                print(f"{size:7,d} bytes  {policy:16s} rate {m['rate']:.4f}  {m['encode_kbs']:.3f} / "
                      f"{m['decode_kbs']:.3f}", flush=True)
    print(machine_line())
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": machine_line(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
