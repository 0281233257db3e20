"""The training loop: one model, one loop, checkpoints and resume (nanoGPT's train.py in spirit).

Everything needed to resume sits in ``<out>/checkpoint.pt`` (weights, optimizer,
step, random-generator states, log); killing the process and running the same
command again continues where it stopped. The final model goes to
``<out>/model.pt`` with its manifest (data, split, steps, tokens, time, losses,
command) and a ``MODEL_CARD.md`` and ``loss.png`` beside it.

With ``vocab`` above 256 (text only; the tokenization study) the model predicts
byte-level BPE tokens: the tokenizer is learned from the training text first
(``<out>/tokenizer.json``, reused on resume), the text is tokenized as the codec
will tokenize it, and held-out figures stay in bits per *original byte*.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lmpress.data.corpus import SPLIT, corpus_root, split_files
from lmpress.data.views import files_of
from lmpress.errors import LmpressError
from lmpress.models.bpe import train_bpe, vocabulary
from lmpress.models.byte_predictor import teacher_forced_bits
from lmpress.models.store import load_model, model_id, save_model
from lmpress.models.transformer import BOS, PRESETS, ByteTransformer, TransformerConfig
from lmpress.models.vocab import TokenVocabulary
from lmpress.progress import Progress
from lmpress.train.data import MixtureSampler, ModalityStream, eval_chunks

LN2 = math.log(2)


@dataclass
class TrainConfig:
    out_dir: str
    size: str = "800k"
    weights: dict[str, float] = field(default_factory=lambda: {"text": 1.0, "image": 1.0, "audio": 1.0})
    seq_len: int = 1024
    batch_size: int = 32
    max_steps: int = 6000
    lr: float = 2e-3
    min_lr: float = 2e-4
    warmup: int = 200
    weight_decay: float = 0.01
    eval_every: int = 200
    eval_chunks: int = 48
    checkpoint_every: int = 50
    seed: int = 0
    threads: int = 2
    vocab: int = 256  # symbols: the 256 bytes, or a byte-level BPE vocabulary of this size (text only)
    command: str = ""
    export_only: bool = False  # write model.pt from the latest checkpoint without training further
    init: str = ""  # start from these weights (a shipped model's name or a model file), not at random
    colour_planes: bool = False  # images as the front end codes them (colour planes), not as luma patches
    # Optional data per modality (files or folders) replacing the corpus split: {"text": [paths]}.
    train_paths: dict[str, list[str]] = field(default_factory=dict)
    eval_paths: dict[str, list[str]] = field(default_factory=dict)


def data_split(cfg: TrainConfig, modality: str) -> tuple[list[Path], list[Path]]:
    """(train files, held-out files) of a modality: given paths, else the corpus split. Never overlapping."""
    def pick(given: list[str], side: str) -> list[Path]:
        return [f for p in given for f in files_of(Path(p), modality)] if given else split_files(modality, side)

    train_files = pick(cfg.train_paths.get(modality, []), "train")
    eval_files = pick(cfg.eval_paths.get(modality, []), "eval")
    overlap = {f.resolve() for f in train_files} & {f.resolve() for f in eval_files}
    if overlap:
        raise LmpressError(f"{len(overlap)} {modality} file(s) on both sides of the split, e.g. {min(overlap)}")
    if not train_files:
        raise LmpressError(f"no {modality} training files")
    return train_files, eval_files


def initial_weights(name: str, model_cfg: TransformerConfig) -> dict[str, torch.Tensor]:
    """The state dict of a shipped model (by name) or model file, refused unless its architecture is ``model_cfg``."""
    from lmpress.models.registry import SHIPPED, WEIGHTS_DIR, resolve_name

    canonical = resolve_name(name)
    path = WEIGHTS_DIR / SHIPPED[canonical] / "model.pt" if canonical in SHIPPED else Path(name)
    start, _ = load_model(path)
    if start.cfg != model_cfg:
        raise LmpressError(f"--init {name}: its architecture differs from --size and --vocab of this run")
    return start.state_dict()


def learning_rate(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def bits_per_symbol(model: ByteTransformer, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = model(inputs)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)) / LN2


@torch.no_grad()
def evaluate(model: ByteTransformer, held_out: dict[str, torch.Tensor],
             vocab: TokenVocabulary | None = None) -> dict[str, float]:
    """Teacher-forced bits per byte on fixed held-out 2048-byte chunks, per modality.

    ``vocab``: a BPE model's vocabulary; each chunk is tokenized as the codec would.
    """
    model.eval()
    result = {}
    for name, chunks in held_out.items():
        if vocab is not None:
            total = sum(teacher_forced_bits(model, vocab, row.to(torch.uint8).numpy().tobytes()).item()
                        for row in chunks)
        else:
            inputs = torch.cat([torch.full((len(chunks), 1), BOS), chunks[:, :-1]], dim=1)
            total = sum(bits_per_symbol(model, inputs[i:i + 8], chunks[i:i + 8]).item() * chunks[i:i + 8].numel()
                        for i in range(0, len(chunks), 8))
        result[name] = total / chunks.numel()
    model.train()
    return result


def bpe_tokenizer(path: Path, text: bytes, vocab_size: int) -> str:
    """The tokenizer JSON of a run: learned from ``text`` once, then read back (resume)."""
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(train_bpe(text, vocab_size).to_str())
        os.replace(tmp, path)
    return path.read_text()


def train(cfg: TrainConfig) -> Path:
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    modalities = [m for m, w in cfg.weights.items() if w > 0]
    if cfg.vocab != 256 and modalities != ["text"]:
        raise LmpressError("a BPE vocabulary is for text only: give the other modalities weight 0")

    torch.manual_seed(cfg.seed)
    model_cfg: TransformerConfig = replace(PRESETS[cfg.size], vocab=cfg.vocab)
    model = ByteTransformer(model_cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95),
                                  weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    state = {"step": 0, "tokens": 0, "seconds": 0.0, "log": [], "evals": []}
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        rng.bit_generator.state = ckpt["numpy_rng"]
        torch.set_rng_state(ckpt["torch_rng"])
        state = ckpt["state"]
        print(f"resuming from step {state['step']}", file=sys.stderr)
    elif cfg.export_only:
        raise LmpressError(f"nothing to export: no checkpoint in {out}")
    elif cfg.init:
        model.load_state_dict(initial_weights(cfg.init, model_cfg))
        print(f"starting from the weights of {cfg.init}", file=sys.stderr)
    state.setdefault("commands", []).append(cfg.command)  # every invocation, for the model card

    splits = {m: data_split(cfg, m) for m in ("text", "image", "audio")}
    streams = {m: ModalityStream(m, splits[m][0], cfg.colour_planes) for m in modalities}
    tokenizer, vocab = None, None
    if cfg.vocab != 256:
        tokenizer = bpe_tokenizer(out / "tokenizer.json", streams["text"].data.tobytes(), cfg.vocab)
        vocab = vocabulary(tokenizer)
        streams["text"].tokenize(vocab)
    bytes_per_token = 1.0 if vocab is None else streams["text"].raw_bytes / len(streams["text"].data)
    unit = "bits/byte" if vocab is None else "bits/token"
    sampler = MixtureSampler(streams, {m: cfg.weights[m] for m in modalities}, cfg.seq_len, bos=model.bos)
    evaluated = ("text", "image", "audio") if vocab is None else ("text",)
    held_out = {m: eval_chunks(m, splits[m][1], cfg.eval_chunks) for m in evaluated if splits[m][1]}

    def checkpoint() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                    "state": state, "train_config": asdict(cfg)}, tmp)
        os.replace(tmp, ckpt_path)

    model.train()
    tokens_per_step = cfg.batch_size * cfg.seq_len
    bar = Progress(total=cfg.max_steps * tokens_per_step, unit="tok", desc="train",
                   initial=state["step"] * tokens_per_step)
    while state["step"] < cfg.max_steps and not cfg.export_only:
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, state["step"])
        inputs, targets = sampler.batch(rng, cfg.batch_size)
        loss = bits_per_symbol(model, inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        state["step"] += 1
        state["tokens"] += tokens_per_step
        state["seconds"] += time.perf_counter() - t0
        state["log"].append((state["step"], loss.item()))
        recent = [x for _, x in state["log"][-20:]]
        bar.update(tokens_per_step, status=f"loss {sum(recent) / len(recent):.3f} {unit} (last 20 steps)")
        if state["step"] % cfg.eval_every == 0 or state["step"] == cfg.max_steps:
            scores = evaluate(model, held_out, vocab)
            state["evals"].append({"step": state["step"], **scores})
            bar.write(f"step {state['step']}: held-out bits/byte "
                      + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
        if state["step"] % cfg.checkpoint_every == 0 or state["step"] == cfg.max_steps:
            checkpoint()
    bar.close()
    if not state["evals"] or state["evals"][-1]["step"] != state["step"]:
        state["evals"].append({"step": state["step"], **evaluate(model, held_out, vocab)})
    # Model FLOP utilization: 6 x parameters x tokens/s over this machine's float32 matmul rate,
    # measured now, in this run, with the training thread count.
    from lmpress.bench.measure import matmul_flops

    peak = matmul_flops(cfg.threads)
    tokens_per_second = state["tokens"] / max(state["seconds"], 1e-9)
    mfu = 6 * model.num_parameters() * tokens_per_second / peak

    manifest = {
        "name": out.name,
        "size": cfg.size,
        "parameters": model.num_parameters(),
        "non_embedding_parameters": model.num_parameters(non_embedding=True),
        "modalities": modalities,
        "mixture_weights": {m: cfg.weights[m] for m in modalities},
        "split": {m: {"train": cfg.train_paths.get(m) or SPLIT[m]["train"],
                      "eval": cfg.eval_paths.get(m) or SPLIT[m]["eval"]} for m in ("text", "image", "audio")},
        "eval_files": {m: [_corpus_relative(f) for f in splits[m][1]] for m in ("text", "image", "audio")},
        "corpus_root": "../shared/corpus (LMPRESS_CORPUS); file paths below are relative to it",
        "train_files": {m: [_corpus_relative(f) for f in streams[m].files] for m in modalities},
        "train_bytes": {m: streams[m].raw_bytes for m in modalities},
        "steps": state["step"],
        "tokens": state["tokens"],
        "train_seconds": round(state["seconds"], 1),
        "tokens_per_second": round(tokens_per_second, 1),
        "matmul_gflops": round(peak / 1e9, 1),
        "model_flop_utilization": round(mfu, 4),
        # A BPE model's loss is per token: divided by the training text's bytes per token.
        "final_train_bits_per_byte": float(np.mean([x for _, x in state["log"][-100:]])) / bytes_per_token,
        "held_out_bits_per_byte": state["evals"][-1] if state["evals"] else {},
        "train_config": asdict(cfg),
        "command": cfg.command,
        "commands": state["commands"],
    }
    if vocab is not None:
        manifest.update(vocab=cfg.vocab, bytes_per_token=bytes_per_token, tokenizer=tokenizer)
    model_path = out / "model.pt"
    save_model(model_path, model, manifest)
    manifest["model_id"] = model_id(model, tokenizer)
    readable = {k: v for k, v in manifest.items() if k != "tokenizer"}  # the tokenizer is in tokenizer.json
    (out / "manifest.json").write_text(json.dumps(readable, indent=2) + "\n")
    write_model_card(out / "MODEL_CARD.md", manifest)
    plot_losses(out / "loss.png", state)
    return model_path


def _corpus_relative(path: str | Path) -> str:
    """Paths inside the corpus are recorded relative to its root (the manifest stays valid on other machines)."""
    try:
        return str(Path(path).resolve().relative_to(corpus_root().resolve()))
    except (ValueError, LmpressError):
        return str(path)


def write_model_card(path: Path, m: dict) -> None:
    held = m["held_out_bits_per_byte"]
    lines = [
        f"# {m['name']}: byte transformer ({m['size']}, {m['parameters']:,} parameters)",
        "",
        f"* model id: `{m['model_id']}`",
        f"* architecture: {json.dumps(replace(PRESETS[m['size']], vocab=m.get('vocab', 256)).to_dict())}",
        *([f"* byte-level BPE vocabulary of {m['vocab']:,} tokens learned from the training text "
           f"(tokenizer.json; {m['bytes_per_token']:.2f} bytes per token on it)"] if "vocab" in m else []),
        f"* trained on: {', '.join(m['modalities'])} (mixture weights {m['mixture_weights']})",
        f"* training bytes per modality: {m['train_bytes']}",
        *(["* images seen as the image front end codes them: a colour image's green, red-green and blue-green "
           "planes (grey images: their one plane), as 32x64 patches"]
          if m["train_config"].get("colour_planes") else []),
        f"* split (paths under the corpus root; held-out files never trained on): `{json.dumps(m['split'])}`",
        f"* steps: {m['steps']}, tokens: {m['tokens']:,}, wall time: {m['train_seconds'] / 60:.1f} min "
        f"({m['tokens_per_second']:,.0f} tokens/s; model FLOP utilization {100 * m['model_flop_utilization']:.1f}% "
        f"of {m['matmul_gflops']} GFLOP/s float32 matmul measured in the same run, "
        f"{m['train_config']['threads']} threads)",
        *([f"* started from the weights of `{m['train_config']['init']}` (steps, tokens and time above are this "
           "run's, in addition to that model's own training)"] if m["train_config"].get("init") else []),
        f"* final training loss: {m['final_train_bits_per_byte']:.3f} bits/byte (mean of the last 100 steps)",
        "* held-out bits/byte (teacher-forced, 2048-byte chunks): "
        + ", ".join(f"{k} {v:.3f}" for k, v in held.items() if k != "step"),
        "* commands (every invocation of this run, in order; a resumed run continues from its checkpoint):",
        *[f"  * `{c}`" for c in m["commands"]],
        "",
        "The full list of training files is in `manifest.json`.",
    ]
    path.write_text("\n".join(lines) + "\n")


def plot_losses(path: Path, state: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses = zip(*state["log"]) if state["log"] else ((), ())
    fig, ax = plt.subplots(figsize=(7, 4))
    window = 50
    if len(losses) >= window:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, label="train (50-step mean)", color="gray")
    for name in ("text", "image", "audio"):
        pts = [(e["step"], e[name]) for e in state["evals"] if name in e]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=f"held-out {name}")
    ax.set_xlabel("step")
    ax.set_ylabel("bits per byte")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _paths_by_modality(parser, specs: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for spec in specs:
        modality, sep, path = spec.partition("=")
        if not sep or modality not in ("text", "image", "audio"):
            parser.error(f"expected MODALITY=PATH with MODALITY text, image or audio, got {spec!r}")
        out.setdefault(modality, []).append(path)
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="lmpress train")
    p.add_argument("out_dir")
    p.add_argument("--size", default="800k", choices=sorted(PRESETS))
    p.add_argument("--data", action="append", default=[], metavar="MODALITY=PATH",
                   help="training files or folder for a modality, instead of the corpus split (repeatable)")
    p.add_argument("--eval-data", action="append", default=[], metavar="MODALITY=PATH",
                   help="held-out files or folder for a modality (repeatable)")
    p.add_argument("--text", type=float, default=1.0, help="mixture weight of text")
    p.add_argument("--image", type=float, default=1.0, help="mixture weight of image")
    p.add_argument("--audio", type=float, default=1.0, help="mixture weight of audio")
    p.add_argument("--colour-planes", action="store_true",
                   help="train on images as the image front end codes them: a colour image's green, red-green and "
                        "blue-green planes (grey images: their one plane) instead of luma; held-out chunks stay luma")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-every", type=int, default=200, help="steps between held-out evaluations")
    p.add_argument("--eval-chunks", type=int, default=48, help="held-out 2048-byte chunks per modality")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab", type=int, default=256,
                   help="symbols: 256 = bytes; more = a byte-level BPE vocabulary learned from the training text "
                        "(text only; --seq-len then counts tokens)")
    p.add_argument("--export", action="store_true", help="only write model.pt from the latest checkpoint")
    p.add_argument("--init", default="", metavar="MODEL",
                   help="start from these weights (a shipped model's name or a model file) instead of random ones; "
                        "the architecture must match --size")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run the training as a Ray task (num_cpus = --threads) on a local Ray cluster or the one "
                        "at ADDRESS; OUT_DIR must be storage that node writes to. A task whose worker dies is "
                        "re-run and resumes from the last checkpoint")
    a = p.parse_args(argv)
    cfg = TrainConfig(out_dir=a.out_dir, size=a.size,
                      weights={"text": a.text, "image": a.image, "audio": a.audio},
                      max_steps=a.steps, batch_size=a.batch_size, seq_len=a.seq_len, lr=a.lr,
                      eval_every=a.eval_every, eval_chunks=a.eval_chunks, warmup=min(200, max(1, a.steps // 10)),
                      threads=a.threads, seed=a.seed, vocab=a.vocab, export_only=a.export, init=a.init,
                      colour_planes=a.colour_planes,
                      train_paths=_paths_by_modality(p, a.data), eval_paths=_paths_by_modality(p, a.eval_data),
                      command="lmpress train " + shlex.join(argv if argv is not None else sys.argv[1:]))
    path = train_on_ray(cfg, a.ray) if a.ray is not None else train(cfg)
    print(f"wrote {path}")


def train_on_ray(cfg: TrainConfig, address: str) -> Path:
    """The same training run as one Ray task: the same threads and data order, so the same model."""
    import ray

    from lmpress.parallel import TASK_RETRIES, ray_init

    ray_init(address, cfg.threads, log_to_driver=True)  # the task's progress bar shows here
    task = ray.remote(num_cpus=cfg.threads, max_retries=TASK_RETRIES)(train)
    return ray.get(task.remote(cfg))


if __name__ == "__main__":
    main()
