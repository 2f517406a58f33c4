"""The git commit of the code that runs, recorded with every run (and whether it had edits)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2]


@functools.cache
def state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout holding blast_core; (None, None) outside a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(SOURCE), *args], capture_output=True, text=True, check=True,
            timeout=10,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        # Tracked files only: results/ and scratch files are not the code.
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, dirty
