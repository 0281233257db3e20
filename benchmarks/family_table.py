"""The model-family table: each shipped byte model x held-out text / image / audio, next to classical codecs.

    python benchmarks/family_table.py                         # 256 KB per modality, all shipped byte models
    python benchmarks/family_table.py --max-bytes 65536 --json docs/bench/family.json

Runs ``lmpress bench``'s harness (same datasets, 2048-byte chunks, every
output decoded and compared, results cached) and prints one Markdown table:
raw rate and adjusted rate per modality, with what each model was trained on,
its training tokens and wall time from its manifest.

Adjusted rate, as the studies count it: the model's bytes as stored (float32)
added to the compressed size of the whole held-out set of that modality, over
the set's size (its byte view: Wikipedia XML; Kodak luma pixels; speech as
16-bit PCM; files that are prefixes of another file counted once). The
compressed size of the whole set is the raw rate measured on the sample
(``--max-bytes`` per modality) times the set's size.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lmpress.bench.datasets import load_dataset
from lmpress.bench.harness import BASELINES as CODECS
from lmpress.bench.harness import LMPRESS_PREFIX, run
from lmpress.bench.measure import machine_line
from lmpress.data.corpus import split_files
from lmpress.data.views import view_bytes
from lmpress.models.registry import SHIPPED, WEIGHTS_DIR
from lmpress.progress import Progress

MODALITIES = {"wiki": "text", "image": "image", "audio": "audio"}
BASELINES = ["gzip", "xz", "png", "flac"]


def held_out_set_bytes(modality: str) -> int:
    """Size of a modality's whole held-out split as the models see it (prefix copies counted once)."""
    views = sorted((view_bytes(f, modality) for f in split_files(modality, "eval")), key=len, reverse=True)
    kept: list[bytes] = []
    for v in views:
        if not any(k.startswith(v) for k in kept):
            kept.append(v)
    return sum(len(v) for v in kept)


def cell(result, set_bytes: int) -> str:
    if result is None:
        return "–"
    if not result.compressor.startswith(LMPRESS_PREFIX):
        return f"{result.rate:.3f}"
    return f"**{result.rate:.3f}** / {result.rate + result.model_bytes / set_bytes:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=sorted(SHIPPED))
    p.add_argument("--max-bytes", type=int, default=262_144)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "lmpress" / "bench")
    p.add_argument("--json", type=Path)
    a = p.parse_args()

    datasets = [load_dataset(name, a.max_bytes) for name in MODALITIES]
    compressors = BASELINES + [LMPRESS_PREFIX + m for m in a.models]
    total = sum(ds.raw_bytes for ds in datasets) * len(compressors)
    with Progress(total, "family table") as bar:
        results = run(datasets, compressors, ["chunked"], a.cache_dir, workers=a.workers, progress=bar.update)
    # Results name classical codecs by their display name ("xz -9e"); map the bench keys to it.
    label = {key: CODECS[key].name for key in BASELINES}
    table = {(r.compressor, r.dataset): r for r in results}

    set_bytes = {ds.name: held_out_set_bytes(ds.modality) for ds in datasets}
    print(f"machine: {machine_line()}\n")
    print("held-out samples: " + ", ".join(f"{ds.name} {ds.raw_bytes:,} B ({ds.modality}) of a "
                                           f"{set_bytes[ds.name]:,} B held-out set" for ds in datasets))
    head = " | ".join(f"{MODALITIES[d.name]} raw / adjusted" for d in datasets)
    print(f"\n| compressor | trained on | parameters | tokens | wall time | {head} |")
    print("|---|---|---:|---:|---:|" + "---:|" * len(datasets))
    rows = []
    for name in compressors:
        cells = [cell(table.get((label.get(name, name), ds.name)), set_bytes[ds.name]) for ds in datasets]
        if name.startswith(LMPRESS_PREFIX):
            model = name[len(LMPRESS_PREFIX):]
            m = json.loads((WEIGHTS_DIR / SHIPPED[model] / "manifest.json").read_text())
            facts = [", ".join(m["modalities"]), f"{m['parameters']:,}", f"{m['tokens'] / 1e6:.1f}M",
                     f"{m['train_seconds'] / 60:.0f} min"]
        else:
            facts = ["-", "-", "-", "-"]
        key = label.get(name, name)
        print(f"| {key} | " + " | ".join(facts + cells) + " |")
        rows.append({"compressor": key, "facts": facts, "results": {
            ds.name: table[(key, ds.name)].to_dict() for ds in datasets if (key, ds.name) in table}})
    print("\nchunked: 2048-byte chunks, each coded alone; a classical codec's fixed container counted once. "
          "Model cells: raw rate / adjusted rate = raw + model bytes (float32) / held-out set bytes.")
    if a.json:
        a.json.write_text(json.dumps({"machine": machine_line(), "max_bytes": a.max_bytes,
                                      "held_out_set_bytes": set_bytes, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
