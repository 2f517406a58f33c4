"""Bad input to a command that starts work is one line, exit code 2, before anything is written:
the results root and the database are as they were (issue 22's cases, table-driven)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from ladder_helpers import ENVS, TINY, blast_here, dump
from sqlalchemy import create_engine, text

from blast_core.store import Store

RUN = ["run", "--rung", "dv2", "--seed", "0", "--preset", "tiny", "--steps", "100"]

# name -> (arguments after `blast`, with {dir}, {text}, {junk}, {bad_db}, {newer_db}, {file},
# {results} and {db} filled in; what the one error line must say). Without --results or --db,
# the case gets the prepared results root and its database.
CASES: dict[str, tuple[list[str], str]] = {
    "negative size": ([*RUN, "--env", ENVS[0], "--set", "rssm.stoch=-1"],
                      "rssm.stoch=-1 is out of range: it must be > 0"),
    "discount above 1": ([*RUN, "--env", ENVS[0], "--set", "discount=1.5"],
                         "discount=1.5 is out of range: it must lie in (0, 1]"),
    "zero learning rate": ([*RUN, "--env", ENVS[0], "--set", "model_opt.lr=0"],
                           "model_opt.lr=0.0 is out of range"),
    "no kernels": ([*RUN, "--env", ENVS[0], "--set", "encoder.kernels=[]"],
                   "encoder.kernels=[]"),
    "unknown dmc task": ([*RUN, "--env", "dmc:walker_nope"], "unknown env id 'dmc:walker_nope'"),
    "video is a folder": ([*RUN, "--env", "minigrid:video", "--set", "env.video={dir}"],
                          "is a folder, not a video file"),
    "video is text": ([*RUN, "--env", "minigrid:video", "--set", "env.video={text}"],
                      "cannot read video"),
    "video is missing": ([*RUN, "--env", "minigrid:video", "--set", "env.video={dir}/no.mp4"],
                         "video file not found"),
    "video for dmc": ([*RUN, "--env", "dmc:walker_walk", "--set", "env.video={text}"],
                      "video backgrounds are MiniGrid's"),
    "results is a file": ([*RUN, "--env", ENVS[0], "--results", "{file}"],
                          "is a file, not a folder"),
    "db folder missing": ([*RUN, "--env", ENVS[0], "--db", "sqlite:///{dir}/no/such/x.db"],
                          "/no/such does not exist"),
    "db not a database": ([*RUN, "--env", ENVS[0], "--db", "sqlite:///{bad_db}"],
                          "file is not a database"),
    "db url malformed": ([*RUN, "--env", ENVS[0], "--db", "not a url"], "bad database URL"),
    "db from a newer blast": ([*RUN, "--env", ENVS[0], "--db", "sqlite:///{newer_db}"],
                              "written by a newer blast"),
    "status of a damaged db": (["status", "--db", "sqlite:///{bad_db}"],
                               "file is not a database"),
    "recipe of binary junk": (["run-recipe", "{junk}", "--no-progress"],
                              "is not a text (UTF-8 YAML) file"),
    "ladder with a bad video": (["run-ladder", "--env", "minigrid:video", *TINY, "--set",
                                 "env.video={text}", "--no-progress"], "cannot read video"),
    "paper preset on cpu workers": (["run-ladder", "--env", ENVS[0], "--seeds", "2", "--workers",
                                     "1", "--no-progress"],
                                    "2 paper-size run(s) on 1 CPU worker(s) and no GPU: about"),
    "status of a malformed db url": (["status", "--db", "notaurl:::/x"], "bad database URL"),
    "report of a malformed db url": (["report", "--figure", "3", "--db", "::"],
                                     "bad database URL"),
    "gpu that is not there": (["run-ladder", "--env", ENVS[0], *TINY, "--gpus", "7",
                               "--no-progress"], "--gpus names GPU 7 but torch sees"),
    "config show of a bad task": (["config", "show", "--env", "dmc:nope_nope"],
                                  "unknown env id 'dmc:nope_nope'"),
}


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` and its content's hash (SQLite's -wal and -shm files aside:
    opening a database to read it may make them)."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    url = f"sqlite:///{results / 'blast.db'}"
    store = Store.open(url)  # an existing database with a run in it must stay as it was
    store.upsert_run("keep/r", experiment="keep", env=ENVS[0], rung="dv2", seed=0,
                     preset="tiny", config={}, run_dir="/r")
    store.close()
    files = tmp_path / "files"
    (files / "dir").mkdir(parents=True)
    (files / "text.mp4").write_text("not a video\n")
    (files / "junk.yaml").write_bytes(bytes(range(128, 256)) * 8)
    (files / "bad.db").write_text("garbage, not SQLite\n")
    (files / "file").write_text("a file where a folder belongs\n")
    newer = files / "newer.db"
    Store.open(f"sqlite:///{newer}").close()
    with create_engine(f"sqlite:///{newer}").begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    names = {"dir": files / "dir", "text": files / "text.mp4", "junk": files / "junk.yaml",
             "bad_db": files / "bad.db", "newer_db": newer, "file": files / "file"}
    argv, message = CASES[case]
    args = [a.format(**names) for a in argv]
    if args[0] != "config" and "--results" not in args and "--db" not in args:
        args += ["--results", str(results)]
    before = snapshot(tmp_path), dump(url)

    code, _, err = blast_here(capsys, *args)

    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert (snapshot(tmp_path), dump(url)) == before
