"""`blast export` / `blast import`: an experiment's runs in one portable file.

The file is JSON (gzip-compressed when its name ends in `.gz`):

    {"format": "blast-export", "version": 1,
     "experiments": [{"name", "recipe", "created"}],
     "runs": [{<every column of the runs table>, "metrics": [[step, frames, name, value], ...]}]}

It carries what a report needs and what says where a number came from: each run's resolved
config, `--set` overrides, commit and every metric row. Checkpoints and replay stay behind (they
are files on the machine that ran them), so an imported run can be reported, not resumed.

Import merges into any database. A run that is not there is added whole. A run that is there
with the same description keeps its rows; rows after its last stored step are appended when the
file holds more of the run, so importing the same file twice adds nothing. A run that is there
with a different description (config, env, rung, seed, preset, overrides, steps), or whose rows
disagree with the file's over the steps both hold, is an error that names it; nothing of that
file is written.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blast_core.store.engine import StoreError
from blast_core.store.states import ACTIVE
from blast_core.store.store import Store

FORMAT = "blast-export"
VERSION = 1
# The columns that say what a run is: an import of a run that differs in one of them is refused.
IDENTITY = ("experiment", "name", "env", "rung", "seed", "preset", "config", "overrides", "steps")
_DATES = ("heartbeat", "created", "started", "ended")

Row = tuple[int, int, str, float | None]  # `rows.Row`, whose value an export may hold as null


@dataclass(frozen=True)
class Imported:
    """What one import did."""

    added: list[str]
    """Runs that were new to the database."""
    extended: dict[str, int]
    """Runs already there that gained rows: run id -> rows appended."""
    unchanged: list[str]
    """Runs already there with every row the file holds."""

    @property
    def rows(self) -> int:
        return sum(self.extended.values())


def _date(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def export(store: Store, experiments: Iterable[str], path: str | Path) -> dict[str, int]:
    """Write the runs of `experiments` to `path`; returns {"runs": n, "metrics": rows}."""
    names = list(dict.fromkeys(experiments))
    known = {e["name"]: e for e in store.experiments()}
    missing = [n for n in names if n not in known]
    if missing:
        have = ", ".join(sorted(known)) or "none"
        raise StoreError(f"no experiment {', '.join(map(repr, missing))} in {store.shown_url}; "
                         f"experiments there: {have}")
    doc: dict[str, Any] = {"format": FORMAT, "version": VERSION, "experiments": [], "runs": []}
    rows = 0
    for name in names:
        exp = known[name]
        doc["experiments"].append(
            {"name": name, "recipe": exp["recipe"], "created": _date(exp["created"])})
        for run in store.runs(name):
            metrics = store.metric_rows(run["id"])
            rows += len(metrics)
            out = {k: (_date(v) if k in _DATES else v) for k, v in run.items()}
            out["metrics"] = [list(r) for r in metrics]
            doc["runs"].append(out)
    path = Path(path)
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    try:
        if path.suffix == ".gz":
            # mtime 0: the same runs give the same bytes, so a committed export diffs cleanly.
            with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb",
                                                          mtime=0) as f:
                f.write(text.encode())
        else:
            tmp.write_text(text)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {e.strerror or e}") from None
    return {"runs": len(doc["runs"]), "metrics": rows}


def read(path: str | Path) -> dict[str, Any]:
    """Load and check an export file; a file that is not one is a one-line error."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        doc = json.loads(text)
    except FileNotFoundError:
        raise StoreError(f"no export file {path}") from None
    except IsADirectoryError:
        raise StoreError(f"{path} is a directory, not an export file") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise StoreError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise StoreError(f"{path} is not a blast export file (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StoreError(f"{path} is not a blast export file")
    if doc.get("version") != VERSION:
        raise StoreError(f"{path} is a blast export of version {doc.get('version')!r}; this "
                         f"blast reads version {VERSION}")
    return doc


def _rows(run: dict[str, Any]) -> list[Row]:
    return [(int(s), int(f), str(n), None if v is None else float(v)) for s, f, n, v in
            run["metrics"]]


def _conflict(stored: dict[str, Any], run: dict[str, Any]) -> str | None:
    for key in IDENTITY:
        if stored.get(key) != run.get(key):
            return key
    return None


def _plan(store: Store, run: dict[str, Any], path: Path) -> tuple[str, list[Row]]:
    """("add" | "extend" | "same", rows to write) for one run of the file; raises on a clash."""
    rows = _rows(run)
    stored = store.run(run["id"])
    if stored is None:
        return "add", rows
    key = _conflict(stored, run)
    if key is not None:
        raise StoreError(f"run {run['id']} is already in the database with a different {key} "
                         f"than in {path}; nothing imported")
    have = store.metric_rows(run["id"])
    last = max((r[0] for r in have), default=-1)
    upto = min(last, max((r[0] for r in rows), default=-1))
    if Counter(r for r in have if r[0] <= upto) != Counter(r for r in rows if r[0] <= upto):
        raise StoreError(f"run {run['id']} is already in the database with different metric "
                         f"rows up to step {upto} than in {path}; nothing imported")
    new = [r for r in rows if r[0] > last]
    return ("extend" if new else "same"), new


def _run_values(run: dict[str, Any], path: Path) -> dict[str, Any]:
    values = {k: v for k, v in run.items() if k != "metrics"}
    for k in _DATES:
        if values.get(k) is not None:
            values[k] = dt.datetime.fromisoformat(values[k])
    if values.get("status") in ACTIVE:
        # The process that ran it is on another machine: here it is a finished part of a run.
        values["status"] = "interrupted"
        values["error"] = f"imported from {path.name} while {run['status']} elsewhere"
    return values


def import_file(store: Store, path: str | Path, doc: dict[str, Any] | None = None) -> Imported:
    """Merge an export file into `store` (see the module docstring). All or nothing per file.
    `doc`: the file as `read` returned it, when the caller has read it already."""
    path = Path(path)
    doc = read(path) if doc is None else doc
    plans = [(run, *_plan(store, run, path)) for run in doc["runs"]]
    added, extended, unchanged = [], {}, []
    recipes = {e["name"]: e.get("recipe") for e in doc["experiments"]}
    for name in {run["experiment"] for run in doc["runs"]} | set(recipes):
        store.ensure_experiment(name)
    store.import_runs([(_run_values(run, path), rows, kind == "add")
                       for run, kind, rows in plans if kind != "same"])
    for run, kind, rows in plans:
        if kind == "add":
            added.append(run["id"])
        elif kind == "extend":
            extended[run["id"]] = len(rows)
        else:
            unchanged.append(run["id"])
    for name, recipe in recipes.items():
        if recipe and not store.experiment_recipe(name):
            store.ensure_experiment(name, recipe)
    return Imported(added, extended, unchanged)
