"""Compressors as generative models (Delétang et al. 2023, "Language Modeling Is Compression", §3.4).

Any compressor C defines a next-byte distribution p(b | x) ∝ 2^(-ℓ(x + b)),
where ℓ is the length in bits of C's output; a neural predictor gives
p(b | x) directly. Sampling from either continues a real sample:

* autoregressive: each sampled byte joins the context of the next;
* teacher-forced: the context is always the true data, and each position's
  byte is sampled from the prediction made there (shows what the model
  expects, position by position, without drift).

Also reported: the true continuation's cost in bits/byte under each model.
"""

from __future__ import annotations

import lzma
import math
import zlib
from collections.abc import Callable
from typing import Protocol

import numpy as np

from lmpress.models.base import Predictor

CONTEXT = 2048  # bytes a compressor sees, as in the studies' chunks


class NextByteModel(Protocol):
    name: str

    def distribution(self, context: bytes) -> np.ndarray:
        """p(next byte | context), float64 [256], summing to 1."""
        ...


def _xz_raw(data: bytes) -> bytes:
    # LZMA2 at xz -9e settings but a small dictionary: the inputs are < 4 KB, so the output is the same
    # as with the 64 MiB dictionary, and 256 calls per byte do not each allocate 674 MB.
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 1 << 16}]
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=filters)


CLASSICAL: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda data: zlib.compress(data, 9),
    "xz": _xz_raw,
}


class CompressorModel:
    """A classical compressor's implied distribution: p(b | x) ∝ 2^(-ℓ(x + b)), ℓ in bits."""

    def __init__(self, name: str, compress: Callable[[bytes], bytes] | None = None) -> None:
        self.name = name
        self.compress = compress or CLASSICAL[name]

    def distribution(self, context: bytes) -> np.ndarray:
        context = context[-(CONTEXT - 1):]
        bits = np.array([8 * len(self.compress(context + bytes([b]))) for b in range(256)], dtype=np.float64)
        weights = np.exp2(-(bits - bits.min()))
        return weights / weights.sum()


class PredictorModel:
    """A neural predictor stepped incrementally; contexts must extend the previous one, or it restarts."""

    def __init__(self, predictor: Predictor) -> None:
        if predictor.vocab.size != 256:
            raise ValueError("generation works on bytes; token models are not supported here")
        self.name = predictor.name
        self.predictor = predictor
        self._context = b""
        self._probs: np.ndarray | None = None

    def distribution(self, context: bytes) -> np.ndarray:
        if self._probs is None or not context.startswith(self._context):
            self._probs, self._context = self.predictor.begin(1), b""
        for b in context[len(self._context):]:
            self._probs = self.predictor.advance(np.array([b]))
        self._context = context
        p = self._probs[0].astype(np.float64)
        return p / p.sum()


def continue_sample(model: NextByteModel, prompt: bytes, truth: bytes, rng: np.random.Generator,
                    teacher_forced: bool = False, tick: Callable[..., None] | None = None) -> tuple[bytes, float]:
    """Sample ``len(truth)`` bytes after ``prompt``; return them and the truth's cost in bits/byte.

    The truth's cost is taken along the true context (teacher-forced) when
    ``teacher_forced``, else it is not measured (returned as NaN): along a
    sampled context it would mean nothing.
    """
    out = bytearray()
    bits = 0.0
    for i, true_byte in enumerate(truth):
        context = prompt + (truth[:i] if teacher_forced else bytes(out))
        p = model.distribution(context)
        out.append(int(rng.choice(256, p=p)))
        if teacher_forced:
            bits -= math.log2(max(p[true_byte], 1e-300))
        if tick:  # the bar shows which model runs and, teacher-forced, its running cost of the truth
            tick(1, status=f"{model.name}: {bits / (i + 1):.3f} bits/B" if teacher_forced else model.name)
    return bytes(out), (bits / len(truth) if teacher_forced and truth else float("nan"))


# ---------------------------------------------------------------------------------------------
# `lmpress generate`: one held-out sample per modality, continued by every model side by side.


