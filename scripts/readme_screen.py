"""Regenerate the README's sample screen from the tool itself.

The README shows what `recli recommend 196` prints. Typed by hand it drifts from the tool as the
tool changes; this script runs the real command on the committed artifacts at a fixed width and
puts its output between the README's `<!-- screen: ... -->` markers (the first `LINES` lines, then
an ellipsis), so the sample is always something the tool printed.

Usage, from the repository root after `dvc repro`:

    python scripts/readme_screen.py            # rewrite the block in README.md
    python scripts/readme_screen.py --check    # exit 1 if the README's block is out of date
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

README = Path("README.md")
COMMAND = ["recommend", "196"]
WIDTH = 80
LINES = 36
START, END = "<!-- screen: recli recommend 196 -->", "<!-- /screen -->"


def screen(artifacts: Path) -> str:
    """What the command prints at `WIDTH` columns, without colour, cut to `LINES` lines."""
    environment = {**os.environ, "COLUMNS": str(WIDTH), "NO_COLOR": "1", "TERM": "dumb"}
    result = subprocess.run(
        [sys.executable, "-m", "recli", "--artifacts", str(artifacts), *COMMAND],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"recli {' '.join(COMMAND)} failed: {result.stderr.strip()}")
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    shown = lines[:LINES] + (["  …"] if len(lines) > LINES else [])
    return "\n".join(shown)


def block(text: str) -> str:
    return f"{START}\n```\n$ recli {' '.join(COMMAND)}\n{text}\n```\n{END}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=Path("data"))
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args()
    readme = README.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(readme):
        raise SystemExit(f"{README} has no {START} … {END} block")
    updated = pattern.sub(lambda _: block(screen(args.artifacts)), readme, count=1)
    if args.check:
        if updated != readme:
            raise SystemExit(f"{README}'s sample screen differs from what the tool prints")
        print(f"{README}'s sample screen is what the tool prints")
        return
    README.write_text(updated, encoding="utf-8")
    print(f"wrote the sample screen into {README}")


if __name__ == "__main__":
    main()
