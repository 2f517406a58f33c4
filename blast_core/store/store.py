"""`Store`: the run database's API (experiments, runs and their states, metrics, checkpoints).

Every method is one short transaction, safe to call from many processes at once (see engine.py).
Writers: each run process writes its own state, heartbeat, metrics and checkpoints; the scheduler
creates runs as `queued` and marks the ones whose process died as `crashed`.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from alembic.util import CommandError
from sqlalchemy import Connection, delete, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, DBAPIError

from blast_core.errors import DiskFull
from blast_core.store import gitinfo
from blast_core.store.engine import (
    StoreError,
    current_revision,
    head_revision,
    is_disk_full,
    make_engines,
    migrate,
    parse_url,
    retrying,
)
from blast_core.store.models import (
    Checkpoint,
    Experiment,
    Metric,
    Run,
    UTCDateTime,
    utcnow,
)
from blast_core.store.states import ACTIVE, STATUSES

if TYPE_CHECKING:
    import pandas as pd

TERMINAL = frozenset(STATUSES) - set(ACTIVE)
FRAME_COLUMNS = ["run_id", "experiment", "env", "rung", "seed", "preset", "step", "frames",
                 "name", "value"]


def _insert(conn: Connection, table: Any) -> Any:
    """INSERT that supports `on_conflict_do_nothing` on both backends."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _row(obj: Any) -> dict[str, Any]:
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns}