def held_out_samples() -> dict[str, tuple[bytes, list[tuple[bytes, bytes]], dict]]:
    """Per modality: the whole sample, its (prompt, truth) pieces, and how to lay it out.

    text: 1024 bytes of Wikipedia XML, then 256 to continue; image: a 32 x 64
    grayscale patch of a Kodak photo, each row's right half continued from the
    rows above and its left half; audio: 2048 bytes (1024 samples) of speech,
    the second half continued from the first.
    """
    from lmpress.data.corpus import split_files
    from lmpress.data.views import PATCH_COLS, PATCH_ROWS, grayscale_pixels, pcm16

    text_file = max(split_files("text", "eval"), key=lambda f: f.stat().st_size)
    text = text_file.read_bytes()[100_000:101_280]
    pixels = grayscale_pixels(sorted(split_files("image", "eval"))[0])
    top, left = pixels.shape[0] // 2, pixels.shape[1] // 2
    patch = np.ascontiguousarray(pixels[top:top + PATCH_ROWS, left:left + PATCH_COLS]).tobytes()
    half = PATCH_COLS // 2
    rows = [(patch[: r * PATCH_COLS + half], patch[r * PATCH_COLS + half: (r + 1) * PATCH_COLS])
            for r in range(PATCH_ROWS)]
    samples, rate = pcm16(sorted(split_files("audio", "eval"))[0])
    audio = samples[rate: rate + 1024].astype("<i2").tobytes()
    return {
        "text": (text, [(text[:1024], text[1024:])], {}),
        "image": (patch, rows, {"height": PATCH_ROWS, "width": PATCH_COLS}),
        "audio": (audio, [(audio[:1024], audio[1024:])], {"sample_rate": rate}),
    }


def run(out_dir, models: list[NextByteModel], modalities: list[str], teacher_forced: bool, seed: int,
        progress: Callable[..., None] | None = None) -> dict:
    """Generate with every model; write text, PNG and WAV files to ``out_dir``; return the figures."""
    from pathlib import Path

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = held_out_samples()
    results: dict = {"mode": "teacher-forced" if teacher_forced else "autoregressive", "seed": seed,
                     "modalities": {}}
    for modality in modalities:
        whole, pieces, layout = samples[modality]
        outputs = {"original": whole}
        figures = {}
        for model in models:
            rng = np.random.default_rng(seed)
            generated, costs = bytearray(), []
            for prompt, truth in pieces:
                sample, cost = continue_sample(model, prompt, truth, rng, teacher_forced, progress)
                generated += prompt[len(generated):] + sample  # rows: true left half, generated right half
                costs.append(cost * len(truth))
            outputs[model.name] = bytes(generated)
            truth_bytes = sum(len(t) for _, t in pieces)
            figures[model.name] = {"truth_bits_per_byte": sum(costs) / truth_bytes if teacher_forced else None}
        files = _write_outputs(out_dir, modality, outputs, layout)
        results["modalities"][modality] = {"models": figures, "files": files, **layout}
    return results


def _write_outputs(out_dir, modality: str, outputs: dict[str, bytes], layout: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    safe = {name: name.replace("/", "_").replace(":", "_") for name in outputs}
    written = []
    if modality == "text":
        path = out_dir / "text.txt"
        parts = [f"===== {name} =====\n{data.decode('utf-8', errors='replace')}\n" for name, data in outputs.items()]
        path.write_text("\n".join(parts))
        written.append(path.name)
    elif modality == "image":
        from PIL import Image

        h, w = layout["height"], layout["width"]
        gap = np.full((h, 4), 255, dtype=np.uint8)
        panels = []
        for data in outputs.values():
            panels += [np.frombuffer(data, dtype=np.uint8).reshape(h, w), gap]
        strip = np.concatenate(panels[:-1], axis=1)
        scale = 6
        img = Image.fromarray(strip).resize((strip.shape[1] * scale, h * scale), Image.NEAREST)
        path = out_dir / "image.png"
        img.save(path)
        (out_dir / "image.txt").write_text("panels, left to right: " + " | ".join(outputs) + "\n")
        written += [path.name, "image.txt"]
    elif modality == "audio":
        import soundfile

        rate = layout["sample_rate"]
        fig, axes = plt.subplots(len(outputs), 1, figsize=(9, 1.6 * len(outputs)), sharex=True, sharey=True)
        for ax, (name, data) in zip(np.atleast_1d(axes), outputs.items()):
            samples = np.frombuffer(data, dtype="<i2")
            path = out_dir / f"audio-{safe[name]}.wav"
            soundfile.write(str(path), samples, rate, subtype="PCM_16")
            written.append(path.name)
            t = np.arange(len(samples)) / rate * 1e3
            ax.plot(t, samples, lw=0.6)
            ax.axvline(t[len(samples) // 2], color="k", ls="--", lw=0.8)
            ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
        np.atleast_1d(axes)[-1].set_xlabel("ms (dashed: where the prompt ends)")
        fig.tight_layout()
        fig.savefig(out_dir / "audio.png", dpi=120)
        plt.close(fig)
        written.append("audio.png")
    return written
