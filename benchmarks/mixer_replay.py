"""Mixer variants on the same network predictions: record a run's exact logits once, replay any mixer.

The network's exact logits for a file do not depend on the mixer, and the network is most of the coding
time. So a file is coded once as ``lmpress compress`` codes it (front end, chosen model, segments), every
step's logits and bytes are kept, and each mixer named is replayed on them: its ideal code length, the sum
of -log2 of the coder's frequency of each coded byte, over the file's bytes (an archive adds the
container's few hundred bytes and the coder's flush per row). Mixer development, not a rate to quote: a
rate is quoted from an archive decoded and compared (``media_bench.py``, ``whole_file_bench.py``).

    python benchmarks/mixer_replay.py record speech.wav runs/speech.replay   # code it once, keep the logits
    python benchmarks/mixer_replay.py replay runs/*.replay --mixer cm/v1-audio cm/v1-audio2
    python benchmarks/mixer_replay.py record --audio misc_speech/whisper_jfk.flac --start 0 --seconds 1 jfk.replay

``--audio`` takes a recording from the corpus (``../shared/corpus/audio``) and writes it as a 16-bit WAV.
"""

from __future__ import annotations

import argparse
import io
import pickle
import time
from pathlib import Path

import numpy as np

import lmpress
from lmpress import formats
from lmpress.coding import entropy
from lmpress.coding.container import ArchiveReader
from lmpress.data.corpus import corpus_root
from lmpress.models import byte_predictor
from lmpress.models.exact import mixer
from lmpress.models.exact.byte_model import logit_table


def record(data: bytes, model: str) -> dict:
    """Code ``data`` as ``lmpress.compress`` does, keeping the mixer's calls (one block: up to 4 MB)."""
    calls: list = []

    class Recording(mixer.ContextMixer):
        def begin(self, batch: int) -> None:
            calls.append(("begin", batch))
            super().begin(batch)

        def mix(self, logits: np.ndarray) -> np.ndarray:
            calls.append(("mix", np.asarray(logits, dtype=np.int32).copy()))  # exact logits fit 32 bits
            return super().mix(logits)

        def update(self, symbols: np.ndarray) -> None:
            calls.append(("update", np.asarray(symbols, dtype=np.int64).copy()))
            super().update(symbols)

        def retain(self, rows: np.ndarray) -> None:
            calls.append(("retain", np.asarray(rows, dtype=np.int64).copy()))
            super().retain(rows)

    original = byte_predictor.mixer.ContextMixer
    byte_predictor.mixer.ContextMixer = Recording
    try:
        archive = lmpress.compress(data, model)
    finally:
        byte_predictor.mixer.ContextMixer = original
    if sum(1 for kind, _ in calls if kind == "begin") != 1:
        raise SystemExit("mixer_replay: the input was coded in several blocks (keep it under 4 MB)")
    header = ArchiveReader(io.BytesIO(archive)).header
    parsed = formats.parse(data) if header.layout is not None else None
    plane = header.arithmetic.get("plane")  # the colour mixers' plane distance, as replay takes it
    mixer_name = header.arithmetic["name"] + (f"@{plane}" if plane else "")
    return {"calls": calls, "bytes": len(data), "archive": len(archive), "mixer": mixer_name,
            "chunk_size": header.chunk_size, "content": len(parsed.content) if parsed else len(data)}


def replay(recorded: dict, name: str) -> tuple[float, float]:
    """(ideal rate over the file's bytes, seconds) of mixer ``name`` on a recorded run."""
    plane = int(name.partition("@")[2] or 0)
    variant = name.partition("@")[0]
    mixing = mixer.ContextMixer(entropy.TOTAL, logit_table(), mixer.VARIANTS[variant], name=variant, plane=plane)
    chunk, bits, step = recorded["chunk_size"], 0.0, 0
    t0 = time.perf_counter()
    for kind, arg in recorded["calls"]:
        if kind == "begin":
            mixing.begin(arg)
            segments = np.arange(arg)  # the content's segment each batch row codes
        elif kind == "mix":
            weights = mixing.mix(arg.astype(np.int64))
        elif kind == "update":  # a row past its segment's end (the last one is shorter) codes nothing
            coded = (step < chunk) & (segments * chunk + step < recorded["content"])
            frequencies = weights[np.arange(len(arg)), arg] + 1  # the coder adds 1 to every weight
            totals = weights.sum(axis=1) + 256
            bits -= np.log2(frequencies[coded] / totals[coded]).sum()
            mixing.update(arg)
            step += 1
        else:
            mixing.retain(arg)
            segments = segments[arg]
    return bits / 8 / recorded["bytes"], time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record", help="code a file once and keep the network's logits")
    r.add_argument("input", nargs="?", type=Path, help="the file (or --audio)")
    r.add_argument("output", type=Path)
    r.add_argument("--audio", help="a corpus recording, written as a 16-bit WAV (path under corpus/audio)")
    r.add_argument("--start", type=float, default=0.0, help="--audio: seconds from the start")
    r.add_argument("--seconds", type=float, default=2.0, help="--audio: seconds kept")
    r.add_argument("--model", default="auto")
    q = sub.add_parser("replay", help="replay mixers on recorded runs")
    q.add_argument("recordings", nargs="+", type=Path)
    q.add_argument("--mixer", nargs="+", required=True, help="mixer names (cm/v1, cm/v1-audio2, cm/v1-colour@N ...)")
    a = p.parse_args()
    if a.command == "record":
        if a.audio:
            import soundfile

            samples, rate = soundfile.read(corpus_root() / "audio" / a.audio, dtype="int16", always_2d=True)
            wav = io.BytesIO()
            soundfile.write(wav, samples[int(a.start * rate):int((a.start + a.seconds) * rate)], rate,
                            format="WAV", subtype="PCM_16")
            data = wav.getvalue()
            a.output, a.input = a.input or a.output, None
        else:
            data = a.input.read_bytes()
        recorded = record(data, a.model)
        a.output.write_bytes(pickle.dumps(recorded, protocol=5))
        print(f"{a.output}: {recorded['bytes']:,} bytes, archive {recorded['archive']:,} "
              f"({recorded['archive'] / recorded['bytes']:.4f}) with {recorded['mixer']}")
        return
    for path in a.recordings:
        recorded = pickle.loads(path.read_bytes())
        cells = []
        for name in a.mixer:
            rate, seconds = replay(recorded, name)
            cells.append(f"{name} {rate:.4f} ({seconds:.1f} s)")
        print(f"{path.name:24} " + "  ".join(cells))


if __name__ == "__main__":
    main()
