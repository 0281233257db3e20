"""The benchmark harness: every compressor on every dataset, chunked and unchunked, decoded and checked.

Protocols (as in "Language Modeling Is Compression"):

* ``chunked``: each item's byte view is cut into 2048-byte chunks (image
  patches are 32x64 images, audio chunks 1024 samples at the item's rate) and
  every chunk is compressed on its own; the codec's fixed container (see
  ``Compressor.container_bytes``) is counted once for the whole dataset.
  lmpress models always work this way (their context is the chunk); items
  are coded in archives whose chunks are exactly the items' chunks (see
  ``_archive_groups``), and the archive's fixed container (header and empty
  trailer, the size of an archive of empty input) is likewise counted once.
* ``unchunked``: each item (whole file: text as is, the whole grayscale
  image, the whole 16-bit recording) is compressed at once, every byte of
  every output counted.

Raw rate = compressed / original bytes. Adjusted rate adds the model's stored
size (lmpress models only). Every output is decoded and compared; a mismatch
stops the run. Results are cached per (data digest, compressor, protocol,
settings), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lmpress.baselines import ALL as BASELINES
from lmpress.baselines import Compressor
from lmpress.bench.datasets import CHUNK, Dataset
from lmpress.coding.container import ArchiveReader
from lmpress.errors import LmpressError

LMPRESS_PREFIX = "lmpress:"


@dataclass
class Result:
    dataset: str
    modality: str
    compressor: str
    protocol: str
    raw_bytes: int
    compressed_bytes: int
    model_bytes: int
    encode_seconds: float
    decode_seconds: float
    items: int
    settings: dict = field(default_factory=dict)
    cached: bool = False

    @property
    def rate(self) -> float:
        return self.compressed_bytes / self.raw_bytes

    @property
    def adjusted_rate(self) -> float:
        return (self.compressed_bytes + self.model_bytes) / self.raw_bytes

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(rate=self.rate, adjusted_rate=self.adjusted_rate,
                 encode_kb_per_s=self.raw_bytes / 1e3 / max(self.encode_seconds, 1e-9),
                 decode_kb_per_s=self.raw_bytes / 1e3 / max(self.decode_seconds, 1e-9))
        return d


def _check(name: str, original: bytes, decoded: bytes) -> None:
    if original != decoded:
        raise LmpressError(f"{name}: decoded data differs from the original; no figure reported")


def run_classical(codec: Compressor, ds: Dataset, protocol: str, tick: Callable[[int], None]) -> Result | None:
    layouts = [i.chunk_layout if protocol == "chunked" else i.whole_layout for i in ds.items]
    if not all(codec.accepts(layout) for layout in layouts):
        return None
    total = enc_s = dec_s = 0.0
    fixed = codec.container_bytes(layouts[0]) if protocol == "chunked" else 0
    for item, layout in zip(ds.items, layouts):
        pieces = [item.view[i:i + CHUNK] for i in range(0, len(item.view), CHUNK)] if protocol == "chunked" \
            else [item.whole]
        for piece in pieces:
            t0 = time.perf_counter()
            blob = codec.compress(piece, layout)
            t1 = time.perf_counter()
            _check(f"{codec.name} on {item.name}", piece, codec.decompress(blob, layout))
            dec_s += time.perf_counter() - t1
            enc_s += t1 - t0
            total += len(blob) - fixed
            tick(len(piece))
    return Result(ds.name, ds.modality, codec.name, protocol, ds.raw_bytes, int(total + fixed), 0,
                  enc_s, dec_s, len(ds.items), {"chunk": CHUNK if protocol == "chunked" else None,
                                                "container_bytes_counted_once": fixed})


def _archive_groups(items: list) -> list[list]:
    """Consecutive items whose views are whole chunks share an archive: its chunks are exactly the
    items' own chunks (none straddles two items), and the lockstep batch grows, which is faster."""
    groups, current = [], []
    for item in items:
        current.append(item)
        if len(item.view) % CHUNK:
            groups.append(current)
            current = []
    return groups + ([current] if current else [])


def run_lmpress(model: str, ds: Dataset, workers: int, tick: Callable[[int], None],
                ray: str | None = None, protocol: str = "chunked") -> Result:
    """``chunked``: the studies' protocol (the network alone on independent 2048-byte chunks, items sharing
    archives); ``unchunked``: each file as a user compresses it, default settings (whole-file segments,
    context mixing)."""
    if protocol == "unchunked":
        return _run_lmpress_whole(model, ds, workers, tick, ray)
    import lmpress
    from lmpress.models.registry import load_predictor

    predictor = load_predictor(model)
    fixed = len(lmpress.compress(b"", model, mix=False))
    total = enc_s = dec_s = 0.0
    groups = _archive_groups(ds.items)
    for group in groups:
        view = b"".join(item.view for item in group)
        t0 = time.perf_counter()
        blob = lmpress.compress(view, model, chunk_size=CHUNK, mix=False, workers=workers, ray=ray)
        t1 = time.perf_counter()
        _check(f"lmpress:{model} on {group[0].name}", view,
               lmpress.decompress(blob, model, workers=workers, ray=ray))
        dec_s += time.perf_counter() - t1
        enc_s += t1 - t0
        total += len(blob) - fixed
        tick(len(view))
    info = predictor.describe()
    return Result(ds.name, ds.modality, f"{LMPRESS_PREFIX}{model}", "chunked", ds.raw_bytes, int(total + fixed),
                  info["stored_bytes"], enc_s, dec_s, len(ds.items),
                  {"chunk": CHUNK, "container_bytes_counted_once": fixed, "model_id": predictor.model_id,
                   "parameters": info["parameters"], "workers": workers, "archives": len(groups)})


