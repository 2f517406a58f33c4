"""What a live view shows of some runs, read from the store: their rows, latest metrics and the
run time they have left. The local scheduler refreshes it between launches; the SLURM path while
it waits on its jobs (where each run's slot is its job)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from blast_core.scheduling import eta

if TYPE_CHECKING:
    from blast_core.scheduling.view import View
    from blast_core.store import Store

SHOWN = ["eval_score", eta.SPEED, "peak_mem_mb"]
"""The latest metrics a view shows per run."""


class Watch:
    """Refreshes a view with runs `run_ids` as the store has them."""

    def __init__(self, store: Store, run_ids: list[str], left_every_s: float = 30.0) -> None:
        self.store, self.run_ids = store, set(run_ids)
        self.left_every_s = left_every_s
        """The loop's time rows come every log interval and the sums read every one of a run's:
        the time left is recomputed at most this often."""
        self._left: tuple[float, eta.Left] | None = None

    def rows(self) -> list[dict]:
        return [r for r in self.store.runs() if r["id"] in self.run_ids]

    def refresh(self, view: View, where: dict[str, str], last: bool = False,
                rows: list[dict] | None = None) -> None:
        """Show the runs (`rows`, read now when None); `where` names each active run's slot. The
        `last` refresh, once the runs have stopped, recomputes the time left."""
        rows = self.rows() if rows is None else rows
        recent: dict[str, list[tuple[int, float]]] = {}
        for name in {r["experiment"] for r in rows}:
            recent.update(self.store.recent_metric(eta.SPEED, eta.RECENT, experiment=name))
        latest = eta.steady(rows, self.store.latest_metrics(SHOWN), recent)
        view.refresh(rows, latest, where, self.left(rows, latest, fresh=last))

    def left(self, rows: list[dict], latest: dict[str, dict], fresh: bool = False) -> eta.Left:
        """The run time `rows` have left, paced by every run of their experiments (recomputed
        when `fresh` or older than `left_every_s`)."""
        if (fresh or self._left is None
                or time.monotonic() - self._left[0] >= self.left_every_s):
            experiments = {r["experiment"] for r in rows}
            timed = [r for r in self.store.runs() if r["experiment"] in experiments]
            totals = {}
            for name in experiments:
                totals.update(self.store.metric_totals(eta.TIME_METRICS, experiment=name))
            self._left = (time.monotonic(), eta.estimate(rows, totals, latest, timed))
        return self._left[1]
