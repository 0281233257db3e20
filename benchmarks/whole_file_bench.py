"""Whole files as users compress them: lmpress's default mode against the float path and classical codecs.

    python benchmarks/whole_file_bench.py                                  # held-out Wikipedia XML files
    python benchmarks/whole_file_bench.py FILE... --json out.json
    python benchmarks/whole_file_bench.py FILE --only default         # lmpress's default mode and the codecs

Per file, in one run and one process (one torch thread per coding process, as the codec runs):

* lmpress float32, chunked: the float network on independent 2048-byte chunks (the arithmetic and the
  only mode before exact arithmetic and mixing; ``lmpress.compress(data, precision="float32", mix=False)``);
* lmpress exact, chunked: the same with the integer network (``lmpress --no-mix``);
* lmpress default: exact, whole-file segments, context mixing (``lmpress FILE``, no flags);
* the same with the previous default mixer, ``cm/v3`` (``lmpress.compress(data, mix="cm/v3")``);
* the same with the multimodal model, the default before lmpress chose the model per file (``-m default``);

The first three use the model lmpress picks for the file (text-800k on text).
* xz -9e, brotli 11, zstd -19, PPMd order 6, zpaq method 5 on the whole file.

Every archive is decoded and compared; rates count every archive byte.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lmpress
from lmpress.baselines import ALL
from lmpress.bench.measure import machine_line, round_trip
from lmpress.data.corpus import corpus_root

LMPRESS_VARIANTS = {  # without "model": the model lmpress picks for the file (text-800k on text)
    "lmpress float32, chunked": {"precision": "float32", "mix": False},
    "lmpress exact, chunked": {"mix": False},
    "lmpress default (exact, mixed)": {},
    "lmpress mixed with cm/v3 (the default before cm/v4)": {"mix": "cm/v3"},
    "lmpress multimodal model (exact, mixed)": {"model": "default"},
}
BASELINES = ["xz", "brotli", "zstd", "ppmd", "zpaq"]


def held_out_files() -> dict[str, bytes]:
    """enwik5 (100 KB) and the last 256 KB of the trimmed enwik8 head: held out from every shipped model."""
    wiki = corpus_root() / "wiki/enwik8_head"
    return {"enwik5": (wiki / "enwik5").read_bytes(),
            "enwik8-trimmed-last-256k": (wiki / "enwik8_small_wicked_trimmed").read_bytes()[-262144:]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", type=Path)
    p.add_argument("--only", nargs="+", metavar="WORD", help="the lmpress variants whose name has one of these")
    p.add_argument("--json", help="write the rows here")
    a = p.parse_args()
    files = {str(f): f.read_bytes() for f in a.files} if a.files else held_out_files()
    variants = {v: o for v, o in LMPRESS_VARIANTS.items() if not a.only or any(w in v for w in a.only)}
    for options in variants.values():  # load and compile outside the timings
        lmpress.decompress(lmpress.compress(b"warm up " * 300, **options))
    rows = []
    for name, data in files.items():
        print(f"{name} ({len(data):,} bytes)\n| codec | rate | encode KB/s | decode KB/s |\n|---|---:|---:|---:|")
        results = {v: round_trip(lambda d, o=o: lmpress.compress(d, **o), lmpress.decompress, data)
                   for v, o in variants.items()}
        for key in BASELINES:
            codec = ALL[key]()
            results[codec.name] = round_trip(codec.compress, codec.decompress, data)
        for codec, r in results.items():
            print(f"| {codec} | {r['rate']:.4f} | {r['encode_kbs']:.1f} | {r['decode_kbs']:.1f} |", flush=True)
            rows.append({"file": name, "input_bytes": len(data), "codec": codec, **r})
    print(f"\nMachine: {machine_line()}")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": machine_line(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
