"""Steering a compressor (the LLM-compressor study's Tables 3 and 4), every rate decoded and checked.

    python benchmarks/steering_tables.py --model default --bytes 65536
    python benchmarks/steering_tables.py --model smollm2-135m --bytes 16384 --tune-window 512

Data: the first ``--bytes`` of held-out Wikipedia XML (enwik8 head), coded in
2048-byte chunks. Prompts have ``--tokens`` vectors.

Table 3 (steering): no prefix; a fixed text prefix; a random (static) soft
prompt; a soft prompt trained for each of ``--steps`` on the Wikipedia training
split (setting a: reused across files; the archive names it, and its float32
size is shown as the cost, with the break-even data size); the same trained on
the very data compressed (setting b: the prompt is quantized, coded with the
Lloyd-Max hyper-prior and stored in the archive, so the rate includes it).

Table 4 (hyper-priors): the setting-b prompt of the last step count coded with
each prior at each of ``--levels``: bits used (the coded prompt, side
information included), bits and entropy per coordinate, total entropy, MSE,
and the archive with the dequantized prompt inside.

Training runs resume from their checkpoints in ``--work`` (a 100-step prompt
is the 100th step of the 500-step run: constant learning rate).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import time
from pathlib import Path

from lmpress import compress, decompress
from lmpress.bench.measure import machine_line
from lmpress.coding.container import ArchiveReader
from lmpress.coding.hyperprior import PRIORS, encode_vectors
from lmpress.data.corpus import corpus_root
from lmpress.models.prompt import SoftPrompt, random_prompt, text_prompt
from lmpress.models.registry import load_predictor
from lmpress.train.tune import TuneConfig, tune

TEST_FILE = "wiki/enwik8_head/enwik8_small_wicked_trimmed"
# A fixed prefix in the data's own format: the opening of a MediaWiki XML page.
PREFIX_TEXT = '  <page>\n    <title>Wikipedia</title>\n    <revision>\n      <text xml:space="preserve">'
EMBED_PRIOR = "lloyd-max"


def coded_row(label: str, data: bytes, a, prompt: SoftPrompt | None = None, embed: str | None = None,
              levels: int = 16) -> dict:
    start = time.perf_counter()
    archive = compress(data, a.model, block_chunks=a.block_chunks, workers=a.workers, prompt=prompt,
                       embed_prompt=embed, prompt_levels=levels)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = decompress(archive, workers=a.workers, prompt=None if embed else prompt)
    decode_s = time.perf_counter() - start
    if decoded != data:
        raise SystemExit(f"{label}: decoded data differs from the input")
    header_bytes = ArchiveReader(io.BytesIO(archive)).offset  # settings, model id, prompt id or code
    row = {"setting": label, "archive_bytes": len(archive), "header_bytes": header_bytes,
           "rate": len(archive) / len(data),
           "encode_s": round(encode_s, 1), "decode_s": round(decode_s, 1)}
    print(f"  {label}: {len(archive):,} bytes, rate {row['rate']:.4f}", flush=True)
    return row


def trained_prompt(a, name: str, steps: int, data: list[str]) -> SoftPrompt:
    """The prompt after ``steps`` steps of run ``name`` (trained now, resumed, or kept from before)."""
    snapshot = Path(a.work) / f"{name}-{steps}.lmprompt"
    if snapshot.exists():
        return SoftPrompt.load(snapshot)
    out = Path(a.work) / f"{name}.lmprompt"
    cfg = TuneConfig(out=str(out), model=a.model, tokens=a.tokens, steps=steps, batch=a.tune_batch,
                     chunk_size=a.tune_window, data=data, seed=a.seed, threads=a.threads,
                     command=f"benchmarks/steering_tables.py ({name}, {steps} steps)")
    prompt = tune(cfg)
    shutil.copy(out, snapshot)
    return prompt


def run(a) -> dict:
    Path(a.work).mkdir(parents=True, exist_ok=True)
    data = (corpus_root() / TEST_FILE).read_bytes()[: a.bytes]
    test_path = Path(a.work) / "test-data.xml"  # setting b trains on exactly these bytes
    test_path.write_bytes(data)
    predictor = load_predictor(a.model)
    coordinates = a.tokens * predictor.embedding_dim
    table3 = [coded_row("no prefix", data, a)]
    table3[-1]["prompt_bytes"] = 0
    fixed = text_prompt(predictor, PREFIX_TEXT)
    table3.append(coded_row(f"fixed text ({fixed.tokens} tokens)", data, a, fixed))
    table3[-1]["prompt_bytes"] = len(PREFIX_TEXT.encode())  # if it had to be sent at all
    table3.append(coded_row(f"random soft prompt (seed {a.seed})", data, a, random_prompt(predictor, a.tokens, a.seed)))
    table3[-1]["prompt_bytes"] = 4  # the seed
    tune_seconds = {}
    for steps in a.steps:  # setting a: trained on the training split, named by the archive
        prompt = trained_prompt(a, "train-split", steps, [])
        tune_seconds[f"train-split {steps}"] = prompt.info["seconds"]
        row = coded_row(f"trained on training split, {steps} steps", data, a, prompt)
        row["prompt_bytes"] = prompt.stored_bytes
        row["prompt_coded_bytes"] = len(encode_vectors(prompt.vectors, EMBED_PRIOR, a.levels[0]).code)
        row["reusable"] = True
        table3.append(row)
    file_prompt = None
    for steps in a.steps:  # setting b: trained on this very data, stored in the archive
        file_prompt = trained_prompt(a, "this-file", steps, [str(test_path)])
        tune_seconds[f"this-file {steps}"] = file_prompt.info["seconds"]
        row = coded_row(f"trained on this data, {steps} steps, in archive ({EMBED_PRIOR} {a.levels[0]})", data, a,
                        file_prompt, EMBED_PRIOR, a.levels[0])
        row["prompt_bytes"] = len(encode_vectors(file_prompt.vectors, EMBED_PRIOR, a.levels[0]).code)
        row["prompt_included"] = True
        table3.append(row)
    for row in table3:
        included = row.get("prompt_included", False)
        total = row["archive_bytes"] + (0 if included else row["prompt_bytes"])
        row["rate_with_prompt"] = total / len(data)
    table4 = []
    assert file_prompt is not None
    for prior in PRIORS:
        for levels in a.levels:
            coded = encode_vectors(file_prompt.vectors, prior, levels)
            row = coded_row(f"{prior} {levels}", data, a, file_prompt, prior, levels)
            row.update(prior=prior, levels=levels, bits=coded.bits, bits_per_coordinate=coded.bits_per_coordinate,
                       entropy_per_coordinate=coded.entropy_per_coordinate,
                       total_entropy_bits=coded.entropy_per_coordinate * coordinates, mse=coded.mse)
            table4.append(row)
    info = predictor.describe()
    return {"model": a.model, "parameters": info["parameters"], "data": f"{TEST_FILE}, first {len(data)} bytes",
            "bytes": len(data), "tokens": a.tokens, "coordinates": coordinates, "tune_steps": a.steps,
            "tune_window": a.tune_window, "tune_batch": a.tune_batch, "tune_seconds": tune_seconds,
            "prefix_text": PREFIX_TEXT, "machine": machine_line(), "table3": table3, "table4": table4}


def break_even(row: dict, base: dict, data_bytes: int) -> tuple[float | None, float | None]:
    """Data size at which a reusable prompt pays for itself: its one-off cost (float32 file, or coded
    with the hyper-prior) plus the archive's longer header, over the payload bytes it saves per byte."""
    saved = ((base["archive_bytes"] - base["header_bytes"]) - (row["archive_bytes"] - row["header_bytes"])) / data_bytes
    if saved <= 0:
        return None, None
    extra_header = row["header_bytes"] - base["header_bytes"]
    return ((row["prompt_bytes"] + extra_header) / saved, (row["prompt_coded_bytes"] + extra_header) / saved)


