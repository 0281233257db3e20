"""``lmpress tune``: train a soft prompt for a frozen model.

The prompt's N vectors are the only parameters. Each step draws ``batch``
windows of ``chunk_size`` bytes from the training data and takes an Adam step
on their teacher-forced code length (bits/byte, exactly what the codec would
spend from BOS after the prompt). The learning rate is constant and relative
to the scale of the model's embeddings, so a 100-step prompt is the 100th
checkpoint of a 500-step run.

Two honest uses (DESIGN.md: a trained prompt is part of the code):

* trained on a training split of a domain and reused across files: the
  prompt file is shipped once, its cost amortised over the data it serves;
* trained on the very file to compress: ``lmpress compress --prompt P
  --embed-prompt PRIOR`` quantizes it, codes it with a hyper-prior and stores
  it in the archive, where its bits are part of the rate.

Everything needed to resume sits in ``<out>.ckpt``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lmpress.data.corpus import split_files
from lmpress.data.views import files_of
from lmpress.errors import LmpressError
from lmpress.models.prompt import SUFFIX, SoftPrompt, random_prompt, text_prompt
from lmpress.models.registry import load_predictor
from lmpress.progress import Progress

DEFAULT_TEXT_DATA = "wiki/enwiki_dumps"  # Wikipedia XML from the text training split


@dataclass
class TuneConfig:
    out: str  # the prompt file
    model: str = "default"
    tokens: int = 16
    steps: int = 100
    batch: int = 4  # windows per step
    chunk_size: int = 2048
    lr: float = 0.05  # Adam step, relative to the embeddings' scale
    init: str = "random"  # "random", or "text:SOME TEXT" (its token embeddings; sets the token count)
    data: list[str] = field(default_factory=list)  # files or folders; default: corpus Wikipedia training split
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 10
    command: str = ""


def training_windows(paths: list[str]) -> np.ndarray:
    """All training bytes as one array (files in order)."""
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise LmpressError(f"training data {p} does not exist")
        files += files_of(path, "text") if path.is_dir() else [path]
    if not paths:
        files = [f for f in split_files("text", "train") if DEFAULT_TEXT_DATA in str(f)]
    data = b"".join(f.read_bytes() for f in files)
    if not data:
        raise LmpressError("no training data for the prompt")
    return np.frombuffer(data, dtype=np.uint8)


def _sample(data: np.ndarray, rng: np.random.Generator, count: int, size: int) -> list[bytes]:
    if len(data) <= size:
        return [data.tobytes()] * count
    starts = rng.integers(0, len(data) - size + 1, size=count)
    return [data[s:s + size].tobytes() for s in starts]


def tune(cfg: TuneConfig) -> SoftPrompt:
    """Train (or resume training) the prompt; write ``cfg.out`` and return it."""
    torch.set_num_threads(cfg.threads)
    predictor = load_predictor(cfg.model)
    out, ckpt_path = Path(cfg.out), Path(cfg.out + ".ckpt")
    data = training_windows(cfg.data)
    if cfg.init.startswith("text:"):
        start = text_prompt(predictor, cfg.init[len("text:"):])
    else:
        start = random_prompt(predictor, cfg.tokens, cfg.seed)
    scale = random_prompt(predictor, 1).info["scale"]
    prompt = torch.nn.Parameter(torch.from_numpy(start.vectors.copy()))
    optimizer = torch.optim.Adam([prompt], lr=cfg.lr * scale)
    state = {"step": 0, "seconds": 0.0, "log": [], "commands": []}
    rng = np.random.default_rng(cfg.seed)
    if ckpt_path.exists():
        saved = torch.load(ckpt_path, weights_only=False)
        if saved["model_id"] != predictor.model_id or tuple(saved["prompt"].shape) != tuple(prompt.shape):
            raise LmpressError(f"{ckpt_path} belongs to another model or prompt size; remove it to start over")
        with torch.no_grad():
            prompt.copy_(saved["prompt"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
        rng.bit_generator.state = saved["rng"]
        print(f"resuming from step {state['step']}", file=sys.stderr)
    state["commands"].append(cfg.command)

    def checkpoint() -> None:
        tmp = ckpt_path.with_name(ckpt_path.name + ".tmp")
        torch.save({"model_id": predictor.model_id, "prompt": prompt.detach().clone(),
                    "optimizer": optimizer.state_dict(), "state": state, "rng": rng.bit_generator.state}, tmp)
        os.replace(tmp, ckpt_path)

    started = time.perf_counter() - state["seconds"]
    with Progress(total=cfg.steps, unit="step", desc="tune", initial=min(state["step"], cfg.steps)) as bar:
        while state["step"] < cfg.steps:
            chunks = _sample(data, rng, cfg.batch, cfg.chunk_size)
            bits = predictor.code_length(chunks, prompt).sum() / sum(len(c) for c in chunks)
            optimizer.zero_grad()
            bits.backward()
            optimizer.step()
            state["step"] += 1
            state["log"].append((state["step"], bits.item()))
            state["seconds"] = time.perf_counter() - started
            recent = np.mean([b for _, b in state["log"][-10:]])
            bar.update(1, status=f"{bits.item():.3f} bits/byte (last 10: {recent:.3f})")
            if state["step"] % cfg.checkpoint_every == 0 or state["step"] == cfg.steps:
                checkpoint()
    info = {"kind": "trained", "model": predictor.name, "steps": state["step"], "batch": cfg.batch,
            "chunk_size": cfg.chunk_size, "lr": cfg.lr, "init": cfg.init if cfg.init != "random" else
            f"random (seed {cfg.seed})", "data": cfg.data or [DEFAULT_TEXT_DATA], "training_bytes": int(len(data)),
            "final_bits_per_byte": float(np.mean([b for _, b in state["log"][-10:]])) if state["log"] else None,
            "seconds": round(state["seconds"], 1), "commands": state["commands"]}
    result = SoftPrompt(prompt.detach().numpy(), predictor.model_id, info)
    result.save(out)
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="lmpress tune", description="Train a soft prompt for a model.")
    p.add_argument("out", help=f"prompt file to write (e.g. wiki{SUFFIX}); resumes from OUT.ckpt")
    p.add_argument("-m", "--model", default="default", help="model name or file (byte models and LLMs)")
    p.add_argument("--tokens", type=int, default=TuneConfig.tokens, help="virtual tokens (vectors) in the prompt")
    p.add_argument("--steps", type=int, default=TuneConfig.steps,
                   help="Adam steps in total (a resumed run continues up to this count)")
    p.add_argument("--batch", type=int, default=TuneConfig.batch, help="windows per step")
    p.add_argument("--chunk-size", type=int, default=TuneConfig.chunk_size, help="bytes per training window")
    p.add_argument("--lr", type=float, default=TuneConfig.lr, help="Adam step relative to the embeddings' scale")
    p.add_argument("--init", default="random", help="'random' or 'text:SOME TEXT'")
    p.add_argument("--data", action="append", default=[], metavar="PATH",
                   help="training file or folder (repeatable); default: the corpus's Wikipedia training split")
    p.add_argument("--seed", type=int, default=0, help="random prompt and window sampling")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    a = p.parse_args(argv)
    cfg = TuneConfig(out=a.out, model=a.model, tokens=a.tokens, steps=a.steps, batch=a.batch,
                     chunk_size=a.chunk_size, lr=a.lr, init=a.init, data=a.data, seed=a.seed, threads=a.threads,
                     command="lmpress tune " + shlex.join(sys.argv[2:] if argv is None else argv))
    prompt = tune(cfg)
    print(f"{a.out}: {prompt.tokens} vectors x {prompt.vectors.shape[1]}, id {prompt.id[:12]}, "
          f"{prompt.info['final_bits_per_byte']:.4f} bits/byte on the last steps", file=sys.stderr)

