"""Dynamic evaluation of a byte model (training it on the file while coding it), in float: how much it gains.

A development experiment, not a codec: the float network is run teacher-forced over a file laid out as
lmpress's default mode codes it (``--rows`` segments side by side, each position seeing the network's
attention span before it), and after every ``--every`` positions of all rows, one Adam step on those
positions' code length updates the chosen weights. Prints the network's rate with and without it; with
``--logits OUT.npy`` it keeps the logits [rows, positions, 256], which ``--replay`` feeds through a context
mixer in place of the exact network's (``mixer_replay.py record`` of the same file first):

    python benchmarks/mixer_replay.py record last256k.xml runs/last256k.replay --model text-800k
    python benchmarks/dynamic_eval.py last256k.xml --params all --lr 3e-4 --logits runs/all.npy
    python benchmarks/dynamic_eval.py last256k.xml --params none --logits runs/none.npy
    python benchmarks/dynamic_eval.py --replay runs/last256k.replay runs/none.npy runs/all.npy
"""

from __future__ import annotations

import argparse
import math
import pickle
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lmpress.models.store import load_model

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "lmpress" / "models" / "weights"


def chosen_parameters(model: torch.nn.Module, which: str) -> list[torch.nn.Parameter]:
    if which == "none":
        return []
    if which == "all":
        return list(model.parameters())
    if which == "head":
        return [model.head.weight]
    if which == "head+mlp":  # the output layer and the last block's MLP
        return [model.head.weight, *model.blocks[-1].mlp.parameters()]
    raise SystemExit(f"--params: none, all, head or head+mlp, not {which}")


def run(data: bytes, model_name: str, which: str, lr: float, every: int, rows: int) -> tuple[float, np.ndarray]:
    model, _ = load_model(WEIGHTS / model_name / "model.pt")
    model.train(False)
    length = -(-len(data) // rows)
    padded = np.zeros(rows * length, dtype=np.int64)
    padded[:len(data)] = np.frombuffer(data, dtype=np.uint8)
    symbols = torch.from_numpy(padded.reshape(rows, length))
    counted = torch.from_numpy((np.arange(rows * length) < len(data)).reshape(rows, length))
    params = chosen_parameters(model, which)
    for p in model.parameters():
        p.requires_grad_(any(p is q for q in params))
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99)) if params else None
    span = model.cfg.attn_span
    logits_kept = np.zeros((rows, length, 256), dtype=np.float32)
    nats = 0.0
    for t in range(0, length, every):
        start = max(0, t - span + 1)
        targets = symbols[:, start:t + every]
        inputs = (torch.cat([torch.full((rows, 1), model.bos), targets[:, :-1]], 1) if start == 0
                  else symbols[:, start - 1:t + every - 1])
        with torch.set_grad_enabled(bool(params)):
            logits = model(inputs)[:, t - start:]
            losses = F.cross_entropy(logits.reshape(-1, 256), targets[:, t - start:].reshape(-1), reduction="none")
            losses = losses * counted[:, t:t + every].reshape(-1)
        nats += losses.sum().item()
        logits_kept[:, t:t + every] = logits.detach().numpy()
        if optimizer is not None:
            optimizer.zero_grad()
            (losses.sum() / losses.numel()).backward()
            optimizer.step()
    return nats / math.log(2) / 8 / len(data), logits_kept


def replay(recording: Path, logits_files: list[Path]) -> None:
    """Each logits file's rate through the recorded run's mixer (ideal code length, as mixer_replay)."""
    import mixer_replay

    recorded = pickle.loads(recording.read_bytes())
    name = recorded["mixer"].split("+", 1)[1]
    print(f"{recording.name}: exact network, {name}: {mixer_replay.replay(recorded, name)[0]:.4f}")
    rows = next(arg for kind, arg in recorded["calls"] if kind == "begin")
    for path in logits_files:
        logits, calls, step = np.load(path), [], 0
        if len(logits) != rows:
            raise SystemExit(f"{path}: {len(logits)} rows, the recording coded {rows} (run with --rows {rows})")
        for kind, arg in recorded["calls"]:
            if kind == "mix":  # logits at 8 bits (1/256 nat), as the exact network gives them
                arg = np.round(logits[:, step].astype(np.float64) * 256).astype(np.int32)
            elif kind == "update":
                step += 1
            calls.append((kind, arg))
        print(f"{path.name}: {name}: {mixer_replay.replay({**recorded, 'calls': calls}, name)[0]:.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path, nargs="?")
    p.add_argument("--model", default="text-800k")
    p.add_argument("--params", default="all", help="weights trained while coding: none, all, head, head+mlp")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--every", type=int, default=64, help="positions of all rows per update")
    p.add_argument("--rows", type=int, default=64,
                   help="segments side by side, as lmpress codes the file (64 from 128 KiB up; a recording's)")
    p.add_argument("--logits", type=Path, help="keep the logits here (.npy)")
    p.add_argument("--replay", nargs="+", type=Path, help="RECORDING LOGITS...: rates through the mixer")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    if a.replay:
        replay(a.replay[0], a.replay[1:])
        return
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    rate, logits = run(a.file.read_bytes(), a.model, a.params, a.lr, a.every, a.rows)
    print(f"{a.file.name}: {a.model}, training {a.params} (lr {a.lr}, every {a.every} positions): "
          f"network rate {rate:.4f} ({time.perf_counter() - t0:.0f} s)")
    if a.logits:
        np.save(a.logits, logits)


if __name__ == "__main__":
    main()