def markdown(r: dict) -> str:
    lines = [f"Model {r['model']} ({r['parameters'] / 1e6:.2f}M parameters), {r['data']}; prompts of "
             f"{r['tokens']} vectors ({r['coordinates']} coordinates); every archive decoded and compared.", "",
             "Table 3: steering (rate = archive / data; with prompt = archive + prompt bytes not already in it)", "",
             "| setting | archive bytes (header) | rate | prompt bytes | rate with prompt | "
             "break-even (float32 / coded) |", "|---|---:|---:|---:|---:|---:|"]
    for row in r["table3"]:
        even = "-"
        if row.get("reusable"):
            fmt = lambda v: f"{v / 1e6:.2f} MB" if v else "never"  # noqa: E731
            even = " / ".join(fmt(v) for v in break_even(row, r["table3"][0], r["bytes"]))
        prompt = f"{row['prompt_bytes']:,}" + (" (in archive)" if row.get("prompt_included") else "")
        header = f" ({row['header_bytes']})" if "header_bytes" in row else ""
        lines.append(f"| {row['setting']} | {row['archive_bytes']:,}{header} | {row['rate']:.4f} | {prompt} | "
                     f"{row['rate_with_prompt']:.4f} | {even} |")
    lines += ["", "Table 4: hyper-priors for the prompt trained on this data (stored in the archive)", "",
              "| prior | levels | bits used | bits/coord | entropy/coord | total entropy (bits) | MSE | "
              "archive bytes (prompt inside) | rate |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["table4"]:
        lines.append(f"| {row['prior']} | {row['levels']} | {row['bits']:,} | {row['bits_per_coordinate']:.3f} | "
                     f"{row['entropy_per_coordinate']:.3f} | {row['total_entropy_bits']:,.0f} | {row['mse']:.3g} | "
                     f"{row['archive_bytes']:,} | {row['rate']:.4f} |")
    lines += ["", "Break-even: the data size at which the prompt's one-off cost (float32 file / coded with the "
              f"{EMBED_PRIOR} hyper-prior) plus its longer archive header equals the payload it saves.",
              "", f"Soft-prompt training (s): {json.dumps(r['tune_seconds'])}; windows of {r['tune_window']} bytes, "
              f"{r['tune_batch']} per step.", f"Machine: {r['machine']}"]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default")
    p.add_argument("--bytes", type=int, default=65536)
    p.add_argument("--tokens", type=int, default=8)
    p.add_argument("--steps", type=int, nargs="+", default=[100, 500])
    p.add_argument("--levels", type=int, nargs="+", default=[16, 64], help="hyper-prior levels (first: Table 3)")
    p.add_argument("--tune-window", type=int, default=2048, help="bytes per training window")
    p.add_argument("--tune-batch", type=int, default=4, help="windows per training step")
    p.add_argument("--block-chunks", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch threads while training prompts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", help="folder for prompts and checkpoints (default runs/steering/MODEL)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--render", metavar="JSON", help="only print the tables of an earlier run's JSON")
    a = p.parse_args()
    if a.render:
        print(markdown(json.loads(Path(a.render).read_text())))
        return
    a.work = a.work or f"runs/steering/{a.model}"
    result = run(a)
    text = markdown(result)
    print(text)
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))
        Path(a.json).with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
