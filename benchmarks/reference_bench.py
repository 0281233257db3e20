"""The numpy reference decoder against lmpress's decoder, on the same archive, in one run.

    python benchmarks/reference_bench.py FILE [FILE ...] [--json out.json]

For each file: ``lmpress`` compresses it with default settings (the model and the
context mixer it picks), ``lmpress export-exact`` writes that model's integers,
then the archive is decoded by ``lmpress -t`` (one coding process) and by
``reference.py`` (numpy only, one BLAS thread), alternately, each output compared
with the file. Times are wall-clock per decode, start-up included (both import
their libraries; lmpress also loads torch and compiles nothing: numba's cache is
warmed by the compression). The issue's target: the reference within 10x.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lmpress.bench.measure import machine_line
from lmpress.coding.container import ArchiveReader

REFERENCE = Path(__file__).resolve().parents[1] / "src/lmpress/models/exact/reference.py"


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    r = subprocess.run(command, capture_output=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(command)}: {r.stderr.decode().strip()[-500:]}")
    return time.perf_counter() - start


def measure(path: Path, work: Path) -> dict:
    archive, npz, out = work / "a.lmpz", work / "model.npz", work / "a.out"
    lmpress = [sys.executable, "-m", "lmpress.cli"]
    timed([*lmpress, "-f", "-k", "-j", "1", "-o", str(archive), str(path)])
    with open(archive, "rb") as f:
        header = ArchiveReader(f).header
    timed([*lmpress, "export-exact", "-f", header.model_name, str(npz)])
    lmpress_s = timed([*lmpress, "-t", "-j", "1", str(archive)])
    reference_s = timed([sys.executable, str(REFERENCE), str(archive), str(npz), str(out)])
    if out.read_bytes() != path.read_bytes():
        raise SystemExit(f"{path}: the reference decoder's output differs")
    size = path.stat().st_size
    return {"file": str(path), "bytes": size, "archive_bytes": archive.stat().st_size, "model": header.model_name,
            "arithmetic": header.arithmetic.get("name"), "lmpress_decode_s": lmpress_s,
            "reference_decode_s": reference_s, "ratio": reference_s / lmpress_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--json", help="write the rows here")
    a = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for path in a.files:
            row = measure(path, Path(work))
            rows.append(row)
            print(f"{path.name}: {row['bytes']:,} bytes, {row['model']} ({row['arithmetic']}): lmpress -t "
                  f"{row['lmpress_decode_s']:.1f} s, reference {row['reference_decode_s']:.1f} s "
                  f"({row['ratio']:.1f}x)", flush=True)
    print(machine_line())
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": machine_line(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
