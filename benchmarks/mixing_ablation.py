"""Ablation of whole-file coding: the network alone, whole-file segments, then the mixer's parts, in one run.

    python benchmarks/mixing_ablation.py                              # 256 KB of held-out Wikipedia XML
    python benchmarks/mixing_ablation.py FILE... --json out.json      # any files (one block each, <= 4 MB)
    python benchmarks/mixing_ablation.py FILE --model text-800k      # the model lmpress picks for text

Each row codes the whole input as one block of 64 rows with an exact model (``--model``, default ``default``),
through the codec's own ``encode_block`` / ``decode_block`` (decoded and compared), one torch thread. Rates are
payload bytes over input bytes (an archive adds its fixed header, trailer and frame, ~0.1 KB). Rows:

* network alone, the studies' 2048-byte chunks (``--no-mix --chunk-size 2048``): blocks of 64 chunks;
* network alone, whole-file segments: 64 segments of ``segment_size`` bytes, the network's context
  carried across each segment by its ring KV cache;
* + match model, + context orders 1-4, + orders 5, 6, 8 and the word (``cm/v1``), + weight vectors by the
  previous bytes (``cm/v2``); ``cm/v3``, the default (its parts, measured one by one on replayed logits, are in
  the notes of ``lmpress/models/exact/mixer.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lmpress import codec
from lmpress.coding import entropy
from lmpress.data.corpus import corpus_root
from lmpress.models.exact import mixer
from lmpress.models.registry import load_predictor

VARIANTS = [  # (row name, chunk size: None = whole-file segments, mixer orders or None, match model, mixer)
    ("network alone, 2048-byte chunks", 2048, None, False, mixer.MIXER),
    ("network alone, whole-file segments", None, None, False, mixer.MIXER),
    ("+ match model", None, (), True, mixer.MIXER),
    ("+ orders 1-4", None, (1, 2, 3, 4), True, mixer.MIXER),
    ("+ orders 5, 6, 8, word (cm/v1)", None, mixer.ORDERS, True, mixer.MIXER),
    ("+ weights by the previous bytes (cm/v2)", None, mixer.ORDERS, True, mixer.TEXT_MIXER_V2),
    ("slotted tables, word pair, ... (cm/v3)", None, mixer.VARIANTS[mixer.TEXT_MIXER_V3], True,
     mixer.TEXT_MIXER_V3),
    ("+ bit-tree refinement (cm/v4, default)", None, mixer.VARIANTS[mixer.TEXT_MIXER], True, mixer.TEXT_MIXER),
]


def code(model: str, data: bytes, chunk_size: int | None, orders: tuple[int, ...] | None, match: bool,
         name: str) -> dict:
    predictor = load_predictor(model, mix=orders is not None)
    if orders is not None:  # the default mixer, or one with parts left out
        predictor.mixer = mixer.ContextMixer(entropy.TOTAL, predictor.exact.logit_exp, orders, match, name)
    size = chunk_size or codec.segment_size(len(data))
    block = size * codec.DEFAULT_BLOCK_CHUNKS
    payload_bytes, encode_s, decode_s = 0, 0.0, 0.0
    for start in range(0, len(data), block):
        piece = data[start:start + block]
        t0 = time.perf_counter()
        payload = codec.encode_block(predictor, piece, size)
        t1 = time.perf_counter()
        if codec.decode_block(predictor, payload, len(piece), size) != piece:
            raise SystemExit("decoded data differs")
        decode_s += time.perf_counter() - t1
        encode_s += t1 - t0
        payload_bytes += len(payload)
    if orders is not None:
        predictor.mixer = mixer.ContextMixer(entropy.TOTAL, predictor.exact.logit_exp,  # back to the default
                                             name=mixer.DEFAULT_MIXER)
    return {"chunk_size": size, "payload_bytes": payload_bytes, "rate": payload_bytes / len(data),
            "encode_kbs": len(data) / encode_s / 1e3, "decode_kbs": len(data) / decode_s / 1e3}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", type=Path)
    p.add_argument("--max-bytes", type=int, default=262144, help="first bytes of each file")
    p.add_argument("--model", default="default", help="a shipped byte model or a model file")
    p.add_argument("--json", help="write the rows here")
    a = p.parse_args()
    default = corpus_root() / "wiki/enwik8_head/enwik8_small_wicked_trimmed"  # held out from every model
    inputs = {str(f): f.read_bytes()[:a.max_bytes] for f in (a.files or [default])}
    load_predictor(a.model, mix=False), load_predictor(a.model, mix=True)  # load, compile outside timings
    rows = []
    for name, data in inputs.items():
        print(f"{name}: {len(data):,} bytes")
        print(f"| {'variant':48s} | chunk | rate | encode KB/s | decode KB/s |\n|---|---:|---:|---:|---:|")
        for variant, chunk_size, orders, match, mixer_name in VARIANTS:
            row = {"file": name, "bytes": len(data), "variant": variant,
                   **code(a.model, data, chunk_size, orders, match, mixer_name)}
            rows.append(row)
            print(f"| {variant:48s} | {row['chunk_size']} | {row['rate']:.4f} | {row['encode_kbs']:.1f} | "
                  f"{row['decode_kbs']:.1f} |", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
