"""The LLM-compressor study's tables at our scale, every row decoded and compared.

    python benchmarks/llm_tables.py                                  # 50 KB, all models, both context modes
    python benchmarks/llm_tables.py --bytes 1000000 --models smollm2-135m default --json out.json

Table 2 (models): model, parameters, encode s, decode s, compressed bits, rate.
Table 1 (chunks vs no chunks): each LLM on independent 2048-byte chunks, and
with a sliding window that carries context through long segments
(``--segment`` bytes per sequence, ``--window`` tokens of attention with 4
sink tokens). One segment per file would be one sequence with batch 1, which
wastes the batched step; segments of 16 KB keep a batch while resetting the
context 8x less often than 2 KB chunks. xz -9e and PPMd (order 6) run on the
whole input and on the same 2048-byte chunks (container counted once).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

from lmpress.baselines.general import Ppmd, Xz
from lmpress.bench.measure import chunked_size, machine_line, peak_rss_bytes
from lmpress.codec import compress_stream, decompress_stream
from lmpress.data.corpus import corpus_root
from lmpress.models.registry import is_llm, load_predictor
from lmpress.progress import Progress


def neural_row(data: bytes, model: str, mode: str, chunk_size: int, block_chunks: int,
               window: int | None, workers: int, precision: str = "float32") -> dict:
    predictor = load_predictor(model, window, precision)
    archive = io.BytesIO()
    with Progress(len(data), f"{model} {mode} encode") as bar:
        start = time.perf_counter()
        compress_stream(io.BytesIO(data), archive, model, chunk_size=chunk_size, block_chunks=block_chunks,
                        window=window, precision=precision, workers=workers, progress=bar.update)
        encode_s = time.perf_counter() - start
    decoded = io.BytesIO()
    with Progress(len(data), f"{model} {mode} decode") as bar:
        start = time.perf_counter()
        decompress_stream(io.BytesIO(archive.getvalue()), decoded, workers=workers, progress=bar.update)
        decode_s = time.perf_counter() - start
    if decoded.getvalue() != data:
        raise SystemExit(f"{model} {mode}: decoded data differs from the input")
    info = predictor.describe()
    size = len(archive.getvalue())
    return {"compressor": model, "parameters": info["parameters"], "mode": mode, "chunk_size": chunk_size,
            "window": window, "precision": precision, "encode_s": encode_s, "decode_s": decode_s,
            "compressed_bits": 8 * size, "rate": size / len(data), "decode_kb_s": len(data) / decode_s / 1e3}


def classical_rows(data: bytes) -> list[dict]:
    rows = []
    for codec in (Xz(), Ppmd()):
        for mode in ("whole input", "2048-byte chunks"):
            start = time.perf_counter()
            if mode == "whole input":
                blob = codec.compress(data)
                encode_s = time.perf_counter() - start
                start = time.perf_counter()
                if codec.decompress(blob) != data:
                    raise SystemExit(f"{codec.name}: decoded data differs")
                size, decode_s = len(blob), time.perf_counter() - start
            else:  # chunked_size decodes every chunk and compares
                size, decode_s = chunked_size(codec, data), None
                encode_s = time.perf_counter() - start
            rows.append({"compressor": codec.name, "parameters": None, "mode": mode, "encode_s": encode_s,
                         "decode_s": decode_s, "compressed_bits": 8 * size, "rate": size / len(data)})
    return rows


def markdown(rows: list[dict], data_bytes: int) -> str:
    lines = ["| compressor | parameters | context | encode s | decode s | compressed bits | rate |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        params = f"{r['parameters'] / 1e6:.1f}M" if r["parameters"] else "-"
        decode = f"{r['decode_s']:.1f}" if r["decode_s"] is not None else "(in encode)"
        lines.append(f"| {r['compressor']} | {params} | {r['mode']} | {r['encode_s']:.1f} | {decode} | "
                     f"{r['compressed_bits']:,} | {r['rate']:.4f} |")
    return f"{data_bytes:,} bytes\n\n" + "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--file", help="default: the corpus's held-out enwik8 head (Wikipedia XML)")
    p.add_argument("--bytes", type=int, nargs="+", default=[50_000])
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m", "default"])
    p.add_argument("--segment", type=int, default=16384, help="bytes per sequence in the sliding-window mode")
    p.add_argument("--window", type=int, default=512, help="attention window (tokens) in that mode")
    p.add_argument("--window-models", nargs="*", help="LLMs to run in the sliding-window mode too (default: all)")
    p.add_argument("--block-chunks", type=int, default=0,
                   help="chunks per block (0: split the input into one block per worker)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                   help="LLM weight matmuls (byte models always run in float32)")
    p.add_argument("--json", type=Path)
    a = p.parse_args()

    path = Path(a.file) if a.file else corpus_root() / "wiki/enwik8_head/enwik8_small_wicked_trimmed"
    print(f"machine: {machine_line()}\ndata: {path}", file=sys.stderr)
    results = []
    for n in a.bytes:
        data = path.read_bytes()[:n]
        rows = classical_rows(data)
        for model in a.models:
            llm = is_llm(model)  # without loading it: the rows load it once, at the precision they run
            modes = [("2048-byte chunks", 2048, None)]
            if llm and (a.window_models is None or model in a.window_models):
                modes.append((f"sliding window {a.window} tok, {a.segment // 1024} KB segments",
                              a.segment, a.window))
            precision = a.precision if llm else "float32"
            for mode, chunk_size, window in modes:
                chunks = -(-len(data) // chunk_size)
                block_chunks = a.block_chunks or max(1, -(-chunks // a.workers))
                label = mode + (", bfloat16" if precision == "bfloat16" else "")
                rows.append(neural_row(data, model, label, chunk_size, block_chunks, window, a.workers, precision))
        print(markdown(rows, n) + "\n")
        results.append({"bytes": n, "file": str(path), "rows": rows})
    own, children = peak_rss_bytes()
    print(f"peak RSS: main {own / 2**20:.0f} MB, largest worker {children / 2**20:.0f} MB")
    if a.json:
        a.json.write_text(json.dumps({"machine": machine_line(), "workers": a.workers, "results": results,
                                      "peak_rss_main": own, "peak_rss_worker": children}, indent=1))


if __name__ == "__main__":
    main()
