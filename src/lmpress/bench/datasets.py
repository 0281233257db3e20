"""Benchmark datasets: items of one modality, each in its true shape and in the byte view a model sees."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmpress.baselines import BYTES, Layout
from lmpress.data.corpus import corpus_root, split_files
from lmpress.data.views import PATCH_COLS, PATCH_ROWS, files_of, grayscale_pixels, image_patches, pcm16
from lmpress.errors import LmpressError

CHUNK = 2048

# Presets over the corpus's held-out split (never in any shipped model's training data).
PRESETS = {"wiki": ("text", "wiki/enwik8_head"), "image": ("image", None), "audio": ("audio", None),
           "text": ("text", None)}


@dataclass
class Item:
    """One file: ``whole`` in its true shape (``whole_layout``), ``view`` the model's bytes."""

    name: str
    whole: bytes
    whole_layout: Layout
    view: bytes
    chunk_layout: Layout  # the true shape of one 2048-byte chunk of the view


@dataclass
class Dataset:
    name: str
    modality: str  # text | image | audio | bytes
    items: list[Item]

    @property
    def raw_bytes(self) -> int:
        return sum(len(i.view) for i in self.items)

    def digest(self) -> str:
        h = hashlib.sha256(self.modality.encode())
        for item in self.items:
            h.update(hashlib.sha256(item.view).digest())
        return h.hexdigest()[:16]


def _image_item(path: Path, budget: int) -> Item:
    pixels = grayscale_pixels(path)
    rows = pixels.shape[0] // PATCH_ROWS
    cols = pixels.shape[1] // PATCH_COLS
    # Keep whole patch rows within the byte budget (the image keeps its true width), or
    # for a budget below one patch row, the left part of the first row.
    if cols * CHUNK > budget:
        rows, cols = 1, max(1, budget // CHUNK)
    else:
        rows = min(rows, budget // (CHUNK * cols))
    cropped = np.ascontiguousarray(pixels[: rows * PATCH_ROWS, : cols * PATCH_COLS])
    layout = Layout("image", width=cropped.shape[1], height=cropped.shape[0])
    patch = Layout("image", width=PATCH_COLS, height=PATCH_ROWS)
    return Item(path.name, cropped.tobytes(), layout, image_patches(cropped).tobytes(), patch)


def _audio_item(path: Path, budget: int) -> Item:
    samples, rate = pcm16(path)
    data = samples[: budget // 2].astype("<i2").tobytes()
    if len(data) > budget - budget % CHUNK >= CHUNK:  # cut a capped file at a chunk boundary
        data = data[: budget - budget % CHUNK]
    layout = Layout("audio", sample_rate=rate)
    return Item(path.name, data, layout, data, layout)


def load_dataset(spec: str, max_bytes: int, modality: str | None = None) -> Dataset:
    """A preset (wiki, text, image, audio, random) or a file/folder read through ``modality``."""
    if spec == "random":
        data = np.random.default_rng(0).integers(0, 256, max_bytes, dtype=np.uint8).tobytes()
        return Dataset("random", "bytes", [Item("random", data, BYTES, data, BYTES)])
    if spec in PRESETS:
        modality, sub = PRESETS[spec]
        files = files_of(corpus_root() / sub, modality) if sub else split_files(modality, "eval")
        name = spec
    else:
        path = Path(spec)
        if not path.exists():
            raise LmpressError(f"{spec}: no such file, folder or preset (presets: {', '.join([*PRESETS, 'random'])})")
        modality = modality or "bytes"
        files = files_of(path, modality)
        name = path.name
    if not files:
        raise LmpressError(f"{spec}: no {modality} files")
    items: list[Item] = []
    used = 0
    # Spread the budget over the files evenly so a cap samples many files, not the first one.
    per_file = max(CHUNK, max_bytes // len(files))
    for f in files:
        budget = min(per_file, max_bytes - used)
        if budget < CHUNK and modality in ("image", "audio"):
            break
        if budget <= 0:
            break
        if modality == "image":
            item = _image_item(f, budget)
        elif modality == "audio":
            item = _audio_item(f, budget)
        else:
            data = f.read_bytes()
            if len(data) > budget:  # cut a capped file at a chunk boundary where the budget allows
                data = data[: budget - budget % CHUNK if budget >= CHUNK else budget]
            item = Item(f.name, data, BYTES, data, BYTES)
        if item.view:
            items.append(item)
            used += len(item.view)
    return Dataset(name, modality, items)
