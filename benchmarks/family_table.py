"""The model-family table: each shipped byte model x held-out text / image / audio, next to classical codecs.

    python benchmarks/family_table.py                         # 256 KB per modality, all shipped byte models
    python benchmarks/family_table.py --max-bytes 65536 --json docs/bench/family.json

Runs ``lmpress bench``'s harness (same datasets, 2048-byte chunks, every
output decoded and compared, results cached) and prints one Markdown table:
raw rate and adjusted rate (model bytes as stored, float32, added to the
compressed size of each held-out set) per modality, with what each model was
trained on, its training tokens and wall time from its manifest.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lmpress.bench.datasets import load_dataset
from lmpress.bench.harness import BASELINES as CODECS
from lmpress.bench.harness import LMPRESS_PREFIX, run
from lmpress.bench.measure import machine_line
from lmpress.bench.report import rate_cell
from lmpress.models.registry import SHIPPED, WEIGHTS_DIR
from lmpress.progress import Progress

MODALITIES = {"wiki": "text", "image": "image", "audio": "audio"}
BASELINES = ["gzip", "xz", "png", "flac"]


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

    print(f"machine: {machine_line()}\n")
    print("held-out data: " + ", ".join(f"{ds.name} {ds.raw_bytes:,} B ({ds.modality})" for ds in datasets))
    head = " | ".join(f"{MODALITIES[d.name]} raw / adjusted" for d in datasets)
    print(f"\n| compressor | trained on | parameters | tokens | wall time | {head} |")
    print("|---|---|---:|---:|---:|" + "---:|" * len(datasets))
    rows = []
    for name in compressors:
        cells = [rate_cell(table.get((label.get(name, name), ds.name))) for ds in datasets]
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
    print("\nchunked: 2048-byte chunks, each coded alone; a classical codec's fixed container counted once; "
          "adjusted = (compressed + model bytes) / data bytes.", file=sys.stderr)
    if a.json:
        a.json.write_text(json.dumps({"machine": machine_line(), "max_bytes": a.max_bytes, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
