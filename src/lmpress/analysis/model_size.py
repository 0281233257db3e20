"""Optimal model size for a dataset size (Delétang et al. 2023, §3.3, Fig. 2; the second study's sweet spot).

A compressor that ships its model pays for it: for a dataset of D bytes the
adjusted rate is (compressed size + stored model bytes) / D. For each model and
each storage precision, the raw rate is measured by compressing and decoding a
held-out sample with the weights *as they would be stored*:

* ``float32``: the weights as trained (4 bytes each);
* ``float16``: every weight rounded to half precision (2 bytes each);
* ``int8``: every matrix quantized per row, symmetric, 255 levels, with one
  float32 scale per row (1 byte per weight + 4 per row); vectors (norm gains)
  stay float32.

Quantized weights are dequantized to float32 for computing, so the codec is
unchanged; the archive's model id is that of the quantized weights. Pretrained
LLMs appear as shipped: their GGUF files are already 4-bit quantized, and the
stored size is the file's size. The adjusted rate for each dataset size D is
then raw rate + stored bytes / D (the raw rate of the sample standing in for
the whole dataset).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lmpress.analysis.in_context import CHUNK, held_out_chunks
from lmpress.api import compress, decompress
from lmpress.errors import LmpressError
from lmpress.models.registry import SHIPPED, WEIGHTS_DIR, is_llm, load_predictor, resolve_name
from lmpress.models.store import load_model, save_model
from lmpress.models.transformer import ByteTransformer

PRECISIONS = ("float32", "float16", "int8")
DATASET_SIZES = (1e5, 1e6, 1e7, 1e8, 1e9)


def quantized(model: ByteTransformer, precision: str) -> tuple[ByteTransformer, int]:
    """A copy of ``model`` with weights rounded as stored at ``precision``, and the stored size in bytes."""
    if precision not in PRECISIONS:
        raise LmpressError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    model = copy.deepcopy(model)
    stored = 0
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() < 2 or precision == "float32":
                stored += 4 * p.numel()
            elif precision == "float16":
                p.copy_(p.half().float())
                stored += 2 * p.numel()
            else:
                scale = p.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
                p.copy_(torch.round(p / scale).clamp(-127, 127) * scale)
                stored += p.numel() + 4 * p.shape[0]
    return model, stored


def coded_rate(data: bytes, model: str, workers: int) -> float:
    archive = compress(data, model, block_chunks=max(1, -(-len(data) // CHUNK // workers)), workers=workers)
    if decompress(archive, workers=workers) != data:
        raise LmpressError(f"{model}: decoded data differs from the input; no figure reported")
    return len(archive) / len(data)


def training_budget(manifest: dict) -> str:
    """What a byte model was trained on and for how long: models that share it form one curve."""
    modalities = "+".join(manifest.get("modalities", [])) or "unknown data"
    tokens = manifest.get("tokens")
    return f"{modalities}, {tokens / 1e6:.1f}M tokens" if tokens else modalities


def run(models: list[str], modality: str, sample_bytes: int, precisions: list[str], sizes: list[float],
        workers: int = 2, tick: Callable[[int], None] | None = None) -> dict:
    chunks = held_out_chunks(modality, max(1, sample_bytes // CHUNK))
    data = chunks.tobytes()
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            canonical = resolve_name(name)
            if is_llm(name):  # named LLMs and local GGUF files / folders alike
                info = load_predictor(canonical).describe()
                rate = coded_rate(data, canonical, workers)
                points.append({"model": canonical, "precision": "gguf (as shipped)", "parameters": info["parameters"],
                               "stored_bytes": info["stored_bytes"], "rate": rate, "trained": "pretrained LLM"})
                if tick:
                    tick(len(data) * len(precisions))
                continue
            path = WEIGHTS_DIR / SHIPPED[canonical] / "model.pt" if canonical in SHIPPED else Path(name)
            model, manifest = load_model(path)
            label = canonical if canonical in SHIPPED else manifest.get("name", canonical)
            for precision in precisions:
                rounded, stored = quantized(model, precision)
                rounded_path = Path(tmp) / f"{canonical.replace('/', '_')}-{precision}.pt"
                save_model(rounded_path, rounded, {**manifest, "stored_precision": precision})
                rate = coded_rate(data, str(rounded_path), workers)
                points.append({"model": label, "precision": precision, "parameters": model.num_parameters(),
                               "stored_bytes": stored, "rate": rate, "trained": training_budget(manifest)})
                if tick:
                    tick(len(data))
    for p in points:
        p["adjusted"] = {f"{d:.0e}": p["rate"] + p["stored_bytes"] / d for d in sizes}
    best = {f"{d:.0e}": min(points, key=lambda p: p["adjusted"][f"{d:.0e}"]) for d in sizes}
    return {"modality": modality, "sample_bytes": len(data), "sizes": [f"{d:.0e}" for d in sizes],
            "points": points, "best": {d: f"{b['model']} ({b['precision']})" for d, b in best.items()}}


def plot(results: dict, path) -> None:
    """One panel per dataset size: adjusted rate against stored size; colour = how a model was trained
    (lines join models trained alike), marker = storage precision, star = the best point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {"float32": "o", "float16": "s", "int8": "^"}
    series: dict[str, list[dict]] = {}
    for p in results["points"]:
        series.setdefault(p.get("trained", ""), []).append(p)
    colors = dict(zip(series, plt.cm.tab10(np.arange(len(series)) % 10)))
    sizes = results["sizes"]
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.1 * len(sizes), 3.9), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for trained, pts in series.items():
            for precision in {p["precision"] for p in pts}:
                line = sorted((p for p in pts if p["precision"] == precision), key=lambda p: p["stored_bytes"])
                ax.plot([p["stored_bytes"] for p in line], [p["adjusted"][size] for p in line], lw=0.8,
                        color=colors[trained], marker=markers.get(precision, "D"), ms=4)
        best = min(results["points"], key=lambda p: p["adjusted"][size])
        ax.scatter(best["stored_bytes"], best["adjusted"][size], s=160, marker="*", color="gold",
                   edgecolor="black", zorder=5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axhline(1.0, color="grey", lw=0.6, ls=":")
        ax.set_title(f"dataset {float(size):.0e} bytes\nbest: {best['model']} ({best['precision']})", fontsize=8)
        ax.set_xlabel("stored model size (bytes)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel(f"adjusted rate on {results['modality']}\n(compressed + model) / data", fontsize=8)
    handles = [plt.Line2D([], [], color=colors[t], lw=2,
                          label=f"{', '.join(dict.fromkeys(p['model'] for p in pts))} ({t})")
               for t, pts in series.items()]
    handles += [plt.Line2D([], [], color="grey", marker=m, ls="", label=f"stored as {name}")
                for name, m in [*markers.items(), ("gguf (as shipped)", "D")]]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)