def user_file(item) -> bytes:
    """The item as a user has it on disk: an image as a PGM file, audio as a 16-bit mono WAV file, other
    data as it is; lmpress's front ends read the first two (the classical codecs get the same pixels or
    samples in their own containers)."""
    layout = item.whole_layout
    out = io.BytesIO()
    if layout.modality == "image":
        from PIL import Image

        pixels = np.frombuffer(item.whole, dtype=np.uint8).reshape(layout.height, layout.width)
        Image.fromarray(pixels).save(out, format="PPM")
        return out.getvalue()
    if layout.modality == "audio":
        import soundfile

        soundfile.write(out, np.frombuffer(item.whole, dtype="<i2"), layout.sample_rate, format="WAV",
                        subtype="PCM_16")
        return out.getvalue()
    return item.view


def _run_lmpress_whole(model: str, ds: Dataset, workers: int, tick: Callable[[int], None],
                       ray: str | None) -> Result:
    import lmpress
    from lmpress.models.registry import load_predictor

    predictor = load_predictor(model)
    fixed = len(lmpress.compress(b"", model))
    total = enc_s = dec_s = 0.0
    arithmetic = predictor.arithmetic
    for item in ds.items:
        data = user_file(item)
        t0 = time.perf_counter()
        blob = lmpress.compress(data, model, workers=workers, ray=ray)
        t1 = time.perf_counter()
        _check(f"lmpress:{model} on {item.name}", data, lmpress.decompress(blob, workers=workers, ray=ray))
        arithmetic = ArchiveReader(io.BytesIO(blob)).header.arithmetic  # the image front end picks its mixer
        dec_s += time.perf_counter() - t1
        enc_s += t1 - t0
        total += len(blob)
        tick(len(item.view))
    info = predictor.describe()
    # rate over the pixels or samples (ds.raw_bytes), the archive counting the file's header too
    return Result(ds.name, ds.modality, f"{LMPRESS_PREFIX}{model}", "unchunked", ds.raw_bytes, int(total),
                  info["stored_bytes"], enc_s, dec_s, len(ds.items),
                  {"chunk": None, "container_bytes_per_file": fixed, "model_id": predictor.model_id,
                   "arithmetic": arithmetic, "parameters": info["parameters"], "workers": workers})


def cache_key(ds: Dataset, compressor: str, protocol: str, settings: dict) -> str:
    blob = json.dumps([ds.digest(), compressor, protocol, settings], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def run(datasets: list[Dataset], compressors: list[str], protocols: list[str], cache_dir: Path | None,
        workers: int = 1, progress=None, ray: str | None = None) -> list[Result]:
    """Every (dataset, compressor, protocol) that applies."""
    from lmpress.models.registry import load_predictor

    results = []
    for ds in datasets:
        for name in compressors:
            is_model = name.startswith(LMPRESS_PREFIX)
            predictor = load_predictor(name[len(LMPRESS_PREFIX):]) if is_model else None
            identity = {"model_id": predictor.model_id, "arithmetic": predictor.arithmetic} if predictor else {}
            for protocol in protocols:
                key = cache_key(ds, name, protocol, {**identity, "chunk": CHUNK})
                path = cache_dir / f"{key}.json" if cache_dir else None
                if path is not None and path.exists():
                    d = json.loads(path.read_text())
                    results.append(Result(**{k: d[k] for k in Result.__dataclass_fields__ if k in d and k != "cached"},
                                          cached=True))
                    if progress:
                        progress(ds.raw_bytes)
                    continue
                tick = progress or (lambda n: None)
                if is_model:
                    result = run_lmpress(name[len(LMPRESS_PREFIX):], ds, workers, tick, ray, protocol)
                else:
                    if name not in BASELINES:
                        raise LmpressError(f"unknown compressor {name!r} (known: {', '.join(BASELINES)}, "
                                           f"{LMPRESS_PREFIX}MODEL)")
                    result = run_classical(BASELINES[name](), ds, protocol, tick)
                    if result is None:
                        continue
                results.append(result)
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(result.to_dict(), indent=1))
                    tmp.replace(path)
    return results
