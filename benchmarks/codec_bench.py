"""Codec benchmark: rate, coding overhead, speed, memory and roofline utilization of a model.

    python benchmarks/codec_bench.py                      # default model, 1 MB of held-out Wikipedia XML
    python benchmarks/codec_bench.py --file F --bytes N --workers 1 2 --json out.json

Every rate comes from an archive that was decoded and compared in this run.
Roofline: per coded byte the model needs 2 x non-embedding parameters FLOPs
and reads its KV cache (2 x layers x KV width x mean attended context x 4
bytes); G (float32 matmul FLOP/s) and B (read bandwidth) are measured here,
with as many threads as there are workers. Roofline time per byte =
FLOPs / G + cache bytes / B; utilization = roofline time / measured time.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

from lmpress.baselines.general import Gzip, Xz
from lmpress.bench.measure import (
    chunked_size,
    cross_entropy_bits,
    machine_line,
    matmul_flops,
    mean_attended_context,
    peak_rss_bytes,
    read_bandwidth,
)
from lmpress.codec import DEFAULT_CHUNK_SIZE, compress_stream, decompress_stream
from lmpress.data.corpus import corpus_root
from lmpress.models.registry import load_predictor


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--file", help="default: Wikipedia XML from the corpus's held-out enwik8 head")
    p.add_argument("--bytes", type=int, default=1_000_000)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    p.add_argument("--json", type=Path)
    a = p.parse_args()

    path = Path(a.file) if a.file else corpus_root() / "wiki/enwik8_head/enwik8_small_wicked_trimmed"
    data = path.read_bytes()[: a.bytes]
    predictor = load_predictor(a.model)
    model = predictor.model
    cfg = model.cfg

    print(f"machine: {machine_line()}", file=sys.stderr)

    flops_per_byte = 2 * model.num_parameters(non_embedding=True)
    context = mean_attended_context(a.chunk_size, cfg.attn_span)
    cache_bytes_per_byte = 2 * cfg.n_layer * cfg.n_kv_head * cfg.head_dim * context * 4

    runs = []
    for workers in a.workers:
        archive = io.BytesIO()
        t0 = time.perf_counter()
        enc = compress_stream(io.BytesIO(data), archive, a.model, chunk_size=a.chunk_size, workers=workers)
        t1 = time.perf_counter()
        restored = io.BytesIO()
        decompress_stream(io.BytesIO(archive.getvalue()), restored, a.model, workers=workers)
        t2 = time.perf_counter()
        if restored.getvalue() != data:
            raise SystemExit("round trip FAILED: decoded data differs")
        runs.append({"workers": workers, "threads_per_worker": 1, "encode_seconds": t1 - t0,
                     "decode_seconds": t2 - t1, "archive_bytes": enc.archive_bytes})
    # Peak memory of the coding alone: read before the roofline measurement allocates its 1 GB tensor.
    own_rss, worker_rss = peak_rss_bytes()
    t = time.perf_counter()
    ce_bits = cross_entropy_bits(model, data, a.chunk_size, batch=4)
    print(f"teacher-forced cross-entropy in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    for r in runs:
        # The machine's roofline, measured in this run with as many threads as workers.
        g, bw = matmul_flops(r["workers"]), read_bandwidth(r["workers"])
        roof = flops_per_byte / g + cache_bytes_per_byte / bw
        r.update({
            "matmul_gflops": g / 1e9, "read_gbytes_per_s": bw / 1e9,
            "roofline_us_per_byte": roof * 1e6,
            "roofline_compute_us_per_byte": flops_per_byte / g * 1e6,
            "roofline_cache_us_per_byte": cache_bytes_per_byte / bw * 1e6,
            "encode_kb_per_s": len(data) / 1e3 / r["encode_seconds"],
            "decode_kb_per_s": len(data) / 1e3 / r["decode_seconds"],
            "encode_roofline_utilization": roof * len(data) / r["encode_seconds"],
            "decode_roofline_utilization": roof * len(data) / r["decode_seconds"],
        })
    archive_bytes = runs[0]["archive_bytes"]
    assert all(r["archive_bytes"] == archive_bytes for r in runs), "archives differ between worker counts"
    result = {
        "machine": machine_line(), "file": str(path), "bytes": len(data), "model": predictor.name,
        "model_id": predictor.model_id, "parameters": model.num_parameters(),
        "non_embedding_parameters": model.num_parameters(non_embedding=True), "chunk_size": a.chunk_size,
        "archive_bytes": archive_bytes, "rate": archive_bytes / len(data),
        "cross_entropy_bits": ce_bits, "cross_entropy_rate": ce_bits / 8 / len(data),
        "coding_overhead": archive_bytes * 8 / ce_bits - 1,
        "gzip9_chunked_rate": chunked_size(Gzip(), data, chunk=a.chunk_size) / len(data),
        "xz9e_chunked_rate": chunked_size(Xz(), data, chunk=a.chunk_size) / len(data),
        "flops_per_byte": flops_per_byte, "mean_attended_context": context,
        "cache_bytes_per_byte": cache_bytes_per_byte,
        "peak_rss_mb_main_process": own_rss / 2**20, "peak_rss_mb_largest_worker": worker_rss / 2**20,
        "runs": runs,
    }

    print(f"\n{result['model']} ({result['parameters']:,} parameters) on {len(data):,} bytes of {path.name}")
    print(f"machine: {result['machine']}")
    print(f"archive rate {result['rate']:.4f} ({8 * result['rate']:.3f} bits/byte), decoded and compared")
    print(f"cross-entropy {result['cross_entropy_rate']:.4f} (teacher-forced); "
          f"coding overhead {100 * result['coding_overhead']:+.3f}% (container included)")
    print(f"baselines, 2048-byte chunks: gzip -9 {result['gzip9_chunked_rate']:.4f}, "
          f"xz -9e {result['xz9e_chunked_rate']:.4f}")
    print(f"per byte: {flops_per_byte / 1e6:.2f} MFLOP, KV cache read {cache_bytes_per_byte / 1e3:.0f} KB "
          f"(mean attended context {context:.0f})")
    print(f"peak RSS {own_rss / 2**20:.0f} MB (main process, which codes itself when workers = 1), "
          f"{worker_rss / 2**20:.0f} MB (largest worker process)\n")
    print("| workers | G GFLOP/s | B GB/s | roofline µs/B (compute + cache) | encode KB/s | decode KB/s "
          "| encode util. | decode util. |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|")
    for r in runs:
        print(f"| {r['workers']} | {r['matmul_gflops']:.0f} | {r['read_gbytes_per_s']:.1f} | "
              f"{r['roofline_us_per_byte']:.1f} ({r['roofline_compute_us_per_byte']:.1f} + "
              f"{r['roofline_cache_us_per_byte']:.1f}) | {r['encode_kb_per_s']:.1f} | {r['decode_kb_per_s']:.1f} | "
              f"{100 * r['encode_roofline_utilization']:.0f}% | {100 * r['decode_roofline_utilization']:.0f}% |")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
