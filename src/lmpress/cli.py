"""The ``lmpress`` command: gzip-style compress / decompress, plus test, info, models, demo, train.

Exit codes: 0 success, 1 an expected error (one line on stderr), 2 usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from lmpress.codec import (
    DEFAULT_BLOCK_CHUNKS,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_PROMPT_LEVELS,
    SEGMENT_MAX,
    CodingStats,
    check_chunking,
    compress_stream,
    decompress_stream,
    segment_size,
)
from lmpress.coding.container import SUFFIX, ArchiveReader, n_chunks
from lmpress.coding.hyperprior import PRIORS
from lmpress.errors import LmpressError
from lmpress.formats import describe as describe_layout
from lmpress.models.prompt import SoftPrompt
from lmpress.models.registry import AUTO
from lmpress.progress import Progress

SUBCOMMANDS = ("compress", "decompress", "test", "info", "models", "demo", "train", "tune", "bench", "generate",
               "in-context", "model-size", "tokenization", "export-exact")
# Subcommands with their own parser (a module with main(argv)).
DELEGATED = {"train": "lmpress.train.trainer", "tune": "lmpress.train.tune"}


class UsageError(Exception):
    pass


# --------------------------------------------------------------------------------- outputs


@contextlib.contextmanager
def atomic_output(path: Path, force: bool, mode_from: Path | None = None) -> Iterator[BinaryIO]:
    """A temporary file beside ``path``, renamed over it only when the block succeeds.

    The result gets the permissions of ``mode_from`` (as gzip keeps them), else the umask's.
    """
    if path.exists() and not force:
        raise LmpressError(f"{path} already exists; use -f to overwrite")
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        if mode_from is not None:
            os.chmod(tmp, mode_from.stat().st_mode & 0o777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _workers(requested: int, size: int | None, block_bytes: int, ray: str | None = None) -> int:
    """0 = automatic: every core (Ray: every cluster CPU). Worker processes never outnumber the blocks; a
    single block is coded here, its steps on the cores (lmpress.parallel)."""
    if ray is not None and not requested:
        return 0  # lmpress.parallel asks the cluster
    n = requested or (os.cpu_count() or 1)
    blocks = max(1, -(-size // block_bytes)) if size is not None else n
    return max(1, n if blocks == 1 else min(n, blocks))


def _progress(args, total: int | None, desc: str) -> tuple[Progress | None, object]:
    enabled = not args.quiet and (args.progress or sys.stderr.isatty())
    if not enabled:
        return None, None
    bar = Progress(total=total or 0, desc=desc, unit="B", enabled=True)
    return bar, bar.update


def _summary(args, name: str, stats: CodingStats, seconds: float, decoding: bool) -> None:
    if args.quiet:
        return
    raw, packed = stats.raw_bytes, stats.archive_bytes
    verb = "decompressed" if decoding else "compressed"
    rate = f"rate {packed / raw:.4f} ({8 * packed / raw:.3f} bits/byte), " if raw else ""
    speed = raw / 1000 / seconds if seconds > 0 else 0.0
    print(f"{name}: {verb} {raw:,} bytes <-> {packed:,} bytes archive, {rate}{speed:.1f} KB/s", file=sys.stderr)


# --------------------------------------------------------------------------------- actions


def _output_name(src: Path, decompress: bool) -> Path:
    if not decompress:
        return src.with_name(src.name + SUFFIX)
    if src.suffix != SUFFIX:
        raise LmpressError(f"{src}: unknown suffix (expected {SUFFIX}); use -o or -c")
    return src.with_name(src.name[: -len(SUFFIX)])


def _code(args, src: BinaryIO, dst: BinaryIO, size: int | None, decompress: bool) -> CodingStats:
    check_chunking(args.chunk_size, args.block_chunks)
    chunk_size = segment_size(size, args.block_chunks) if args.chunk_size is None else args.chunk_size
    block_bytes = chunk_size * args.block_chunks
    workers = _workers(args.workers, None if decompress else size, block_bytes, args.ray)
    bar, callback = _progress(args, size, "decompress" if decompress else "compress")
    try:
        prompt = SoftPrompt.load(args.prompt) if args.prompt else None
        if decompress:
            return decompress_stream(src, dst, args.model, workers=workers, ray=args.ray, progress=callback,
                                     prompt=prompt)
        plan = (lambda what, total: bar.retitle(f"compress ({what})", total)) if bar is not None else None
        return compress_stream(src, dst, args.model or AUTO, chunk_size=args.chunk_size, length=size,
                               block_chunks=args.block_chunks, window=args.window,
                               mix=False if args.no_mix else None, workers=workers, ray=args.ray,
                               progress=callback, prompt=prompt, embed_prompt=args.embed_prompt,
                               prompt_levels=args.prompt_levels, front_ends=not args.as_bytes, plan=plan)
    finally:
        if bar is not None:
            bar.close()


def run_codec(args, decompress: bool) -> int:
    files = args.files or ["-"]
    if args.output and len(files) > 1:
        raise UsageError("-o takes one input file")
    for name in files:
        start = time.perf_counter()
        if name == "-":
            if not decompress and sys.stdout.isatty() and not args.force and not args.output:
                raise LmpressError("compressed data not written to a terminal; use -f to force")
            src, size, to_stdout = sys.stdin.buffer, None, not args.output
        else:
            path = Path(name)
            if not path.exists():
                raise LmpressError(f"{name}: no such file")
            if path.is_dir():
                raise LmpressError(f"{name}: is a directory")
            src, size, to_stdout = open(path, "rb"), path.stat().st_size, args.stdout
        with contextlib.ExitStack() as stack:
            if src is not sys.stdin.buffer:
                stack.enter_context(src)
            if to_stdout:
                stats = _code(args, src, sys.stdout.buffer, size, decompress)
                sys.stdout.buffer.flush()
            else:
                out = Path(args.output) if args.output else _output_name(Path(name), decompress)
                with atomic_output(out, args.force, mode_from=Path(name)) as dst:
                    stats = _code(args, src, dst, size, decompress)
                if args.rm and name != "-":
                    Path(name).unlink()
        _summary(args, name, stats, time.perf_counter() - start, decompress)
    return 0


def run_test(args) -> int:
    for name in args.files:
        start = time.perf_counter()
        with _open_input(name) as src:
            stats = decompress_stream(src, _NullSink(), args.model, workers=_workers(args.workers, None, 1, args.ray),
                                      ray=args.ray, prompt=SoftPrompt.load(args.prompt) if args.prompt else None)
        if not args.quiet:
            print(f"{name}: OK ({stats.raw_bytes:,} bytes, {time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0


class _NullSink:
    def write(self, b: bytes) -> int:
        return len(b)


def _open_input(name: str) -> BinaryIO:
    if name == "-":
        return contextlib.nullcontext(sys.stdin.buffer)
    try:
        return open(name, "rb")
    except FileNotFoundError:
        raise LmpressError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise LmpressError(f"{name}: is a directory") from None


def run_info(args) -> int:
    records = []
    for name in args.files:
        with _open_input(name) as src:
            reader = ArchiveReader(src)
            h = reader.header
            blocks = [{"raw_length": f.raw_length, "chunks": n_chunks(f.raw_length, h.chunk_size),
                       "compressed_length": f.payload_length, "method": "stored" if f.stored else "coded",
                       "raw_crc32": f"{f.raw_crc:08x}", "payload_crc32": f"{f.payload_crc:08x}"}
                      for _, f, _ in reader.blocks()]
            t = reader.trailer
            for block, offset in zip(blocks, t.block_offsets):
                block["offset"] = offset
            records.append({
                "file": name, "archive_bytes": reader.offset,
                "model": {"name": h.model_name, "id": h.model_id, **h.model_info},
                "format_version": h.version, "front_end": h.layout and {**h.layout, "other_bytes": len(h.side)},
                "arithmetic": {**h.arithmetic, "portable": "id" in h.arithmetic},
                "chunk_size": h.chunk_size, "block_chunks": h.block_chunks, "coder": h.coder, "prompt": h.prompt,
                "original_length": t.original_length, "data_crc32": f"{t.data_crc:08x}",
                "rate": reader.offset / t.original_length if t.original_length else None,
                "blocks": blocks,
            })
    if args.json:
        print(json.dumps(records if len(records) > 1 else records[0], indent=2))
        return 0
    for r in records:
        m = r["model"]
        print(f"{r['file']}:")
        print(f"  model        {m['name']}  id {m['id']}")
        vocabulary = f"vocabulary {m['vocabulary']:,} ({m.get('tokenizer')}), " if "vocabulary" in m else ""
        span = (f"attention span {m.get('attention_span')}" if m.get("kind") == "byte-transformer"
                else f"window {m.get('window') or 'chunk'}")
        context = vocabulary + span
        print(f"               {m.get('kind', '?')}, {m.get('parameters', 0):,} parameters, "
              f"{m.get('layers')} layers, d_model {m.get('d_model')}, heads {m.get('heads')}/{m.get('kv_heads')} "
              f"(query/kv), {context}")
        if (layout := r["front_end"]) is not None:
            print(f"  front end    {describe_layout(layout)}: samples coded in the model's layout, "
                  f"{layout['other_bytes']:,} other bytes kept aside; original {layout['file_length']:,} bytes, "
                  f"crc32 {layout['file_crc']}")
        print(f"  chunking     {r['chunk_size']} bytes per chunk (context), {r['block_chunks']} chunks per block")
        print(f"  coder        {r['coder']}")
        a = r["arithmetic"]
        if a["portable"]:
            print(f"  arithmetic   {a['name']} (integer-exact: decodes on any CPU), id {a['id']}")
        else:
            print(f"  arithmetic   {a['name']} (float kernels: decodes only on the kind of CPU and torch build "
                  "that made it)")
        if m.get("mixer"):
            print(f"  mixing       {m['mixer']}: the network mixed with context and match models")
        print(f"  format       version {r['format_version']}")
        if (prompt := r["prompt"]) is not None:
            where = "named only (decode with --prompt)"
            if prompt.get("code_bytes"):
                where = (f"in the archive: {prompt['prior']} hyper-prior, {prompt['levels']} levels, "
                         f"{prompt['code_bytes']:,} bytes")
            print(f"  prompt       id {prompt['id']}, {prompt['tokens']} vectors, {where}")
        rate = f"{r['rate']:.4f}" if r["rate"] is not None else "-"
        print(f"  lengths      original {r['original_length']:,} bytes, archive {r['archive_bytes']:,} bytes, "
              f"rate {rate}")
        print(f"  checksum     data crc32 {r['data_crc32']}")
        stored = sum(b["method"] == "stored" for b in r["blocks"])
        print(f"  blocks       {len(r['blocks'])} ({stored} stored raw: coding would not make them smaller)")
        for i, b in enumerate(r["blocks"]):
            print(f"    #{i:<4} offset {b['offset']:>10}  chunks {b['chunks']:>4}  raw {b['raw_length']:>8}  "
                  f"{b['method']} {b['compressed_length']:>8}  crc32 raw {b['raw_crc32']} "
                  f"payload {b['payload_crc32']}")
    return 0


def run_export_exact(args) -> int:
    from lmpress.models.exact import mixer
    from lmpress.models.registry import is_llm, load_predictor

    if is_llm(args.model):
        raise LmpressError("export-exact writes byte models (the reference decoder restates byte models only)")
    predictor = load_predictor(args.model, precision="exact")
    mixed_ids = {name: mixer.mixed_id(predictor.exact.digest(), name)  # the mixers reference.py restates
                 for name in (mixer.MIXER, mixer.TEXT_MIXER_V2, mixer.TEXT_MIXER_V3, mixer.TEXT_MIXER)}
    with atomic_output(Path(args.output), args.force) as f:
        predictor.exact.export(f, args.positions, mixed_ids)
    arithmetic = predictor.arithmetic
    print(f"{args.output}: {arithmetic['name']} arithmetic of {predictor.name}, id {arithmetic['id']}")
    return 0


def run_models(args) -> int:
    from lmpress.models.registry import ALIASES, LLM_INSTALL, LLMS, SHIPPED, WEIGHTS_DIR, load_predictor

    for name in sorted(SHIPPED):
        p = load_predictor(name)
        aliases = [a for a, t in ALIASES.items() if t == name]
        d = p.describe()
        print(f"{name}{' (' + ', '.join(aliases) + ')' if aliases else ''}: {d['parameters']:,} parameters, "
              f"{d['layers']} layers, d_model {d['d_model']}, id {p.model_id[:12]}  "
              f"[{WEIGHTS_DIR / SHIPPED[name] / 'MODEL_CARD.md'}]")
    for name, locate in sorted(LLMS.items()):
        try:
            where = str(locate())
        except LmpressError:
            where = f"not installed ({LLM_INSTALL})"
        print(f"{name}: pretrained LLM (GGUF) [{where}]")
    return 0


def run_demo(args) -> int:
    """The README's main job: compress a real file, decompress it, compare, show rate and speed."""
    import gzip

    from lmpress.data.corpus import corpus_root

    path = Path(args.file) if args.file else corpus_root() / "wiki" / "enwik8_head" / "enwik5"
    if not path.is_file():
        raise LmpressError(f"{path}: no such file")
    data = path.read_bytes()
    model = args.model or "default"
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / (path.name + SUFFIX)
        restored = Path(tmp) / path.name
        workers = _workers(args.workers, len(data), DEFAULT_CHUNK_SIZE * DEFAULT_BLOCK_CHUNKS)
        t0 = time.perf_counter()
        with open(path, "rb") as src, open(archive, "wb") as dst:
            bar, cb = _progress(args, len(data), "compress")
            enc = compress_stream(src, dst, model, workers=workers, ray=args.ray, progress=cb)
            bar and bar.close()
        t1 = time.perf_counter()
        with open(archive, "rb") as src, open(restored, "wb") as dst:
            bar, cb = _progress(args, len(data), "decompress")
            decompress_stream(src, dst, model, workers=workers, ray=args.ray, progress=cb)
            bar and bar.close()
        t2 = time.perf_counter()
        same = restored.read_bytes() == data
    gz = len(gzip.compress(data, 9))
    print(f"file        {path} ({len(data):,} bytes)")
    print(f"model       {model}")
    print(f"archive     {enc.archive_bytes:,} bytes: rate {enc.archive_bytes / len(data):.4f} "
          f"({8 * enc.archive_bytes / len(data):.3f} bits/byte); gzip -9 (whole file): rate {gz / len(data):.4f}")
    print(f"speed       compress {len(data) / 1000 / (t1 - t0):.1f} KB/s, "
          f"decompress {len(data) / 1000 / (t2 - t1):.1f} KB/s ({workers} core{'s' * (workers > 1)})")
    print(f"round trip  {'identical' if same else 'MISMATCH'}")
    return 0 if same else 1


