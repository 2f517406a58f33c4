"""The scheduler's live table on a terminal (`blast run-ladder`, `run-recipe`, `resume --all`):
one row per run with its state, step, speed and latest score; plain event lines elsewhere."""

from __future__ import annotations

import collections
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from blast_core.config import RUNG_IDS
from blast_core.scheduling.eta import Left
from blast_core.scheduling.view import LogView, View, stamp

STYLE = {"queued": "dim", "running": "cyan", "done": "green", "failed": "red",
         "crashed": "bold red", "interrupted": "yellow", "cancelled": "magenta"}
ORDER = ("running", "crashed", "failed", "interrupted", "queued", "cancelled", "done")


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _row_key(row: dict) -> tuple:
    """Active runs first; then by env, the ladder's order of rungs (not the alphabet's), seed."""
    rung = RUNG_IDS.index(row["rung"]) if row.get("rung") in RUNG_IDS else len(RUNG_IDS)
    return (ORDER.index(row["status"]), row.get("env") or "", rung, row.get("seed") or 0,
            row["id"])


def time_left(row: dict, steps_per_s: float | None) -> str | None:
    """A running run's time to its last step at `steps_per_s` ("1h05m", "12m"; `eta.steady`); None
    before its prefill ends (random steps run far faster than training ones) or with no speed."""
    schedule = (row.get("config") or {}).get("schedule") or {}
    total, step = schedule.get("steps"), row.get("step") or 0
    if row.get("status") != "running" or not total or not steps_per_s or steps_per_s <= 0:
        return None
    if step <= (schedule.get("prefill") or 0):
        return None
    return duration(max(total - step, 0) / steps_per_s)


def duration(seconds: float) -> str:
    """"<1m", "12m", "1h05m", "27h10m": the run times `blast status` shows."""
    if seconds < 60:
        return "<1m"
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def run_table(rows: list[dict], latest: dict[str, dict], where: dict[str, str]) -> Table:
    """One line per run, active ones first: state, slot, launches, step, steps/s, time left,
    peak memory, last score."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name, justify in (("run", "left"), ("state", "left"), ("slot", "left"),
                          ("launch", "right"), ("step", "right"), ("steps/s", "right"),
                          ("left", "right"), ("MiB", "right"), ("score", "right")):
        table.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis")
    for row in sorted(rows, key=_row_key):
        total = ((row.get("config") or {}).get("schedule") or {}).get("steps")
        step = f"{row['step']}/{total}" if total else str(row["step"])
        metrics = latest.get(row["id"], {})
        table.add_row(row["name"], Text(row["status"], style=STYLE[row["status"]]),
                      where.get(row["id"], ""), str(row.get("launches") or 0), step,
                      _fmt(metrics.get("steps_per_s"), ".1f"),
                      time_left(row, metrics.get("steps_per_s")) or "-",
                      _fmt(metrics.get("peak_mem_mb"), ".0f"), _fmt(metrics.get("eval_score")))
    return table


def counts_line(rows: list[dict]) -> Text:
    counts = collections.Counter(r["status"] for r in rows)
    text = Text(f"{len(rows)} runs: ")
    for state in ORDER:
        if counts[state]:
            text.append(f"{counts[state]} {state}  ", style=STYLE[state])
    return text


def left_line(left: Left) -> Text | None:
    """The run time runs have left (scheduling/eta.py), with what a done run of each rung took;
    None when nothing is left."""
    if not left.runs and not left.unknown:
        return None
    text = Text("left: ", style="bold")
    if left.runs:
        text.append(f"~{duration(left.seconds)} of run time for {left.runs} run"
                    f"{'s' * (left.runs != 1)}")
    if left.per_run:
        order = sorted(left.per_run, key=lambda r: RUNG_IDS.index(r) if r in RUNG_IDS
                       else len(RUNG_IDS))
        each = ", ".join(f"{rung} {duration(left.per_run[rung])}" for rung in order)
        text.append(f" (a done run took: {each})", style="dim")
    if left.unknown:
        rungs = ", ".join(f"{n} {r}" for r, n in left.unknown.items())
        text.append(f"{'; ' if left.runs else ''}not yet timed (no done run of the rung): {rungs}")
    return text


class LiveView:
    """A rich table redrawn in place; events scroll above it."""

    def __init__(self, console: Console) -> None:
        self.live = Live(Text("starting..."), console=console, auto_refresh=False,
                         vertical_overflow="crop")
        self.live.start()

    def event(self, text: str) -> None:
        self.live.console.print(f"[dim]{stamp()}[/] {text}", highlight=False)

    def refresh(self, rows: list[dict], latest: dict[str, dict], where: dict[str, str],
                left: Left | None = None) -> None:
        parts = [run_table(rows, latest, where), counts_line(rows),
                 left_line(left) if left else None]
        self.live.update(Group(*[p for p in parts if p is not None]), refresh=True)

    def close(self) -> None:
        self.live.stop()


def make_view(live: bool | None = None) -> View:
    """A live table on a terminal (or when `live`), event lines otherwise."""
    console = Console(stderr=True)
    return LiveView(console) if (console.is_terminal if live is None else live) else LogView()
