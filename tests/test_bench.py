"""The harness on a tiny slice of the corpus: figures agree with an independent computation, outputs are written."""

import gzip
import json
import subprocess
import sys

import lmpress
from lmpress.bench.datasets import load_dataset
from lmpress.bench.harness import run, user_file
from lmpress.models.exact.mixer import IMAGE_MIXER, TEXT_MIXER


def test_classical_and_model_rows_on_tiny_data(tmp_path):
    wiki = load_dataset("wiki", 3000)
    image = load_dataset("image", 3 * 2048)
    results = run([wiki, image], ["gzip", "png", "lmpress:default"], ["chunked", "unchunked"], tmp_path / "cache")
    by = {(r.dataset, r.compressor, r.protocol): r for r in results}

    # gzip chunked, computed independently: every 2048-byte chunk gzipped, 18 header bytes counted once
    expected = 18
    for item in wiki.items:
        for i in range(0, len(item.view), 2048):
            expected += len(gzip.compress(item.view[i:i + 2048], 9, mtime=0)) - 18
    assert by[("wiki", "gzip -9", "chunked")].compressed_bytes == expected

    assert ("wiki", "PNG", "chunked") not in by  # PNG only where its modality fits
    model = by[("wiki", "lmpress:default", "chunked")]
    assert model.rate < 1.0 and model.adjusted_rate > model.rate
    assert model.raw_bytes == wiki.raw_bytes
    assert by[("image", "PNG", "unchunked")].raw_bytes == image.raw_bytes
    whole = by[("wiki", "lmpress:default", "unchunked")]  # default settings: whole file, context mixing
    assert whole.settings["arithmetic"]["name"].endswith("+" + TEXT_MIXER) and whole.raw_bytes == wiki.raw_bytes
    assert whole.compressed_bytes == sum(len(lmpress.compress(item.view, "default")) for item in wiki.items)
    # images as users have them: PGM files through the front end (stripes, the image mixer), rate over pixels
    photo = by[("image", "lmpress:default", "unchunked")]
    assert photo.settings["arithmetic"]["name"].endswith("+" + IMAGE_MIXER) and photo.raw_bytes == image.raw_bytes
    assert photo.compressed_bytes == sum(len(lmpress.compress(user_file(item), "default")) for item in image.items)
    assert all(user_file(item).startswith(b"P5") for item in image.items)

    again = run([wiki], ["gzip"], ["chunked"], tmp_path / "cache")  # served from the cache
    assert again[0].cached and again[0].compressed_bytes == expected


def test_bench_cli_writes_table_json_csv_and_plots(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "lmpress.cli", "bench", "wiki", "random", "--quick", "--max-bytes",
                        "3000", "--compressors", "gzip,xz,lmpress:default", "--no-cache", "--out", str(out), "-q"],
                       capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert b"| gzip -9 | chunked |" in r.stdout
    data = json.loads((out / "bench.json").read_text())
    assert {x["compressor"] for x in data["results"]} == {"gzip -9", "xz -9e", "lmpress:default"}
    for name in ("bench.md", "bench.csv", "rates.png", "model_size.png"):
        assert (out / name).stat().st_size > 0