def run_generate(args) -> int:
    """Compressors as generative models: continue held-out text, image rows and speech."""
    from lmpress.analysis import generative
    from lmpress.models.registry import load_predictor

    models = [generative.CompressorModel(name) for name in args.compressors]
    models += [generative.PredictorModel(load_predictor(name, mix=False)) for name in args.model]
    samples = generative.held_out_samples()
    total = sum(len(t) for m in args.modalities for _, t in samples[m][1]) * len(models)
    with Progress(total, "generate", enabled=not args.quiet) as bar:
        results = generative.run(args.out, models, args.modalities, args.teacher_forced, args.seed, bar.update)
    out = Path(args.out)
    (out / "generate.json").write_text(json.dumps(results, indent=1))
    for modality, r in results["modalities"].items():
        costs = ", ".join(f"{name} {f['truth_bits_per_byte']:.2f}" for name, f in r["models"].items()
                          if f["truth_bits_per_byte"] is not None)
        print(f"{modality}: {', '.join(r['files'])}" + (f"  (true continuation, bits/byte: {costs})" if costs else ""))
    if not args.quiet:
        print(f"wrote {out}/", file=sys.stderr)
    return 0


def run_in_context(args) -> int:
    """Rate against position in the 2048-byte context, per modality, for gzip, xz and byte models."""
    from lmpress.analysis import in_context

    steps = (len(args.compressors) + len(args.model)) * args.chunks * in_context.CHUNK * len(args.modalities)
    with Progress(steps, "in-context", enabled=not args.quiet) as bar:
        results = in_context.run(args.model, args.compressors, args.modalities, args.chunks, args.bucket,
                                 bar.update)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "in_context.json").write_text(json.dumps(results, indent=1))
    in_context.plot(results, out / "in_context.png")
    for modality, r in results["modalities"].items():
        print(f"{modality} ({r['chunks']} chunks), bits/byte at positions "
              f"0-{args.bucket} | middle | last {args.bucket}:")
        for name, curve in r["curves_bits_per_byte"].items():
            coded = r["archive_bits_per_byte_without_header"].get(name)
            tail = f"  (mean {sum(curve) / len(curve):.3f}; archive decoded: {coded:.3f})" if coded else \
                f"  (mean {sum(curve) / len(curve):.3f})"
            print(f"  {name:20} {curve[0]:.3f} | {curve[len(curve) // 2]:.3f} | {curve[-1]:.3f}{tail}")
    if not args.quiet:
        print(f"wrote {out / 'in_context.json'}, {out / 'in_context.png'}", file=sys.stderr)
    return 0


