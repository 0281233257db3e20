"""Float vs exact arithmetic, in one run: rate and speed per shipped byte model and held-out modality.

    python benchmarks/exact_bench.py                                   # 64 KB per modality, four models
    python benchmarks/exact_bench.py --max-bytes 131072 --models default --json out.json
    python benchmarks/exact_bench.py --models gemma3-270m --modalities text --precisions float32 exact exact-int/v1
    python benchmarks/exact_bench.py --models text-800k --modalities text --workers 1 2 --mixed

For every (model, modality) both archives are made from the same held-out sample (the bench
presets: Wikipedia XML, Kodak luma patches, LibriSpeech PCM), decoded back and compared byte for
byte, in one process (``-j 1`` coding: one thread), alternating float and exact so that the shared
machine's load falls on both alike. Rates include every archive byte. Byte models code the studies'
2048-byte chunks with the network alone (float arithmetic cannot mix); ``--mixed`` adds the default
exact mode (whole-file segments, context mixer). ``--workers 1 2`` also codes the exact archives on two
cores (one block: a step's rows or products on two threads; the archive must be the same).
"""

from __future__ import annotations

import argparse
import io
import json
import time

from lmpress import api
from lmpress.bench.datasets import load_dataset
from lmpress.bench.measure import machine_line
from lmpress.coding.container import ArchiveReader
from lmpress.models.registry import load_predictor

PRESETS = {"text": "wiki", "image": "image", "audio": "audio"}


def measure(data: bytes, model: str, precision: str, mix: bool = False, workers: int = 1) -> dict:
    start = time.perf_counter()
    archive = api.compress(data, model, precision=precision, mix=None if mix else False, workers=workers)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = api.decompress(archive, workers=workers)
    decode_s = time.perf_counter() - start
    if decoded != data:
        raise SystemExit(f"{model} {precision}: decoded data differs")
    header = len(ArchiveReader(io.BytesIO(archive)).header.to_bytes())  # exact ones name their arithmetic
    return {"archive": archive, "bytes": len(archive), "rate": len(archive) / len(data), "header_bytes": header,
            "coded_rate": (len(archive) - header) / len(data), "encode_kbs": len(data) / encode_s / 1e3,
            "decode_kbs": len(data) / decode_s / 1e3}


def compared(base: dict, other: dict) -> dict:
    """One measurement against the baseline's, as printed."""
    return {"rates": f"{base['rate']:.4f} -> {other['rate']:.4f}", "change": f"{other['rate'] / base['rate'] - 1:+.2%}",
            "coded_change": f"{other['coded_rate'] / base['coded_rate'] - 1:+.2%}",
            "base_speed": f"{base['encode_kbs']:.2f} / {base['decode_kbs']:.2f}",
            "speed": f"{other['encode_kbs']:.2f} / {other['decode_kbs']:.2f}"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["default", "text-800k", "image-800k", "audio-800k"])
    p.add_argument("--modalities", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    p.add_argument("--max-bytes", type=int, default=65536)
    p.add_argument("--precisions", nargs="+", default=["float32", "exact"],
                   help="the first is the baseline; an exact arithmetic by name too (exact-int/v1: LLM archives "
                        "of the first exact arithmetic)")
    p.add_argument("--workers", nargs="+", type=int, default=[1], help="code the exact archives with these -j")
    p.add_argument("--mixed", action="store_true", help="also the default exact mode (segments, context mixer)")
    p.add_argument("--json", help="write the rows here")
    a = p.parse_args()
    samples = {m: b"".join(i.view for i in load_dataset(PRESETS[m], a.max_bytes).items) for m in a.modalities}
    base = a.precisions[0]
    runs = {p: (p, False, 1) for p in a.precisions}  # name -> precision, mixed, workers
    for precision in a.precisions[1:]:
        runs.update({f"{precision} -j {w}": (precision, False, w) for w in a.workers if w != 1})
    if a.mixed:
        runs.update({f"exact mixed -j {w}": ("exact", True, w) for w in a.workers})
    others = [name for name in runs if name != base]
    rows = []
    for model in a.models:
        for precision in a.precisions:
            load_predictor(model, precision=precision)  # load (and compile) outside the timings
        for modality, data in samples.items():
            row = {"model": model, "modality": modality, "input_bytes": len(data)}
            for name, (precision, mix, workers) in runs.items():
                row[name] = measure(data, model, precision, mix, workers)
            archives = {name: row[name].pop("archive") for name in runs}
            for name, (precision, mix, _) in runs.items():  # more cores, the same archive
                one_worker = next(n for n, r in runs.items() if r == (precision, mix, 1))
                if archives[name] != archives[one_worker]:
                    raise SystemExit(f"{model} {name}: another archive than with one worker")
            rows.append(row)
            for precision in others:
                c = compared(row[base], row[precision])
                print(f"{model:16s} {modality:6s} {precision:13s} rate {c['rates']} ({c['change']}; coded bytes "
                      f"alone {c['coded_change']})  encode/decode KB/s {c['base_speed']} -> {c['speed']}", flush=True)
    print(f"\n{machine_line()}\n")
    print(f"| model | modality | bytes | arithmetic | {base} rate | rate | change | change without headers | "
          f"{base} enc / dec KB/s | enc / dec KB/s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        for precision in others:
            c = compared(r[base], r[precision])
            print(f"| {r['model']} | {r['modality']} | {r['input_bytes']:,} | {precision} | "
                  f"{c['rates'].replace(' -> ', ' | ')} | {c['change']} | {c['coded_change']} | {c['base_speed']} | "
                  f"{c['speed']} |")
    if a.json:
        with open(a.json, "w") as out:
            json.dump({"machine": machine_line(), "rows": rows}, out, indent=1)


if __name__ == "__main__":
    main()
