"""Benchmark outputs: a Markdown table, JSON and CSV with every figure, and PNG plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from lmpress.bench.harness import LMPRESS_PREFIX, Result


def rate_cell(r: Result | None) -> str:
    """A table cell: the raw rate, and for lmpress models also the adjusted rate (model bytes added)."""
    if r is None:
        return "–"
    if r.compressor.startswith(LMPRESS_PREFIX):
        return f"**{r.rate:.3f}** / {r.adjusted_rate:.3f}"
    return f"{r.rate:.3f}"


def _fmt_bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def markdown(results: list[Result], machine: str) -> str:
    datasets = list(dict.fromkeys(r.dataset for r in results))
    sizes = {r.dataset: r.raw_bytes for r in results}
    rows = list(dict.fromkeys((r.compressor, r.protocol) for r in results))
    by = {(r.compressor, r.protocol, r.dataset): r for r in results}
    head = "| compressor | protocol | " + " | ".join(f"{d} ({_fmt_bytes(sizes[d])})" for d in datasets) + " |"
    lines = ["Raw rate (compressed / original bytes; lower is better). lmpress rows: raw / adjusted "
             "(model bytes at stored precision added). Every figure decoded and compared.", "",
             head, "|---|---|" + "---:|" * len(datasets)]
    for comp, proto in rows:
        cells = []
        for d in datasets:
            cells.append(rate_cell(by.get((comp, proto, d))))
        lines.append(f"| {comp} | {proto} | " + " | ".join(cells) + " |")
    lines += ["", "Throughput (KB/s of original data, encode / decode):", "",
              "| compressor | protocol | " + " | ".join(datasets) + " |", "|---|---|" + "---:|" * len(datasets)]
    for comp, proto in rows:
        cells = []
        for d in datasets:
            r = by.get((comp, proto, d))
            cells.append("–" if r is None else f"{r.raw_bytes / 1e3 / max(r.encode_seconds, 1e-9):.0f} / "
                         f"{r.raw_bytes / 1e3 / max(r.decode_seconds, 1e-9):.0f}")
        lines.append(f"| {comp} | {proto} | " + " | ".join(cells) + " |")
    lines += ["", f"Machine: {machine}"]
    return "\n".join(lines) + "\n"


def write_outputs(results: list[Result], out_dir: Path, machine: str, settings: dict) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / "bench.md", "json": out_dir / "bench.json", "csv": out_dir / "bench.csv",
             "rates": out_dir / "rates.png", "model_size": out_dir / "model_size.png"}
    paths["md"].write_text(markdown(results, machine))
    records = [r.to_dict() for r in results]
    paths["json"].write_text(json.dumps({"machine": machine, "settings": settings, "results": records}, indent=2))
    with open(paths["csv"], "w", newline="") as f:
        fields = [k for k in records[0] if k != "settings"] + ["settings"] if records else []
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for rec in records:
            writer.writerow({**rec, "settings": json.dumps(rec["settings"], sort_keys=True)})
    plot_rates(results, paths["rates"])
    plot_model_size(results, paths["model_size"])
    return paths


def plot_rates(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    chunked = [r for r in results if r.protocol == "chunked"]
    datasets = list(dict.fromkeys(r.dataset for r in chunked))
    comps = list(dict.fromkeys(r.compressor for r in chunked))
    by = {(r.compressor, r.dataset): r for r in chunked}
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(datasets) + 2), 4.5))
    width = 0.8 / max(1, len(comps))
    x = np.arange(len(datasets))
    for k, comp in enumerate(comps):
        vals = [by[(comp, d)].rate if (comp, d) in by else np.nan for d in datasets]
        ax.bar(x + k * width - 0.4 + width / 2, vals, width, label=comp, color=plt.cm.tab20(k % 20))
    ax.set_xticks(x, datasets)
    ax.set_ylabel("raw rate (chunked, 2048 B)")
    ax.axhline(1.0, color="gray", lw=0.5)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Compression rate by dataset (lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_model_size(results: list[Result], path: Path) -> None:
    """The "optimal model size" view: adjusted rate = raw rate + model bytes / data size.

    Left: against model parameters, one line per dataset and data size (measured size, and 10 MB to 1 GB
    projected at the measured raw rate). Right: against data size, one line per model and dataset: where
    a model pays for itself.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = [r for r in results if r.compressor.startswith(LMPRESS_PREFIX) and r.dataset != "random"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    sizes = (10**7, 10**8, 10**9)
    for k, dataset in enumerate(dict.fromkeys(r.dataset for r in models)):
        rs = sorted((r for r in models if r.dataset == dataset), key=lambda r: r.model_bytes)
        params = [r.settings.get("parameters", 0) for r in rs]
        color = plt.cm.tab10(k % 10)
        for n, style in zip(sizes, (":", "--", "-")):
            left.plot(params, [r.rate + r.model_bytes / n for r in rs], style, marker="o", color=color,
                      label=f"{dataset}, {_fmt_bytes(n)}")
        data_sizes = np.logspace(5, 10, 60)
        for r in rs:
            right.plot(data_sizes, r.rate + r.model_bytes / data_sizes, color=color,
                       label=f"{dataset}, {r.compressor[len(LMPRESS_PREFIX):]} ({r.settings.get('parameters', 0):,})")
            right.axhline(r.rate, color=color, lw=0.5, ls=":")
    left.set_xscale("log")
    left.set_xlabel("model parameters")
    left.set_ylabel("adjusted rate (projected at the measured raw rate)")
    left.set_title("Adjusted rate vs model size")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("data size (bytes)")
    right.set_ylabel("adjusted rate")
    right.axhline(1.0, color="gray", lw=0.5)
    right.set_title("When a model pays for itself")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