def run_tokenization(args) -> int:
    """Byte and BPE models trained alike, coding the same held-out Wikipedia sample."""
    from lmpress.analysis import tokenization

    cells = len(args.sizes) * len(args.vocabs)
    with Progress(cells, "tokenization", unit="model", enabled=not args.quiet) as bar:
        results = tokenization.run(Path(args.runs), args.sizes, args.vocabs, args.steps, args.bytes,
                                   batch_size=args.batch_size, seq_len=args.seq_len, threads=args.threads,
                                   workers=max(1, args.workers or 2), tick=bar.update)
    tokenization.write(results, Path(args.out))
    print(tokenization.markdown(results))
    print("lowest rate per model size: " + ", ".join(
        f"{size}: vocabulary {vocab:,}" for size, vocab in tokenization.best_vocab(results).items()))
    if not args.quiet:
        print(f"wrote {Path(args.out) / 'tokenization.json'}, {Path(args.out) / 'tokenization.png'}", file=sys.stderr)
    return 0


def run_model_size(args) -> int:
    """Adjusted rate against stored model size, per dataset size and storage precision."""
    from lmpress.analysis import model_size

    total = args.bytes * len(args.model) * len(args.precisions)
    with Progress(total, "model-size", enabled=not args.quiet) as bar:
        results = model_size.run(args.model, args.modality, args.bytes, args.precisions, args.sizes,
                                 max(1, args.workers or 2), bar.update)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_size.json").write_text(json.dumps(results, indent=1))
    model_size.plot(results, out / "model_size.png")
    sizes = results["sizes"]
    print(f"held-out {results['modality']}, {results['sample_bytes']:,} bytes coded and decoded per point")
    print("| model | trained on | stored as | parameters | stored bytes | raw rate | " +
          " | ".join(f"adjusted, {float(d):.0e} B" for d in sizes) + " |")
    print("|---|---|---|---:|---:|---:|" + "---:|" * len(sizes))
    for p in results["points"]:
        print(f"| {p['model']} | {p['trained']} | {p['precision']} | {p['parameters']:,} | {p['stored_bytes']:,} | "
              f"{p['rate']:.4f} | "
              + " | ".join(f"{p['adjusted'][d]:.4f}" for d in sizes) + " |")
    print("best per dataset size: " + "; ".join(f"{float(d):.0e} B: {b}" for d, b in results["best"].items()))
    if not args.quiet:
        print(f"wrote {out / 'model_size.json'}, {out / 'model_size.png'}", file=sys.stderr)
    return 0


