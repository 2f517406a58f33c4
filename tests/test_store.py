"""The run database on real SQLite files: the Store API, migrations, and many concurrent writers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from blast_core.store import Store, StoreError, db_url
from blast_core.store import engine as E
from blast_core.store.engine import current_revision, head_revision, make_engines, migrate


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'results' / 'blast.db'}"


def add_run(store: Store, run_id: str = "exp/minigrid.unmodified__dv2__tiny__s0", **kw) -> str:
    experiment = run_id.split("/")[0]
    fields = dict(experiment=experiment, env="minigrid:unmodified", rung="dv2", seed=0,
                  preset="tiny", config={"seed": 0}, run_dir=f"/r/{run_id}")
    store.upsert_run(run_id, **(fields | kw))
    return run_id


def test_open_creates_the_schema_at_head_in_a_new_folder(url: str) -> None:
    store = Store.open(url)
    assert current_revision(store._write) == head_revision()
    assert store.runs() == [] and store.experiments() == []
    Store.open(url)  # a second open finds it current and changes nothing


def test_an_older_schema_is_upgraded_in_place_keeping_its_rows(url: str) -> None:
    # A results folder written by the first schema (before runs.launches existed).
    _, writer = make_engines(url)
    migrate(writer, "0001")
    assert current_revision(writer) == "0001"
    with writer.begin() as conn:
        conn.exec_driver_sql("INSERT INTO experiments (name, created) VALUES ('old', "
                             "'2026-01-01 00:00:00')")
        conn.exec_driver_sql(
            "INSERT INTO runs (id, experiment, name, env, rung, seed, preset, status, step, "
            "created) VALUES ('old/r', 'old', 'r', 'minigrid:unmodified', 'dv2', 0, 'tiny', "
            "'done', 400, '2026-01-01 00:00:00')")
    writer.dispose()
    store = Store.open(url)
    assert current_revision(store._write) == head_revision() != "0001"
    (row,) = store.runs("old")
    assert row["status"] == "done" and row["step"] == 400 and row["launches"] == 0
    store.count_launch("old/r")
    assert store.run("old/r")["launches"] == 1


def test_run_lifecycle_states_and_stamps(url: str) -> None:
    store = Store.open(url)
    store.ensure_experiment("exp", recipe="envs: [minigrid:unmodified]\n")
    run = add_run(store, overrides={"rssm.stoch": "8"}, steps=300)
    row = store.run(run)
    assert row["status"] == "queued" and row["step"] == 0 and row["started"] is None
    assert row["overrides"] == {"rssm.stoch": "8"} and row["steps"] == 300
    assert row["git_commit"] and row["git_dirty"] in (True, False)

    store.set_status(run, "running", device="cpu")
    row = store.run(run)
    assert row["status"] == "running" and row["pid"] and row["host"] and row["device"] == "cpu"
    started = row["started"]
    store.heartbeat(run, 120)
    assert store.run(run)["step"] == 120
    store.set_status(run, "interrupted")
    assert store.run(run)["ended"] is not None
    store.set_status(run, "running")
    row = store.run(run)
    assert row["started"] == started, "started keeps the first start"
    assert row["ended"] is None
    store.set_status(run, "failed", error="loss is NaN")
    assert store.run(run)["error"] == "loss is NaN"

    # A second upsert (the run process re-describing itself) keeps state and stored options.
    add_run(store, config={"seed": 0, "x": 1})
    row = store.run(run)
    assert row["status"] == "failed" and row["overrides"] == {"rssm.stoch": "8"}
    assert row["config"] == {"seed": 0, "x": 1}
    assert store.experiments()[0]["recipe"].startswith("envs:")
    assert store.experiments()[0]["counts"] == {"failed": 1}


def test_conditional_status_change_and_bad_input(url: str) -> None:
    store = Store.open(url)
    run = add_run(store)
    store.set_status(run, "running")
    assert not store.set_status(run, "crashed", expect=["queued"])
    assert store.run(run)["status"] == "running"
    assert store.set_status(run, "crashed", expect=["running"], error="process died")
    assert store.run(run)["status"] == "crashed"
    with pytest.raises(StoreError, match="unknown run status"):
        store.set_status(run, "paused")
    with pytest.raises(StoreError, match="unknown run"):
        store.set_status("exp/nope", "done")
    with pytest.raises(StoreError, match="must be"):
        add_run(store, run_id="other/x", experiment="exp")


def test_metrics_truncate_latest_and_frame(url: str) -> None:
    store = Store.open(url)
    a = add_run(store, "exp/a")
    b = add_run(store, "exp/b", rung="ar_prior", seed=1)
    store.append_metrics(a, [(s, s, "eval_score", s / 100) for s in (100, 200, 300)])
    store.append_metrics(a, [(300, 300, "model_loss", float("nan"))])
    store.append_metrics(b, [(100, 100, "eval_score", -1.0)])
    store.add_checkpoint(a, 200, "/r/a/ckpt-200.pt")

    latest = store.latest_metrics(["eval_score", "model_loss"], experiment="exp")
    assert latest == {a: {"eval_score": 3.0, "model_loss": None}, b: {"eval_score": -1.0}}

    assert store.metric_totals(["eval_score"], experiment="exp") == {
        a: {"eval_score": 6.0}, b: {"eval_score": -1.0}}
    assert store.recent_metric("eval_score", 2, experiment="exp") == {
        a: [(300, 3.0), (200, 2.0)], b: [(100, -1.0)]}  # newest first; b has only one
    assert store.recent_metric("model_loss", 5) == {}  # its one row is non-finite
    assert store.truncate_metrics(a, after_step=200) == 2
    assert store.metric_totals(["eval_score", "model_loss"])[a] == {"eval_score": 3.0}
    frame = store.metrics_frame("exp", names=["eval_score"])
    assert list(frame.columns) == ["run_id", "experiment", "env", "rung", "seed", "preset",
                                   "step", "frames", "name", "value"]
    assert frame[frame.run_id == a].step.tolist() == [100, 200]
    assert frame[frame.run_id == b].rung.tolist() == ["ar_prior"]
    assert store.checkpoints(a)[0]["step"] == 200
    assert store.metrics_frame("other").empty


def test_bad_database_urls_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="bad database URL"):
        Store.open("not a url")
    with pytest.raises(StoreError, match="unsupported database"):
        Store.open("mysql://x/y")
    with pytest.raises(StoreError, match="cannot open the database"):
        Store.open("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_sqlite_uses_wal_locally_and_the_rollback_journal_on_a_network_filesystem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    mounts = ("/dev/sda1 / ext4 rw 0 0\nserver:/home /home nfs4 rw 0 0\n"
              "/dev/sdb1 /home/me/fast\\040disk xfs rw 0 0\n")
    assert E.filesystem(Path("/home/me/results"), mounts) == "nfs4"
    assert E.filesystem(Path("/home/me/fast disk/results"), mounts) == "xfs"
    assert E.filesystem(Path("/homework"), mounts) == "ext4"  # a prefix, not a parent
    assert E.filesystem(tmp_path) not in E.NETWORK_FS  # this machine: a local disk

    def mode(store: Store) -> str:
        with store._write.connect() as conn:
            return conn.exec_driver_sql("PRAGMA journal_mode").scalar()

    assert mode(Store.open(f"sqlite:///{tmp_path / 'local' / 'blast.db'}")) == "wal"
    assert capsys.readouterr().err == ""
    # No NFS mount here: the lookup stands in for one.
    monkeypatch.setattr(E, "filesystem", lambda path, mounts=None: "nfs4")
    for _ in range(2):
        store = Store.open(f"sqlite:///{tmp_path / 'nfs' / 'blast.db'}")
        add_run(store)
        assert mode(store) == "delete" and store.run(add_run(store))["status"] == "queued"
    err = capsys.readouterr().err
    assert err.count("warning: the SQLite database") == 1 and "PostgreSQL --db" in err


def test_db_url_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BLAST_DB", raising=False)
    monkeypatch.setenv("BLAST_RESULTS", str(tmp_path / "r"))
    assert db_url() == f"sqlite:///{tmp_path / 'r' / 'blast.db'}"
    assert db_url(results=tmp_path / "q").endswith("q/blast.db")
    monkeypatch.setenv("BLAST_DB", "postgresql+psycopg://h/db")
    assert db_url() == "postgresql+psycopg://h/db"
    assert db_url("sqlite:///x.db") == "sqlite:///x.db"


# One writer process: the write pattern of a run (state, heartbeats, metric batches), as fast as it
# can for `seconds`, then it prints how many metric rows it committed.
WRITER = textwrap.dedent("""
    import sys, time
    from blast_core.store import Store
    url, run, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    store = Store.open(url)
    store.upsert_run(run, experiment="load", env="minigrid:unmodified", rung="dv2", seed=0,
                     preset="tiny", config={}, run_dir="/r")
    store.set_status(run, "running")
    rows, step, end = 0, 0, time.time() + seconds
    while time.time() < end:
        step += 1
        batch = [(step, step, f"m{i}", float(step)) for i in range(20)]
        store.append_metrics(run, batch)
        rows += len(batch)
        store.heartbeat(run, step)
        if step % 25 == 0:
            store.add_checkpoint(run, step, f"/r/{step}.pt")
            store.latest_metrics(["m0"], experiment="load")
    store.set_status(run, "done")
    print(rows)
""")


def run_writers(url: str, n: int, seconds: float) -> None:
    """Start n writer processes at once; every committed row must be in the database."""
    Store.open(url)  # create the schema first; concurrent first opens are tested separately
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, url, f"load/w{i}", str(seconds)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(n)
    ]
    results = [p.communicate(timeout=seconds + 240) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-2000:]
    store = Store.open(url)
    counts = store.metrics_frame("load").groupby("run_id").size().to_dict()
    for i, (out, _) in enumerate(results):
        written = int(out.strip())
        assert written > 0
        assert counts[f"load/w{i}"] == written
    assert {r["status"] for r in store.runs("load")} == {"done"}


def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'blast.db'}"
    code = "import sys; from blast_core.store import Store; Store.open(sys.argv[1]); print('ok')"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
    assert json.dumps(Store.open(url).runs()) == "[]"


def test_sixteen_writers_for_20_seconds_lose_no_row(tmp_path: Path) -> None:
    run_writers(f"sqlite:///{tmp_path / 'blast.db'}", n=16, seconds=20)
