"""What the scale benchmark's numbers were measured on (the machine, the code, the step
budgets) and its stage × size tables for a terminal and for Markdown."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.core.config import Params
from pipeline.core.parallel import usable_cores
from scaling import REPO


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "polars": _version("polars"),
        "numpy": _version("numpy"),
    }
    for path, key, field in (
        ("/proc/cpuinfo", "cpu_model", "model name"),
        ("/proc/meminfo", "memory_total_gib", "MemTotal"),
    ):
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        value = next(
            (line.split(":", 1)[1].strip() for line in lines if line.startswith(field)), None
        )
        if key == "memory_total_gib" and value:
            value = round(int(value.split()[0]) / 1024**2, 2)  # kB
        info[key] = value
    # The accelerator, and the arithmetic `precision: auto` picks there (bf16 on a CPU with
    # AVX512-BF16 or AMX, float32 without), in a child so this process never imports torch.
    probe = (
        "import torch; from pipeline.models.encoder import pick_device, pick_precision; "
        "print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'); "
        "print(pick_precision('auto', pick_device('auto')))"
    )
    try:
        found = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
            cwd=REPO,
        )
        lines = found.stdout.strip().splitlines()
        info["accelerator"] = (lines[0] if lines else "") or "none"
        info["auto_precision"] = lines[1] if len(lines) > 1 else None
    except (subprocess.SubprocessError, OSError):
        info["accelerator"] = info["auto_precision"] = None
    return info


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def code_version() -> str:
    """The commit the stages ran from, `+changes` when the pipeline or params differ from it
    (sizes measured from different code are not comparable stage by stage)."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        changed = _git("status", "--porcelain", "--", "pipeline", "params.yaml", "dvc.yaml")
    except (subprocess.SubprocessError, OSError):
        return "unknown"
    return f"{head}+changes" if changed else head


BUDGET_KEYS = (
    "finetune.max_steps",
    "finetune.batch_size",
    "finetune.eval_steps",
    "finetune.eval_users",
    "finetune.eval_items",
    "finetune.device",
    "embed.batch_size",
    "cluster.k",
    "factorize.algorithm",
    "factorize.epochs",
    "factorize.embedding_size",
    "sequence.epochs",
    "sequence.max_steps",
    "sequence.negatives",
    "sequence.patience",
    "sequence.eval_every",
    "sequence.max_length",
    "sequence.batch_size",
    "sequence.device",
    "index.n_trees",
    "index.recall_users",
    "evaluate.ease_reg_grid",
    "evaluate.itemknn_neighbors_grid",
    "evaluate.max_users",
    "evaluate.quadratic_peers_max_items",
)
"""The params that set how much work each stage does, recorded with the numbers."""


def budgets(params: Params) -> dict[str, Any]:
    """The step budgets of `params` and a digest of every section but `data`."""
    raw = params.model_dump(mode="json")
    found: dict[str, Any] = {}
    for dotted in BUDGET_KEYS:
        value: Any = raw
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        found[dotted] = value
    rest = json.dumps({k: v for k, v in raw.items() if k != "data"}, sort_keys=True)
    return {"budgets": found, "params_sha256": hashlib.sha256(rest.encode()).hexdigest()[:16]}


def count_label(n: int) -> str:
    """20000 -> 20k, 1000000 -> 1M, 2500000 -> 2.5M."""
    for scale, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= scale:
            return f"{n / scale:g}{suffix}"
    return str(n)


def _cell(record: dict[str, Any] | None) -> tuple[str, str]:
    if not record or "seconds" not in record:
        return (record["status"] if record else "-"), ""
    seconds = f"{record['seconds']:.1f}" + (
        "" if record["status"] == "ok" else f" {record['status']}"
    )
    return seconds, f"{record['peak_rss_mib']:.0f}"


def _slope_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the stage × size table (seconds, MiB; slopes last)."""
    runs = report["sizes"]
    header = ["stage"]
    for run in runs:
        label = count_label(run["n_events"])
        header += [f"{label} s", f"{label} MiB"]
    header += ["slope s", "slope MiB"]
    rows = []
    for stage in [*report["stages"], "total"]:
        row = [stage]
        for run in runs:
            if stage == "total":
                peak = run["totals"]["peak_rss_mib"]
                row += [f"{run['totals']['seconds']:.1f}", "" if peak is None else f"{peak:.0f}"]
            else:
                row += list(_cell(run["stages"].get(stage)))
        slope = report["slopes"].get(stage, {})
        row += [_slope_text(slope.get("seconds")), _slope_text(slope.get("peak_rss_mib"))]
        rows.append(row)
    return header, rows


def text_table(report: dict[str, Any]) -> str:
    """The table for a terminal."""
    header, rows = table_rows(report)
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in [header, *rows]
    ]
    return "\n".join(lines)


def markdown_table(report: dict[str, Any]) -> str:
    """The table as Markdown, for the README."""
    header, rows = table_rows(report)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