class Store:
    """A handle on the run database. Open it with `Store.open(url)`."""

    def __init__(self, url: str, reader: Any, writer: Any) -> None:
        self.url = url
        self._read = reader
        self._write = writer

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect, creating the database or upgrading an older schema in place."""
        reader, writer = make_engines(url)
        shown = make_url(url).render_as_string(hide_password=True)
        try:
            retrying(lambda: migrate(writer))
        except DatabaseError as e:  # not a database, a damaged file, no server, no permission
            first = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
            raise StoreError(f"cannot open the database {shown}: {first}") from None
        except CommandError:  # alembic does not know the database's schema revision
            raise StoreError(
                f"the database {shown} has a schema this blast does not know "
                f"(revision {current_revision(writer)!r}; this blast's newest is "
                f"{head_revision()!r}): it was written by a newer blast, so upgrade blast "
                "to use it") from None
        return cls(url, reader, writer)

    @classmethod
    def open_existing(cls, url: str) -> Store:
        """Open a database that must already exist: for commands that read runs or act on them
        (status, ls, cancel, resume, report), where a SQLite file that is not there means the
        wrong results root, not an empty database to create as a side effect."""
        parsed = parse_url(url)
        path = parsed.database
        if parsed.get_backend_name() == "sqlite" and path not in (None, "", ":memory:"):
            if not os.path.exists(os.path.expanduser(path)):
                raise StoreError(f"no run database at {path}: run something first, or point "
                                 "--results / --db at one")
        return cls.open(url)

    @property
    def shown_url(self) -> str:
        """The URL without its password, for messages."""
        return make_url(self.url).render_as_string(hide_password=True)

    def close(self) -> None:
        self._read.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------------

    def _tx(self, fn: Any) -> Any:
        """Run `fn(conn)` in one write transaction, retried on transient lock errors."""

        def attempt() -> Any:
            with self._write.begin() as conn:
                return fn(conn)

        try:
            return retrying(attempt)
        except DBAPIError as e:
            if is_disk_full(e):
                raise DiskFull(f"no space left for the database {self.shown_url}") from None
            raise

    def ensure_experiment(self, name: str, recipe: str | None = None) -> None:
        """Create the experiment if it is new; a recipe given replaces the stored one."""

        def write(conn: Connection) -> None:
            conn.execute(
                _insert(conn, Experiment)
                .values(name=name, recipe=recipe, created=utcnow())
                .on_conflict_do_nothing()
            )
            if recipe is not None:
                named = update(Experiment).where(Experiment.name == name)
                conn.execute(named.values(recipe=recipe))

        self._tx(write)

    def upsert_run(
        self,
        run_id: str,
        *,
        experiment: str,
        env: str,
        rung: str,
        seed: int,
        preset: str,
        config: dict | None,
        run_dir: str,
        overrides: dict[str, str] | None = None,
        steps: int | None = None,
    ) -> None:
        """Create the run as `queued` if it is new, else update its description (not its state).

        `overrides` and `steps` are the `--set` and `--steps` options as given; None keeps what is
        stored. The code's git commit and dirty flag are recorded each time.
        """
        if not run_id.startswith(f"{experiment}/") or run_id == f"{experiment}/":
            raise StoreError(f"run id {run_id!r} must be '{experiment}/<run name>'")
        commit, dirty = gitinfo.state()
        described = {"config": config, "run_dir": run_dir, "git_commit": commit, "git_dirty": dirty}
        if overrides is not None:
            described["overrides"] = dict(overrides)
        if steps is not None:
            described["steps"] = steps

        def write(conn: Connection) -> None:
            conn.execute(
                _insert(conn, Experiment)
                .values(name=experiment, created=utcnow())
                .on_conflict_do_nothing()
            )
            new = conn.execute(
                _insert(conn, Run)
                .values(id=run_id, experiment=experiment, name=run_id.split("/", 1)[1], env=env,
                        rung=rung, seed=seed, preset=preset, status="queued", step=0,
                        created=utcnow(), **described)
                .on_conflict_do_nothing()
            ).rowcount
            if not new:
                conn.execute(update(Run).where(Run.id == run_id).values(**described))

        self._tx(write)

    def set_status(
        self,
        run_id: str,
        status: str,
        *,
        error: str | None = None,
        pid: int | None = None,
        host: str | None = None,
        device: str | None = None,
        expect: Iterable[str] | None = None,
    ) -> bool:
        """Move a run to `status`; returns False when `expect` is given and the run is not in it.

        `running` stamps `started` (the first time) and the heartbeat, clears `ended` and the error,
        and records the calling process (pid, host) unless given. Any other state but `queued`
        stamps `ended`. `expect` makes the change conditional, atomically (crash detection uses
        it so that a run finishing at that moment keeps its own state).
        """
        if status not in STATUSES:
            raise StoreError(f"unknown run status {status!r}; valid: {', '.join(STATUSES)}")
        now = utcnow()
        values: dict[str, Any] = {"status": status, "error": error}
        if status == "running":
            first_start = func.coalesce(Run.started, literal(now, UTCDateTime()))
            values |= {"started": first_start, "heartbeat": now, "ended": None,
                       "pid": pid or os.getpid(), "host": host or socket.gethostname()}
        elif status in TERMINAL:
            values["ended"] = now
        if pid is not None:
            values["pid"] = pid
        if host is not None:
            values["host"] = host
        if device is not None:
            values["device"] = device
        query = update(Run).where(Run.id == run_id)
        if expect is not None:
            query = query.where(Run.status.in_(list(expect)))

        def write(conn: Connection) -> bool:
            changed = conn.execute(query.values(**values)).rowcount
            if not changed and conn.scalar(select(Run.id).where(Run.id == run_id)) is None:
                raise StoreError(f"unknown run {run_id!r}")
            return bool(changed)

        return self._tx(write)

    def heartbeat(self, run_id: str, step: int) -> None:
        """Record that the run is alive at agent step `step`."""
        self._tx(lambda c: c.execute(
            update(Run).where(Run.id == run_id).values(heartbeat=utcnow(), step=int(step))
        ))

    def append_metrics(self, run_id: str, rows: Sequence[tuple[int, int, str, float]]) -> None:
        """Append tidy rows (step, frames, name, value); non-finite values are stored as NULL."""
        if not rows:
            return
        values = [
            {"run_id": run_id, "step": int(step), "frames": int(frames), "name": str(name),
             "value": float(value) if math.isfinite(float(value)) else None}
            for step, frames, name, value in rows
        ]
        self._tx(lambda c: c.execute(_insert(c, Metric), values))

    def truncate_metrics(self, run_id: str, after_step: int) -> int:
        """Delete the run's metric rows with step > after_step (a resume rewrites them)."""
        query = delete(Metric).where(Metric.run_id == run_id, Metric.step > int(after_step))
        return self._tx(lambda c: c.execute(query).rowcount)

    def count_launch(self, run_id: str) -> None:
        """Count one more process started for the run (the scheduler calls it per launch)."""
        self._tx(lambda c: c.execute(
            update(Run).where(Run.id == run_id).values(launches=Run.launches + 1)
        ))

    def set_slurm_job(self, run_ids: Sequence[str], job: str) -> None:
        """Record the SLURM job that runs these runs now (a pack's job sets it when it starts)."""
        self._tx(lambda c: c.execute(
            update(Run).where(Run.id.in_(list(run_ids))).values(slurm_job=job)
        ))

    def add_checkpoint(self, run_id: str, step: int, path: str) -> None:
        """Record a checkpoint file written at agent step `step`."""
        self._tx(lambda c: c.execute(
            _insert(c, Checkpoint).values(run_id=run_id, step=int(step), path=str(path),
                                          created=utcnow())
        ))

    def import_runs(self, runs: Sequence[tuple[dict[str, Any], Sequence[tuple], bool]]) -> None:
        """Write imported runs in one transaction: (run row, metric rows, new). A new run is
        inserted whole; a run already there takes the file's state and gains the rows given."""
        state = ("status", "step", "heartbeat", "ended", "error")

        def write(conn: Connection) -> None:
            for values, rows, new in runs:
                if new:
                    conn.execute(_insert(conn, Run).values(**values))
                else:
                    conn.execute(update(Run).where(Run.id == values["id"])
                                 .values(**{k: values[k] for k in state}))
                if rows:
                    conn.execute(_insert(conn, Metric), [
                        {"run_id": values["id"], "step": s, "frames": f, "name": n, "value": v}
                        for s, f, n, v in rows])

        self._tx(write)

    # --- reading ---------------------------------------------------------------------------------

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run's row as a dict, or None."""
        with self._read.connect() as conn:
            row = conn.execute(select(Run).where(Run.id == run_id)).mappings().first()
        return dict(row) if row else None

    def runs(self, experiment: str | None = None) -> list[dict[str, Any]]:
        """Every run (of one experiment), ordered by id."""
        query = select(Run).order_by(Run.id)
        if experiment is not None:
            query = query.where(Run.experiment == experiment)
        with self._read.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def experiments(self) -> list[dict[str, Any]]:
        """Every experiment with `counts`: the number of its runs in each state."""
        with self._read.connect() as conn:
            exps = [dict(r) for r in conn.execute(
                select(Experiment).order_by(Experiment.created, Experiment.name)).mappings()]
            counts = conn.execute(
                select(Run.experiment, Run.status, func.count()).group_by(Run.experiment,
                                                                          Run.status)
            ).all()
        for exp in exps:
            exp["counts"] = {s: n for e, s, n in counts if e == exp["name"]}
        return exps

    def experiment_recipe(self, name: str) -> str | None:
        """The recipe text stored with an experiment (None: none, or no such experiment)."""
        with self._read.connect() as conn:
            return conn.scalar(select(Experiment.recipe).where(Experiment.name == name))

    def metric_rows(self, run_id: str) -> list[tuple[int, int, str, float | None]]:
        """Every metric row of one run as (step, frames, name, value), in insertion order."""
        query = (select(Metric.step, Metric.frames, Metric.name, Metric.value)
                 .where(Metric.run_id == run_id).order_by(Metric.id))
        with self._read.connect() as conn:
            return [(int(s), int(f), n, v) for s, f, n, v in conn.execute(query)]

    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        """The run's recorded checkpoints, oldest first."""
        query = select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.id)
        with self._read.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def metrics_frame(
        self, experiment: str | None = None, names: list[str] | None = None
    ) -> pd.DataFrame:
        """Tidy metric rows joined with their run's description (columns: FRAME_COLUMNS)."""
        query = (
            select(Metric.run_id, Run.experiment, Run.env, Run.rung, Run.seed, Run.preset,
                   Metric.step, Metric.frames, Metric.name, Metric.value)
            .join(Run, Run.id == Metric.run_id)
            .order_by(Metric.run_id, Metric.name, Metric.step, Metric.id)
        )
        if experiment is not None:
            query = query.where(Run.experiment == experiment)
        if names is not None:
            query = query.where(Metric.name.in_(names))
        import pandas as pd  # only the reports need it; run processes start faster without

        with self._read.connect() as conn:
            rows = conn.execute(query).all()
        frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
        frame["value"] = frame["value"].astype(float)  # NULL -> NaN
        return frame

    def metric_totals(
        self, names: Sequence[str], experiment: str | None = None
    ) -> dict[str, dict[str, float]]:
        """{run_id: {name: the sum of the run's finite rows of that metric}} (the time a run's
        loop spent per phase: a resume drops the rows after its checkpoint, so nothing counts
        twice)."""
        query = (select(Metric.run_id, Metric.name, func.sum(Metric.value))
                 .where(Metric.name.in_(list(names))).group_by(Metric.run_id, Metric.name))
        if experiment is not None:
            query = query.join(Run, Run.id == Metric.run_id).where(Run.experiment == experiment)
        out: dict[str, dict[str, float]] = {}
        with self._read.connect() as conn:
            for run_id, name, total in conn.execute(query):
                if total is not None:  # NULL: every row of it was non-finite
                    out.setdefault(run_id, {})[name] = float(total)
        return out

    def recent_metric(
        self, name: str, count: int, experiment: str | None = None
    ) -> dict[str, list[tuple[int, float]]]:
        """{run_id: (step, value) of the run's last `count` finite rows of metric `name`, newest
        first} (a running run's last few speed windows, which one window alone swings with the
        machine's load)."""
        recent = select(Metric.run_id, Metric.step, Metric.value, func.row_number().over(
            partition_by=Metric.run_id, order_by=Metric.step.desc()).label("age")).where(
            Metric.name == name, Metric.value.is_not(None))
        if experiment is not None:
            recent = recent.join(Run, Run.id == Metric.run_id).where(Run.experiment == experiment)
        recent = recent.subquery()
        query = (select(recent.c.run_id, recent.c.step, recent.c.value)
                 .where(recent.c.age <= count).order_by(recent.c.run_id, recent.c.age))
        out: dict[str, list[tuple[int, float]]] = {}
        with self._read.connect() as conn:
            for run_id, step, value in conn.execute(query):
                out.setdefault(run_id, []).append((int(step), float(value)))
        return out

    def latest_metrics(
        self, names: Sequence[str], experiment: str | None = None
    ) -> dict[str, dict[str, float | None]]:
        """{run_id: {name: value at the run's last step with that metric}} for the live table."""
        last = (
            select(Metric.run_id, Metric.name, func.max(Metric.step).label("step"))
            .where(Metric.name.in_(list(names)))
            .group_by(Metric.run_id, Metric.name)
        )
        if experiment is not None:
            last = last.join(Run, Run.id == Metric.run_id).where(Run.experiment == experiment)
        last = last.subquery()
        query = select(Metric.run_id, Metric.name, Metric.value).join(
            last, (Metric.run_id == last.c.run_id) & (Metric.name == last.c.name)
            & (Metric.step == last.c.step)
        ).order_by(Metric.id)
        out: dict[str, dict[str, float | None]] = {}
        with self._read.connect() as conn:
            for run_id, name, value in conn.execute(query):
                out.setdefault(run_id, {})[name] = value
        return out
