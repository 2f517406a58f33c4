"""Crash detection: a `running` run whose process is gone becomes `crashed`.

On the run's own host the evidence is its lock file: `blast run` holds an flock on
`<run dir>/lock` while it runs and the kernel releases it when the process dies, even on SIGKILL
(a pid alone could have been reused). On another host (a SLURM node) the evidence is a heartbeat
older than `stale_after` seconds.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from blast_core.store import Store


STALE_AFTER_S = 1800.0
"""Default heartbeat age that marks a run on another host crashed. Runs heartbeat every
`log_every` steps; at the paper's sizes on a slow GPU that can be many minutes apart."""


def lock_held(run_dir: Path) -> bool | None:
    """Whether some process holds the run's lock; None when there is no lock file."""
    path = Path(run_dir) / "lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return True
        raise
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def why_dead(row: dict[str, Any], now: dt.datetime, stale_after: float) -> str | None:
    """Why a `running` run is not running any more, or None if it may be alive."""
    if row["host"] == socket.gethostname():
        held = lock_held(Path(row["run_dir"])) if row["run_dir"] else None
        alive = pid_alive(row["pid"]) if held is None else held
        return None if alive else f"its process (pid {row['pid']}) is gone"
    beat = row["heartbeat"] or row["started"]
    if beat is None or (now - beat).total_seconds() > stale_after:
        return f"no heartbeat from {row['host']} for over {stale_after:.0f} s"
    return None


def mark_crashed(
    store: Store, experiment: str | None = None, stale_after: float = STALE_AFTER_S
) -> list[str]:
    """Mark every dead `running` run crashed; returns their ids. A run that changes state in the
    meantime (it just finished) keeps its own state: the update expects `running`."""
    now = dt.datetime.now(dt.UTC)
    crashed = []
    for row in store.runs(experiment):
        if row["status"] != "running":
            continue
        reason = why_dead(row, now, stale_after)
        if reason and store.set_status(row["id"], "crashed", error=f"crashed: {reason}",
                                       expect=["running"]):
            crashed.append(row["id"])
    return crashed
