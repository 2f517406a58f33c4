"""`blast export` / `blast import` on real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from blast_core.store import Store, StoreError, portable

RUN = "fig/minigrid.unmodified__dv2__cpu__s{}"


def fill(store: Store, seeds: int = 2, last: int = 2500, experiment: str = "fig") -> list[str]:
    """Runs with eval rows every 500 steps (one of them non-finite), like a training run's."""
    ids = []
    for seed in range(seeds):
        run_id = RUN.format(seed).replace("fig/", f"{experiment}/")
        store.upsert_run(run_id, experiment=experiment, env="minigrid:unmodified", rung="dv2",
                         seed=seed, preset="cpu", config={"seed": seed, "rssm": {"stoch": 8}},
                         run_dir=f"/elsewhere/{run_id}", overrides={"rssm.stoch": "8"})
        store.set_status(run_id, "running")
        rows = [(s, s, name, 0.5 * seed + s / 1000) for s in range(500, last + 1, 500)
                for name in ("eval_score", "kl")]
        rows.append((last, last, "model_loss", float("nan")))
        store.append_metrics(run_id, rows)
        store.heartbeat(run_id, last)
        ids.append(run_id)
    store.set_status(ids[0], "done")
    return ids


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'target' / 'blast.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def source(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'source' / 'blast.db'}")


def test_an_import_holds_every_run_and_row_and_a_second_one_adds_nothing(
        source: Store, target: str, tmp_path: Path) -> None:
    ids = fill(source)
    path = tmp_path / "fig.blast.json.gz"
    assert portable.export(source, ["fig"], path) == {"runs": 2, "metrics": 22}
    with Store.open(target) as store:
        first = portable.import_file(store, path)
        assert first.added == ids and not first.extended and not first.unchanged
        for run_id in ids:
            assert store.metric_rows(run_id) == source.metric_rows(run_id)
            mine, theirs = store.run(run_id), source.run(run_id)
            for key in ("config", "overrides", "git_commit", "env", "seed", "step", "started"):
                assert mine[key] == theirs[key], key
        assert store.run(ids[0])["status"] == "done"
        # Running elsewhere when exported: here no process holds it.
        assert store.run(ids[1])["status"] == "interrupted"
        assert "while running elsewhere" in store.run(ids[1])["error"]
        second = portable.import_file(store, path)
        assert second.unchanged == ids and not second.added and second.rows == 0
        assert [len(store.metric_rows(r)) for r in ids] == [11, 11]
        frame = store.metrics_frame("fig")
        assert frame["value"].isna().sum() == 2  # the non-finite rows stay NULL


def test_a_later_export_of_a_run_appends_only_its_new_rows(source: Store, target: str,
                                                           tmp_path: Path) -> None:
    ids = fill(source, seeds=1, last=1000)
    early, late = tmp_path / "early.json", tmp_path / "late.json"
    portable.export(source, ["fig"], early)
    source.append_metrics(ids[0], [(1500, 1500, "eval_score", 2.0), (2000, 2000, "kl", 3.0)])
    source.heartbeat(ids[0], 2000)
    portable.export(source, ["fig"], late)
    with Store.open(target) as store:
        portable.import_file(store, early)
        done = portable.import_file(store, late)
        assert done.extended == {ids[0]: 2}
        assert store.metric_rows(ids[0]) == source.metric_rows(ids[0])
        assert store.run(ids[0])["step"] == 2000
        assert portable.import_file(store, early).unchanged == ids  # older file: nothing


def test_a_run_there_with_another_config_is_an_error_naming_it_and_nothing_is_written(
        source: Store, target: str, tmp_path: Path) -> None:
    ids = fill(source, seeds=2)
    path = tmp_path / "fig.json"
    portable.export(source, ["fig"], path)
    with Store.open(target) as store:
        store.upsert_run(ids[1], experiment="fig", env="minigrid:unmodified", rung="dv2", seed=1,
                         preset="cpu", config={"seed": 1, "rssm": {"stoch": 16}},
                         run_dir="/here", overrides={"rssm.stoch": "8"})
        with pytest.raises(StoreError, match=rf"run {ids[1]} .* different config"):
            portable.import_file(store, path)
        assert store.run(ids[0]) is None  # all or nothing: the other run is not there either
        assert store.metric_rows(ids[1]) == []


