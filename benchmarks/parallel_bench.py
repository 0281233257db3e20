"""Throughput of block-parallel coding: local processes vs Ray tasks, 1 and 2 workers, and Ray's overheads.

    python benchmarks/parallel_bench.py                                    # default model, 256 KB
    python benchmarks/parallel_bench.py --model smollm2-135m --bytes 65536 --json out.json

Every run's archive is decoded and compared, and all archives of a model must
be byte-identical whatever the backend and worker count. Overheads measured
on the local Ray cluster: the round trip of an empty task (dispatch), putting
and getting one block's bytes (serialization through the object store), and a
worker's first task (process start + model load), which a long job pays once
per worker. The projection for a cluster is the per-core rate measured here
times the cores, minus those overheads per block.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

from lmpress.bench.measure import machine_line
from lmpress.codec import DEFAULT_CHUNK_SIZE, compress_stream, decompress_stream
from lmpress.data.corpus import corpus_root
from lmpress.parallel import ray_init


def _noop() -> None:
    return None


def _echo(blob: bytes) -> int:
    return len(blob)


def _first_task(model: str) -> float:
    start = time.perf_counter()
    from lmpress.models.registry import load_predictor

    load_predictor(model)
    return time.perf_counter() - start


def ray_overheads(block_bytes: int, model: str) -> dict:
    import ray

    noop = ray.remote(num_cpus=1)(_noop)
    ray.get([noop.remote() for _ in range(4)])  # warm the workers
    times = []
    for _ in range(50):
        t = time.perf_counter()
        ray.get(noop.remote())
        times.append(time.perf_counter() - t)
    echo = ray.remote(num_cpus=1)(_echo)
    payload = bytes(block_bytes)
    ser = []
    for _ in range(20):
        t = time.perf_counter()
        ray.get(echo.remote(ray.put(payload)))
        ser.append(time.perf_counter() - t)
    # A distinct runtime environment forces a fresh worker process (workers are pooled per environment).
    fresh = ray.remote(num_cpus=1, runtime_env={"env_vars": {"LMPRESS_FRESH_WORKER": "1"}})(_first_task)
    load = ray.get(fresh.remote(model))
    return {"task_round_trip_ms": 1e3 * statistics.median(times),
            "block_put_and_task_ms": 1e3 * statistics.median(ser),
            "model_load_in_worker_s": load}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--file", help="default: the corpus's held-out enwik8 head (Wikipedia XML)")
    p.add_argument("--bytes", type=int, default=262_144)
    p.add_argument("--block-chunks", type=int, default=16, help="chunks per block (more blocks than workers)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--backends", nargs="+", default=["processes", "ray"], choices=["processes", "ray"])
    p.add_argument("--json", type=Path)
    a = p.parse_args()

    path = Path(a.file) if a.file else corpus_root() / "wiki/enwik8_head/enwik8_small_wicked_trimmed"
    data = path.read_bytes()[: a.bytes]
    block_bytes = DEFAULT_CHUNK_SIZE * a.block_chunks
    print(f"machine: {machine_line()}\n{a.model} on {len(data):,} bytes of {path.name}, "
          f"{-(-len(data) // block_bytes)} blocks of {block_bytes:,} bytes", file=sys.stderr)
    ray_init("local", max(a.workers))
    rows, archives = [], set()
    for backend in a.backends:
        for workers in a.workers:
            ray = "local" if backend == "ray" else None
            archive, restored = io.BytesIO(), io.BytesIO()
            t0 = time.perf_counter()
            compress_stream(io.BytesIO(data), archive, a.model, block_chunks=a.block_chunks, workers=workers, ray=ray)
            t1 = time.perf_counter()
            decompress_stream(io.BytesIO(archive.getvalue()), restored, workers=workers, ray=ray)
            t2 = time.perf_counter()
            if restored.getvalue() != data:
                raise SystemExit(f"{backend} x{workers}: decoded data differs")
            archives.add(archive.getvalue())
            rows.append({"backend": backend, "workers": workers, "encode_kb_s": len(data) / 1e3 / (t1 - t0),
                         "decode_kb_s": len(data) / 1e3 / (t2 - t1), "archive_bytes": len(archive.getvalue())})
            print(f"{backend:9} x{workers}: encode {rows[-1]['encode_kb_s']:.2f} KB/s, "
                  f"decode {rows[-1]['decode_kb_s']:.2f} KB/s", file=sys.stderr)
    if len(archives) != 1:
        raise SystemExit("archives differ between backends or worker counts")
    over = ray_overheads(block_bytes, a.model)
    one = next(r for r in rows if r["workers"] == 1)
    per_core = min(one["encode_kb_s"], one["decode_kb_s"])
    block_s = block_bytes / 1e3 / per_core
    overhead_share = (over["block_put_and_task_ms"] / 1e3) / block_s
    print("\n| backend | workers | encode KB/s | decode KB/s |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['backend']} | {r['workers']} | {r['encode_kb_s']:.2f} | {r['decode_kb_s']:.2f} |")
    print(f"\nRay overheads: empty task round trip {over['task_round_trip_ms']:.2f} ms; one {block_bytes:,}-byte "
          f"block put + task {over['block_put_and_task_ms']:.2f} ms ({100 * overhead_share:.3f}% of the "
          f"{block_s:.1f} s a block takes); model load in a fresh worker {over['model_load_in_worker_s']:.1f} s")
    print("\nProjection (slower of encode/decode per core measured here x cores, less the per-block overhead):")
    print("| cores | KB/s | 1 GB takes |\n|---:|---:|---:|")
    for cores in (2, 16, 64, 256):
        rate = per_core * cores * (1 - overhead_share)
        print(f"| {cores} | {rate:,.2f} | {1e6 / rate / 3600:.1f} h |")
    if a.json:
        a.json.write_text(json.dumps({"machine": machine_line(), "model": a.model, "bytes": len(data),
                                      "block_bytes": block_bytes, "runs": rows, "ray_overheads": over,
                                      "per_core_kb_s": per_core}, indent=1))


if __name__ == "__main__":
    main()
