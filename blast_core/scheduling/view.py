"""What the scheduler reports to: a `View` (the CLI's live table on a terminal, `blast_cli/live.py`)
or `LogView`, timestamped event lines for logs, pipes and tests."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Protocol, TextIO

from blast_core.scheduling.eta import Left


class View(Protocol):
    def event(self, text: str) -> None:
        """Something happened to a run (started, ended, retried)."""

    def refresh(self, rows: list[dict], latest: dict[str, dict], where: dict[str, str],
                left: Left | None = None) -> None:
        """The runs' rows, their latest metrics, the slot of each active one and the run time
        they have left."""

    def close(self) -> None: ...


def stamp() -> str:
    return dt.datetime.now().strftime("%H:%M:%S")


class LogView:
    """One line per event: for logs, pipes and tests."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def event(self, text: str) -> None:
        print(f"[{stamp()}] {text}", file=self.stream, flush=True)

    def refresh(self, rows: list[dict], latest: dict[str, dict], where: dict[str, str],
                left: Left | None = None) -> None:
        pass

    def close(self) -> None:
        pass