def test_a_run_there_with_other_rows_is_an_error(source: Store, target: str,
                                                 tmp_path: Path) -> None:
    ids = fill(source, seeds=1)
    path = tmp_path / "fig.json"
    portable.export(source, ["fig"], path)
    with Store.open(target) as store:
        portable.import_file(store, path)
        doc = json.loads(path.read_text())
        doc["runs"][0]["metrics"][0][3] = 99.0
        path.write_text(json.dumps(doc))
        with pytest.raises(StoreError, match=rf"run {ids[0]} .* different metric rows"):
            portable.import_file(store, path)


def test_export_from_postgres_imports_into_sqlite(pg_url: str, tmp_path: Path) -> None:
    with Store.open(pg_url) as pg:
        ids = fill(pg, seeds=1)
        portable.export(pg, ["fig"], tmp_path / "pg.json.gz")
        with Store.open(f"sqlite:///{tmp_path / 'lite.db'}") as lite:
            assert portable.import_file(lite, tmp_path / "pg.json.gz").added == ids
            assert lite.metric_rows(ids[0]) == pg.metric_rows(ids[0])


def test_the_same_runs_export_to_the_same_bytes(source: Store, tmp_path: Path) -> None:
    fill(source)
    portable.export(source, ["fig"], tmp_path / "a.json.gz")
    portable.export(source, ["fig"], tmp_path / "b.json.gz")
    assert (tmp_path / "a.json.gz").read_bytes() == (tmp_path / "b.json.gz").read_bytes()
    assert json.loads(gzip.decompress((tmp_path / "a.json.gz").read_bytes()))["version"] == 1


def blast(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blast_cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_the_cli_exports_imports_and_reports_the_same_figure(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    with Store.open(f"sqlite:///{src / 'blast.db'}") as store:
        fill(store, seeds=3)
    out = tmp_path / "fig.blast.json.gz"
    done = blast("export", "--experiment", "fig", "--out", str(out), "--results", str(src))
    assert done.returncode == 0, done.stderr
    assert "exported 3 runs, 33 metric rows" in done.stdout
    done = blast("import", str(out), "--results", str(dst))
    assert done.returncode == 0, done.stderr
    assert "3 runs added" in done.stdout
    assert "3 already there" in blast("import", str(out), "--results", str(dst)).stdout
    for root in (src, dst):
        made = blast("report", "--figure", "3", "--experiment", "fig", "--results", str(root))
        assert made.returncode == 0, made.stderr
    drawn = [next((root / "reports" / "fig").glob("figure3*.csv")).read_text()
             for root in (src, dst)]
    assert drawn[0] == drawn[1] and "minigrid:unmodified" in drawn[0]


@pytest.mark.parametrize("content, message", [
    (b"\x00\xffgarbage", "not a blast export file"),
    (b'{"format": "other"}', "not a blast export file"),
    (b'{"format": "blast-export", "version": 7}', "version 7"),
])
def test_a_file_that_is_not_an_export_is_one_line_and_writes_nothing(
        tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    done = blast("import", str(bad), "--results", str(tmp_path / "r"))
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "blast.db").exists()


def test_exporting_an_unknown_experiment_names_the_ones_there(source: Store,
                                                             tmp_path: Path) -> None:
    fill(source)
    with pytest.raises(StoreError, match="no experiment 'nope'.*experiments there: fig"):
        portable.export(source, ["nope"], tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "results" / "figure3-cpu"


def test_the_committed_figure3_exports_redraw_the_committed_numbers(tmp_path: Path) -> None:
    """docs/results/figure3-cpu is what the reduced Figure 3 says: its export, imported into a
    fresh database, must give the committed per-run scores and the figures' numbers exactly
    (the two commands of docs/results.md)."""
    export = COMMITTED / "figure3-cpu-v2.blast.json.gz"
    done = blast("import", str(export), "--results", str(tmp_path))
    assert done.returncode == 0, done.stderr
    for figure in ("3", "6"):
        made = blast("report", "--figure", figure, "--experiment", "figure3-cpu-v2", "--rungs",
                     "dv2,bn,ar_prior", "--done", "--results", str(tmp_path))
        assert made.returncode == 0, made.stderr
    drawn = tmp_path / "reports" / "figure3-cpu-v2"
    assert (drawn / "figure3-runs.csv").read_text() == (COMMITTED / "scores.csv").read_text()
    for name in ("figure3.csv", "figure6.csv"):
        assert (drawn / name).read_text() == (COMMITTED / name).read_text(), name
