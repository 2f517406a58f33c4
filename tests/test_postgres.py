"""The run database and the tiny ladder on a real PostgreSQL server (the team set-up).

The server comes from conftest.py's `postgres_server` fixture (Debian's postgresql binaries).
"""

from __future__ import annotations

from pathlib import Path

from ladder_helpers import ladder_end_to_end
from test_store import add_run, run_writers

from blast_core.store import Store
from blast_core.store.engine import current_revision, head_revision


def test_store_api_on_postgres(pg_url: str) -> None:
    store = Store.open(pg_url)
    assert current_revision(store._write) == head_revision()
    run = add_run(store, overrides={"rssm.stoch": "8"}, steps=300)
    store.set_status(run, "running", device="cuda:0")
    store.heartbeat(run, 50)
    store.append_metrics(run, [(50, 50, "eval_score", 1.5), (50, 50, "kl", float("inf"))])
    store.add_checkpoint(run, 50, "/r/ckpt-50.pt")
    assert store.latest_metrics(["eval_score", "kl"]) == {run: {"eval_score": 1.5, "kl": None}}
    store.append_metrics(run, [(s, s, "time_update_s", s / 10) for s in (10, 20)])
    assert store.metric_totals(["time_update_s", "kl"], experiment="exp") == {
        run: {"time_update_s": 3.0}}  # kl's one row is non-finite: stored NULL, no sum
    assert store.recent_metric("time_update_s", 1, experiment="exp") == {run: [(20, 2.0)]}
    assert not store.set_status(run, "crashed", expect=["queued"])
    assert store.truncate_metrics(run, after_step=0) == 4
    store.set_status(run, "done")
    row = store.run(run)
    assert row["status"] == "done" and row["step"] == 50 and row["ended"] >= row["started"]
    assert row["overrides"] == {"rssm.stoch": "8"} and row["device"] == "cuda:0"
    assert Store.open(pg_url).experiments()[0]["counts"] == {"done": 1}


def test_sixteen_writers_on_postgres_lose_no_row(pg_url: str) -> None:
    run_writers(pg_url, n=16, seconds=5)


def test_tiny_ladder_on_postgres(tmp_path: Path, pg_url: str) -> None:
    # What PostgreSQL changes is the database, not the rungs: two of them (the SQLite twin in
    # test_ladder.py runs every rung).
    ladder_end_to_end(tmp_path / "results", pg_url, rungs=("dv2", "ar_prior"))
