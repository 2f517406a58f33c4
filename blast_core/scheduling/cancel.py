"""`blast cancel`: stop runs and mark them cancelled in the store."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blast_core.errors import BlastError
from blast_core.scheduling.crash import lock_held, pid_alive

if TYPE_CHECKING:
    from blast_core.store import Store


def cancel(store: Store, run_ids: list[str], grace_s: float = 120.0) -> dict[str, str]:
    """Cancel runs: a running one on this host is stopped first (SIGTERM: it checkpoints; SIGKILL
    after `grace_s`), so it cannot overwrite `cancelled` on its way out. Returns what happened."""
    out = {}
    for run_id in run_ids:
        run = store.run(run_id)
        if run is None:
            raise BlastError(f"unknown run {run_id!r}")
        if run["status"] in ("done", "cancelled"):
            out[run_id] = f"already {run['status']}"
            continue
        note = "cancelled"
        if run["status"] == "running":
            if run["host"] == socket.gethostname():
                _stop_process(run, grace_s)
            else:
                note = f"cancelled (its process on {run['host']} was not signalled)"
        store.set_status(run_id, "cancelled", error="cancelled by the user")
        out[run_id] = note
    return out


def _stop_process(run: dict[str, Any], grace_s: float) -> None:
    def alive() -> bool:
        held = lock_held(Path(run["run_dir"])) if run["run_dir"] else None
        return pid_alive(run["pid"]) if held is None else held

    def send(signum: int) -> None:
        try:
            os.kill(run["pid"], signum)
        except ProcessLookupError:
            pass

    if not alive():
        return
    send(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive():
        send(signal.SIGKILL)
