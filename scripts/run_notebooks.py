"""Execute the teaching notebooks in place and stamp them with the code that produced their outputs.

    python scripts/run_notebooks.py                 # every notebook, real mode (after `dvc repro`)
    python scripts/run_notebooks.py 02-interest-clusters.ipynb --mode small

Each notebook runs top to bottom with nbclient, from `notebooks/`, with `RECLI_NOTEBOOK_MODE` set
to `--mode`. Its outputs are then checked for paths of this machine (a committed notebook must
read well anywhere) and its metadata gets a stamp, `recli: {source_digest, cells_digest, mode}`:
the digest of the pipeline's code and params (`source_digest()`) and of the notebook's own code
cells (`cells_digest()`). `tests/tools/test_notebooks.py` recomputes both, so a notebook whose
outputs were not produced by the committed code fails the tests.

Nothing is written under `data/` or `metrics/`: real mode only reads them, small mode and
notebook 04 work in temporary folders.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = ROOT / "notebooks"
MODES = ("real", "small")
MODE_ENV = "RECLI_NOTEBOOK_MODE"
CELL_TIMEOUT_S = 600
STAMP_KEY = "recli"

SOURCE_PATTERNS = ("pipeline/**/*.py", "recli/**/*.py", "params.yaml", "dvc.yaml")
"""What the outputs depend on: the library code, the params and the stage graph."""


def source_files(root: Path = ROOT) -> list[Path]:
    """The files `source_digest` covers, sorted by their path relative to `root`."""
    files = {path for pattern in SOURCE_PATTERNS for path in root.glob(pattern)}
    return sorted(files, key=lambda path: path.relative_to(root).as_posix())


def source_digest(root: Path = ROOT) -> str:
    """sha256 over every source file's relative path and bytes (line endings normalised)."""
    digest = hashlib.sha256()
    for path in source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return digest.hexdigest()


def cells_digest(notebook: nbformat.NotebookNode) -> str:
    """sha256 over the notebook's code cells, so an edited cell makes its outputs stale."""
    digest = hashlib.sha256()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.encode() + b"\0")
    return digest.hexdigest()


def machine_path_patterns(root: Path = ROOT) -> list[str]:
    """Regexes for paths that would only mean something on the machine that ran a notebook."""
    literal = {str(root), str(Path.home()), str(Path(sys.prefix)), tempfile.gettempdir()}
    generic = [
        r"/work/",
        r"/tmp/",
        r"/home/",
        r"/Users/",
        r"/root/",
        r"/private/var/",
        r"[A-Za-z]:\\",
    ]
    return sorted({re.escape(path) for path in literal if len(path) > 1} | set(generic))


def output_texts(notebook: nbformat.NotebookNode) -> list[str]:
    """Every text an output carries: streams, text/* data, tracebacks."""
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if "text" in output:
                texts.append(output["text"])
            for mime, value in output.get("data", {}).items():
                if mime.startswith("text/") or mime.endswith("json"):
                    texts.append(value if isinstance(value, str) else str(value))
            texts.extend(output.get("traceback", []))
    return texts


def machine_paths(notebook: nbformat.NotebookNode, root: Path = ROOT) -> list[str]:
    """Machine paths found in the outputs (with a little context each); empty when clean."""
    pattern = re.compile("|".join(machine_path_patterns(root)))
    found = []
    for text in output_texts(notebook):
        for match in pattern.finditer(text):
            found.append(text[max(0, match.start() - 40) : match.end() + 40].replace("\n", " "))
    return found


def execute(notebook: nbformat.NotebookNode, mode: str, timeout: int = CELL_TIMEOUT_S) -> None:
    """Run `notebook` top to bottom from `notebooks/` in `mode`, in place (outputs replaced)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    previous = os.environ.get(MODE_ENV)
    os.environ[MODE_ENV] = mode  # the kernel inherits this process's environment
    try:
        client = NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            record_timing=False,
            resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
        )
        client.execute()
    finally:
        if previous is None:
            os.environ.pop(MODE_ENV, None)
        else:
            os.environ[MODE_ENV] = previous


def stamp(notebook: nbformat.NotebookNode, mode: str, sources: str) -> None:
    """Record what produced the outputs: `sources` (a `source_digest`), the cells and the mode."""
    notebook.metadata[STAMP_KEY] = {
        "source_digest": sources,
        "cells_digest": cells_digest(notebook),
        "mode": mode,
    }


def require_fresh_outputs() -> None:
    """Real mode reads data/ and metrics/: they must exist and match the code (`dvc status`)."""
    if not (ROOT / "data/index/catalogue.sqlite").exists():
        raise SystemExit("real mode needs the pipeline's outputs: run `dvc repro` first")
    status = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if status.returncode != 0 or json.loads(status.stdout or "{}"):
        raise SystemExit(
            "the pipeline's outputs are not up to date with the code (`dvc status`): "
            "run `dvc repro` first"
        )


def notebook_paths(names: list[str] | None = None) -> list[Path]:
    every = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]-*.ipynb"))
    if not names:
        return every
    chosen = [NOTEBOOKS_DIR / Path(name).name for name in names]
    missing = [path.name for path in chosen if not path.exists()]
    if missing:
        raise SystemExit(f"no such notebook(s) in notebooks/: {', '.join(missing)}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebook file names (default: all)")
    parser.add_argument("--mode", choices=MODES, default="real", help="default: real")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds per cell")
    args = parser.parse_args()
    if args.mode == "real":
        require_fresh_outputs()

    for path in notebook_paths(args.notebooks):
        notebook = nbformat.read(path, as_version=4)
        sources = source_digest()  # before running: the code that produced the outputs
        started = time.perf_counter()
        execute(notebook, args.mode, args.timeout)
        seconds = time.perf_counter() - started
        leaks = machine_paths(notebook)
        if leaks:
            raise SystemExit(
                f"{path.name}: outputs contain machine paths, not written:\n  "
                + "\n  ".join(leaks[:5])
            )
        stamp(notebook, args.mode, sources)
        nbformat.write(notebook, path)
        print(f"{path.name}: {args.mode} mode, {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
