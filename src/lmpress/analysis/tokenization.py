"""Tokenization is compression (Delétang et al. 2023, §3.6, Table 2).

Byte models and byte-level BPE models of several vocabulary sizes, at several
model sizes, are trained the same way on the Wikipedia training text
(``lmpress train --vocab V``: same steps, batch and sequence length in
*symbols*, so a BPE model sees more text per sequence and per step), then code
the same held-out Wikipedia XML in 2048-byte chunks. The rate is archive bytes
per original byte, every archive decoded and compared. A token stands for
several bytes, so the model makes fewer predictions per byte and attends over
more text, but each prediction is over a larger alphabet, and the embedding
and output matrices grow with the vocabulary.

Runs live in ``RUNS/<size>-v<vocab>/`` (the trainer's folders): a finished
model is reused, an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lmpress.analysis.in_context import CHUNK, held_out_chunks
from lmpress.analysis.model_size import coded_rate
from lmpress.models.store import load_model

VOCABS = (256, 1000, 2000, 5000, 10000, 20000)
SIZES = ("200k", "800k")


def train_model(out: Path, size: str, vocab: int, steps: int, batch_size: int, seq_len: int,
                threads: int, eval_chunks: int = 48) -> Path:
    """The model of one (size, vocab) cell: trained now, resumed, or reused when finished."""
    from lmpress.train.trainer import TrainConfig, train

    model_path = out / "model.pt"
    if model_path.exists() and load_model(model_path)[1].get("steps") == steps:
        return model_path
    command = (f"lmpress train {out} --size {size} --text 1 --image 0 --audio 0 --vocab {vocab} --steps {steps} "
               f"--batch-size {batch_size} --seq-len {seq_len} --threads {threads} --eval-chunks {eval_chunks}")
    cfg = TrainConfig(out_dir=str(out), size=size, weights={"text": 1.0, "image": 0.0, "audio": 0.0},
                      max_steps=steps, batch_size=batch_size, seq_len=seq_len, vocab=vocab, threads=threads,
                      warmup=min(200, max(1, steps // 10)), eval_every=steps, eval_chunks=eval_chunks,
                      command=command)
    return train(cfg)


def run(runs: Path, sizes: list[str], vocabs: list[int], steps: int, sample_bytes: int, *, batch_size: int = 16,
        seq_len: int = 512, threads: int = 1, workers: int = 2, eval_chunks: int = 48,
        tick: Callable[[int], None] | None = None) -> dict:
    """Train (or reuse) every cell, code the held-out sample with it; one result row per cell.
    ``eval_chunks``: held-out 2048-byte chunks per training log evaluation (the rates come from ``sample_bytes``)."""
    data = held_out_chunks("text", max(1, sample_bytes // CHUNK)).tobytes()
    rows = []
    for size in sizes:
        for vocab in vocabs:
            path = train_model(runs / f"{size}-v{vocab}", size, vocab, steps, batch_size, seq_len, threads,
                               eval_chunks)
            model, manifest = load_model(path)
            start = time.perf_counter()
            rate = coded_rate(data, str(path), workers)
            rows.append({
                "size": size, "vocab": vocab, "parameters": model.num_parameters(),
                "non_embedding_parameters": model.num_parameters(non_embedding=True)
                - model.head.weight.numel(),
                "steps": manifest["steps"], "tokens": manifest["tokens"],
                "bytes_per_token": manifest.get("bytes_per_token", 1.0),
                "train_seconds": manifest["train_seconds"],
                "held_out_bits_per_byte": manifest["held_out_bits_per_byte"].get("text"),
                "rate": rate, "code_seconds": time.perf_counter() - start,
            })
            if tick:
                tick(1)
    return {"sample_bytes": len(data), "chunk": CHUNK, "steps": steps, "batch_size": batch_size,
            "seq_len": seq_len, "rows": rows}


def markdown(results: dict) -> str:
    lines = [f"held-out Wikipedia XML, {results['sample_bytes']:,} bytes in {results['chunk']}-byte chunks, "
             f"every archive decoded; {results['steps']} steps of {results['batch_size']} x {results['seq_len']} "
             "symbols per model",
             "",
             "| size | vocabulary | parameters | without embeddings | bytes/token | training tokens | train min | "
             "held-out bits/byte (teacher-forced) | rate (coded) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["rows"]:
        lines.append(f"| {r['size']} | {r['vocab']:,} | {r['parameters']:,} | {r['non_embedding_parameters']:,} | "
                     f"{r['bytes_per_token']:.2f} | {r['tokens']:,} | {r['train_seconds'] / 60:.1f} | "
                     f"{r['held_out_bits_per_byte']:.3f} | {r['rate']:.4f} |")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for size in dict.fromkeys(r["size"] for r in results["rows"]):
        rows = sorted((r for r in results["rows"] if r["size"] == size), key=lambda r: r["vocab"])
        ax.plot([r["vocab"] for r in rows], [r["rate"] for r in rows], marker="o", label=f"{size} model")
    ax.set_xscale("log")
    ax.set_xlabel("vocabulary size (256 = bytes; more = byte-level BPE)")
    ax.set_ylabel("compression rate (archive / original bytes)")
    ax.set_title(f"Tokenization vs rate (held-out Wikipedia, {results['steps']} training steps)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def write(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenization.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "tokenization.png")


def best_vocab(results: dict) -> dict[str, int]:
    """The vocabulary with the lowest coded rate, per model size."""
    best: dict[str, int] = {}
    for size in dict.fromkeys(r["size"] for r in results["rows"]):
        rows = [r for r in results["rows"] if r["size"] == size]
        best[size] = int(rows[int(np.argmin([r["rate"] for r in rows]))]["vocab"])
    return best