def run_bench(args) -> int:
    """The studies' comparison table on any data: every figure decoded and checked."""
    from lmpress.baselines import ALL as BASELINES
    from lmpress.bench.datasets import load_dataset
    from lmpress.bench.harness import LMPRESS_PREFIX, run
    from lmpress.bench.measure import machine_line
    from lmpress.bench.report import markdown, write_outputs

    quick = args.quick
    max_bytes = args.max_bytes or (64_000 if quick else 1_000_000)
    data = args.data or ["wiki", "image", "audio", "random"]
    if args.compressors:
        compressors = [c.strip() for c in args.compressors.split(",") if c.strip()]
    elif quick:
        compressors = ["gzip", "xz", "png", "flac", f"{LMPRESS_PREFIX}default"]
    else:
        compressors = [*BASELINES, f"{LMPRESS_PREFIX}default"]
    datasets = [load_dataset(d, max_bytes if d != "random" else min(max_bytes, 16_000 if quick else 100_000),
                             args.modality) for d in data]
    total = sum(ds.raw_bytes for ds in datasets) * len(compressors) * len(args.protocols)
    bar = None if args.quiet else Progress(total=total, desc="bench", unit="B")
    cache = None if args.no_cache else Path(args.cache_dir)
    results = run(datasets, compressors, args.protocols, cache, workers=max(1, args.workers or 1),
                  progress=bar.update if bar else None, ray=args.ray)
    if bar:
        bar.close()
    machine = machine_line()
    settings = {"data": data, "max_bytes": max_bytes, "compressors": compressors, "protocols": args.protocols}
    paths = write_outputs(results, Path(args.out), machine, settings)
    print(markdown(results, machine))
    if not args.quiet:
        print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------- parser


