"""In-context compression (Delétang et al. 2023, §3.5, Fig. 6): rate against position in the context.

For each modality, many held-out 2048-byte chunks; for each position bucket
(``bucket`` bytes), the mean bits per byte spent there:

* lmpress models: the code length of each byte under the coder's integer
  frequencies (what the range coder spends, to ~0.003%), from the same
  lockstep steps as coding; the chunks are also compressed and decoded, and
  that archive's rate is reported beside the curve's mean;
* gzip / xz: the growth of the compressed size of the chunk's prefix,
  (|C(x[:t + bucket])| - |C(x[:t])|) / bucket, in bits per byte.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lmpress.analysis.generative import CLASSICAL
from lmpress.coding import entropy
from lmpress.models.base import Predictor

CHUNK = 2048


def held_out_chunks(modality: str, count: int) -> np.ndarray:
    """``count`` 2048-byte chunks [count, 2048] spread over the held-out files of a modality."""
    from lmpress.data.corpus import split_files
    from lmpress.data.views import view_bytes

    chunks = []
    files = split_files(modality, "eval")
    per_file = max(1, -(-count // len(files)))
    for f in files:
        data = view_bytes(f, modality)
        n = len(data) // CHUNK
        # evenly inside the file, never its first or last chunk (image borders, silence at the ends)
        for i in np.linspace(0, n - 1, num=min(per_file, n) + 2, dtype=int)[1:-1]:
            chunks.append(np.frombuffer(data[i * CHUNK:(i + 1) * CHUNK], dtype=np.uint8))
        if len(chunks) >= count:
            break
    return np.stack(chunks[:count])


def predictor_curve(predictor: Predictor, chunks: np.ndarray, bucket: int,
                    tick: Callable[[int], None] | None = None) -> np.ndarray:
    """Mean bits per byte in each position bucket, under the coder's quantized model."""
    bits = np.zeros(chunks.shape, dtype=np.float64)
    probs = predictor.begin(len(chunks))
    for t in range(CHUNK):
        weights = entropy.frequencies(probs)
        bits[:, t] = entropy.code_lengths(weights, chunks[:, t].astype(np.int64))
        if t + 1 < CHUNK:
            probs = predictor.advance(chunks[:, t])
        if tick:
            tick(len(chunks))
    return bits.reshape(len(chunks), CHUNK // bucket, bucket).mean(axis=(0, 2))


def compressor_curve(name: str, chunks: np.ndarray, bucket: int,
                     tick: Callable[[int], None] | None = None) -> np.ndarray:
    compress = CLASSICAL[name]
    cuts = range(0, CHUNK + 1, bucket)
    sizes = np.zeros((len(chunks), len(cuts)))
    for i, chunk in enumerate(chunks):
        data = chunk.tobytes()
        sizes[i] = [8 * len(compress(data[:t])) for t in cuts]
        if tick:
            tick(CHUNK)
    return np.diff(sizes, axis=1).mean(axis=0) / bucket


def run(models: list[str], compressors: list[str], modalities: list[str], count: int, bucket: int,
        progress: Callable[[int], None] | None = None) -> dict:
    """Curves for every modality and compressor; each model's chunks are also coded and decoded."""
    import lmpress
    from lmpress.models.registry import load_predictor

    results: dict = {"chunk": CHUNK, "bucket": bucket, "positions": list(range(0, CHUNK, bucket)),
                     "modalities": {}}
    for modality in modalities:
        chunks = held_out_chunks(modality, count)
        curves, archive_rates = {}, {}
        for name in compressors:
            curves[name] = compressor_curve(name, chunks, bucket, progress).tolist()
        for model in models:
            predictor = load_predictor(model, mix=False)
            curves[predictor.name] = predictor_curve(predictor, chunks, bucket, progress).tolist()
            data = chunks.tobytes()
            blob = lmpress.compress(data, model, chunk_size=CHUNK, mix=False)
            if lmpress.decompress(blob) != data:
                raise RuntimeError(f"{model}: decoded chunks differ")
            header = len(lmpress.compress(b"", model, mix=False))
            archive_rates[predictor.name] = 8 * (len(blob) - header) / len(data)
        results["modalities"][modality] = {"chunks": len(chunks), "curves_bits_per_byte": curves,
                                           "archive_bits_per_byte_without_header": archive_rates}
    return results


def plot(results: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mods = results["modalities"]
    fig, axes = plt.subplots(1, len(mods), figsize=(4.2 * len(mods), 3.4), squeeze=False)
    x = np.array(results["positions"]) + results["bucket"] / 2
    for ax, (modality, r) in zip(axes[0], mods.items()):
        for name, curve in r["curves_bits_per_byte"].items():
            ax.plot(x, curve, label=name, lw=1.4)
        ax.set_title(f"{modality} ({r['chunks']} held-out chunks)")
        ax.set_xlabel("position in the 2048-byte context")
        ax.set_ylim(0, 8.5)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("bits per byte")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