def _codec_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", metavar="FILE", help="input files ('-' or none: stdin)")
    p.add_argument("-c", "--stdout", action="store_true", help="write to standard output")
    p.add_argument("-o", "--output", metavar="PATH", help="write to PATH")
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("-k", "--keep", action="store_true", help="keep input files (the default)")
    p.add_argument("--rm", action="store_true", help="delete input files after success")
    p.add_argument("-m", "--model",
                   help="model name or file (default: the shipped model for the input's kind: text-800k for text, "
                        "the multimodal default for images, audio and other bytes; decompress: the archive's)")
    p.add_argument("--as-bytes", action="store_true",
                   help="code the input's bytes as they are: no WAV, PGM/PPM, BMP or TIFF front end")
    p.add_argument("--chunk-size", type=int, metavar="BYTES",
                   help="bytes per chunk, each coded from a fresh context (default: byte models cut a file into "
                        f"--block-chunks whole-file segments, 2048-65536 bytes; LLMs and --no-mix: "
                        f"{DEFAULT_CHUNK_SIZE}, the studies' chunks)")
    p.add_argument("--block-chunks", type=int, default=DEFAULT_BLOCK_CHUNKS,
                   help="chunks coded together in one block")
    p.add_argument("--window", type=int, metavar="TOKENS",
                   help="LLMs: attention window in tokens, to carry context through long chunks "
                        "(e.g. --chunk-size 65536 --window 1024); default: the whole chunk")
    p.add_argument("--no-mix", action="store_true",
                   help="byte models: the network alone, without the context and match models mixed in "
                        "(with --chunk-size 2048: the studies' chunked protocol)")
    p.add_argument("--prompt", metavar="FILE", help="steer the model with a soft prompt (lmpress tune); "
                   "decompress: the prompt the archive names, unless it embeds it")
    p.add_argument("--embed-prompt", choices=PRIORS, metavar="PRIOR",
                   help=f"store the prompt in the archive, quantized and coded with a hyper-prior "
                        f"({', '.join(PRIORS)}); its bits count in the archive")
    p.add_argument("--prompt-levels", type=int, default=DEFAULT_PROMPT_LEVELS,
                   help="quantization levels of an embedded prompt")
    _common(p)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    p.add_argument("--progress", action="store_true", help="show the progress bar even if stderr is not a terminal")
    p.add_argument("-j", "--workers", type=int, default=0,
                   help="cores to use (0: all): a worker process per block, or a single block's steps on "
                        "threads (exact arithmetic); the archive is the same for any value")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="code blocks as Ray tasks: on a local Ray cluster, or the cluster at ADDRESS "
                        "('auto', 'ray://host:10001'); the archive is the same")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmpress", description="Lossless compression with neural predictors.")
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("compress", help="compress files (the default command)")
    _codec_options(c)
    c.add_argument("-d", "--decompress", action="store_true", help="decompress instead")
    c.add_argument("-t", "--test", action="store_true", help="test archives instead")
    d = sub.add_parser("decompress", help="decompress .lmpz archives")
    _codec_options(d)
    t = sub.add_parser("test", help="decode archives and check them; write nothing")
    t.add_argument("files", nargs="+", metavar="FILE")
    t.add_argument("-m", "--model")
    t.add_argument("--prompt", metavar="FILE", help="the soft prompt the archives name")
    _common(t)
    i = sub.add_parser("info", help="show an archive's header and block table")
    i.add_argument("files", nargs="+", metavar="FILE")
    i.add_argument("--json", action="store_true")
    sub.add_parser("models", help="list the shipped models")
    ex = sub.add_parser("export-exact", help="write a byte model's exact integer arithmetic as .npz "
                        "(for the independent reference decoder, models/exact/reference.py)")
    ex.add_argument("model", help="model name or file")
    ex.add_argument("output", help="the .npz to write")
    ex.add_argument("--positions", type=int, default=SEGMENT_MAX,
                    help="RoPE rotations to include (the longest segment an archive may have)")
    ex.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")
    demo = sub.add_parser("demo", help="compress and decompress a corpus file; show rate and speed")
    demo.add_argument("file", nargs="?", help="default: Wikipedia XML (enwik5) from ../shared/corpus")
    demo.add_argument("-m", "--model")
    _common(demo)
    g = sub.add_parser("generate", help="compressors as generative models: continue held-out samples")
    g.add_argument("-m", "--model", nargs="+", default=["default"], help="lmpress byte models")
    g.add_argument("--compressors", nargs="*", default=["gzip", "xz"], choices=["gzip", "xz"])
    g.add_argument("--modalities", nargs="+", default=["text", "image", "audio"], choices=["text", "image", "audio"])
    g.add_argument("--teacher-forced", action="store_true",
                   help="sample each position from the true context (default: autoregressive)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", default="generate-results")
    g.add_argument("-q", "--quiet", action="store_true")
    ic = sub.add_parser("in-context", help="rate against position in the context, per modality")
    ic.add_argument("-m", "--model", nargs="+", default=["default"], help="lmpress byte models")
    ic.add_argument("--compressors", nargs="*", default=["gzip", "xz"], choices=["gzip", "xz"])
    ic.add_argument("--modalities", nargs="+", default=["text", "image", "audio"],
                    choices=["text", "image", "audio"])
    ic.add_argument("--chunks", type=int, default=64, help="held-out chunks per modality")
    ic.add_argument("--bucket", type=int, default=64, help="positions per point of the curve")
    ic.add_argument("--out", default="in-context-results")
    ic.add_argument("-q", "--quiet", action="store_true")
    ms = sub.add_parser("model-size", help="adjusted rate against stored model size (float32 / float16 / int8)")
    ms.add_argument("-m", "--model", nargs="+", default=["multimodal-800k", "text-800k"],
                    help="shipped byte models, model files, smollm2-135m / gemma3-270m (as shipped, GGUF)")
    ms.add_argument("--modality", default="text", choices=["text", "image", "audio"])
    ms.add_argument("--bytes", type=int, default=32768, help="held-out bytes coded per point")
    ms.add_argument("--precisions", nargs="+", default=["float32", "float16", "int8"],
                    choices=["float32", "float16", "int8"])
    ms.add_argument("--sizes", nargs="+", type=float, default=[1e5, 1e6, 1e7, 1e8, 1e9],
                    help="dataset sizes (bytes) for the adjusted rate")
    ms.add_argument("-j", "--workers", type=int, default=2)
    ms.add_argument("--out", default="model-size-results")
    ms.add_argument("-q", "--quiet", action="store_true")
    tk = sub.add_parser("tokenization", help="byte vs BPE models of several vocabularies: coded rate on Wikipedia")
    tk.add_argument("--sizes", nargs="+", default=["200k", "800k"], help="model presets (200k, 800k, 3.2m)")
    tk.add_argument("--vocabs", nargs="+", type=int, default=[256, 1000, 2000, 5000, 10000, 20000],
                    help="256 = bytes; more = byte-level BPE learned from the training text")
    tk.add_argument("--steps", type=int, default=400, help="training steps per model (same for all)")
    tk.add_argument("--batch-size", type=int, default=16)
    tk.add_argument("--seq-len", type=int, default=512, help="training sequence length in symbols")
    tk.add_argument("--threads", type=int, default=1, help="training threads")
    tk.add_argument("--bytes", type=int, default=65536, help="held-out bytes coded and decoded per model")
    tk.add_argument("-j", "--workers", type=int, default=2)
    tk.add_argument("--runs", default="tokenization-runs", help="training folders (reused and resumed)")
    tk.add_argument("--out", default="tokenization-results")
    tk.add_argument("-q", "--quiet", action="store_true")
    b = sub.add_parser("bench", help="compare lmpress models with classical codecs on real data")
    b.add_argument("data", nargs="*", help="presets wiki, text, image, audio, random, or files/folders "
                   "(default: wiki image audio random)")
    b.add_argument("--modality", choices=["text", "image", "audio", "bytes"], help="how to read DATA paths")
    b.add_argument("--compressors", help="comma-separated: gzip,bzip2,xz,zstd,brotli,ppmd,zpaq,png,jpeg2000,"
                   "jpegxl,flac,lmpress:MODEL (default: all)")
    b.add_argument("--protocols", nargs="+", default=["chunked", "unchunked"], choices=["chunked", "unchunked"],
                   help="chunked: the studies' independent 2048-byte chunks (lmpress: the network alone); "
                        "unchunked: whole files, as users compress them (lmpress: default settings)")
    b.add_argument("--max-bytes", type=int, help="bytes per dataset (default 1 MB; --quick 64 KB)")
    b.add_argument("--quick", action="store_true", help="a small preset that runs in a few minutes")
    b.add_argument("--out", default="bench-results", help="folder for bench.md/.json/.csv and PNG plots")
    b.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "lmpress" / "bench"))
    b.add_argument("--no-cache", action="store_true")
    _common(b)
    sub.add_parser("train", help="train a byte transformer (see: lmpress train --help)", add_help=False)
    sub.add_parser("tune", help="train a soft prompt for a model (see: lmpress tune --help)", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        try:
            importlib.import_module(DELEGATED[argv[0]]).main(argv[1:])
            return 0
        except LmpressError as e:
            print(f"lmpress: {e}", file=sys.stderr)
            return 1
    if not argv or argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help"):
        argv = ["compress", *argv]  # gzip style: `lmpress -d file.lmpz`, `lmpress -c file`
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "compress" and args.test:
            return run_test(args)
        if args.command in ("compress", "decompress"):
            return run_codec(args, decompress=args.command == "decompress" or args.decompress)
        commands = {"test": run_test, "info": run_info, "models": run_models, "demo": run_demo, "bench": run_bench,
                    "generate": run_generate, "in-context": run_in_context, "model-size": run_model_size,
                    "tokenization": run_tokenization, "export-exact": run_export_exact}
        return commands[args.command](args)
    except UsageError as e:
        parser.error(str(e))
    except LmpressError as e:
        print(f"lmpress: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `lmpress -d -c x.lmpz | head`: the reader left, not an error to report
        return 1
    except OSError as e:  # permission denied, disk full, ...: expected, one line
        where = f"{e.filename}: " if e.filename else ""
        print(f"lmpress: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lmpress: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
