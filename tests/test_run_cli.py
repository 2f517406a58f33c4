"""`blast run` and `blast resume` end to end: real processes, envs, SQLite and signals."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from blast_core.run.checkpoint import Checkpoints
from blast_core.run.speed import SPEED_METRICS
from blast_core.store import Store

MINIGRID = ["--env", "minigrid:unmodified", "--rung", "ar_prior", "--seed", "0", "--preset", "tiny"]
RUN_ID = "default/minigrid.unmodified__ar_prior__tiny__s0"


def blast_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "blast_cli", *args]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BLAST_DB", "BLAST_RESULTS")}
    return env | {"OMP_NUM_THREADS": "1"}


def blast(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(blast_cmd(*args, "--results", str(root), "--no-progress"),
                          capture_output=True, text=True, env=clean_env(), timeout=300)


def start(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(blast_cmd(*args, "--results", str(root), "--no-progress"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env())


def wait_for_checkpoint(directory: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not list(directory.glob("ckpt-*.pt")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def store(root: Path) -> Store:
    return Store.open(f"sqlite:///{root.resolve() / 'blast.db'}")


def metric_rows(root: Path, run_id: str):
    frame = store(root).metrics_frame()
    frame = frame[(frame.run_id == run_id) & ~frame.name.isin(SPEED_METRICS)]
    return frame.sort_values(["step", "name"])[["step", "frames", "name", "value"]].reset_index(
        drop=True
    )


def run_id_with_steps(steps: int) -> str:
    """The id `blast run ... --steps N` gives the tiny MiniGrid run (asked of the library)."""
    from blast_core.run.spec import RunSpec

    return RunSpec.make("minigrid:unmodified", "ar_prior", 0, "tiny", [], steps).run_id


def weights(root: Path, run_id: str) -> dict[str, torch.Tensor]:
    return Checkpoints(root / run_id / "checkpoints").latest()[1]["agent"]["modules"]


ONE_WORKER = pytest.mark.xdist_group("finished_run")
"""For the tests that read `finished`: in one xdist worker, the run is made once, not once per
worker (~20 s each)."""


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One tiny MiniGrid run taken to the end by `blast run --deterministic`."""
    root = tmp_path_factory.mktemp("finished")
    result = blast(root, "run", *MINIGRID, "--deterministic")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{RUN_ID}: done"
    return root


@ONE_WORKER
def test_minigrid_run_end_to_end(finished):
    run = store(finished).run(RUN_ID)
    assert run["status"] == "done" and run["step"] == 400 and run["env"] == "minigrid:unmodified"
    assert run["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")  # --device auto
    rows = metric_rows(finished, RUN_ID)
    assert {"eval_score", "train_score", "model_loss", "kl", "actor_ent"} <= set(rows.name)
    assert not rows.duplicated(["step", "name"]).any()
    frame = store(finished).metrics_frame()
    mine = frame[frame.run_id == RUN_ID]
    for name in ("peak_mem_mb", "host_mem_mb", "host_anon_mb"):
        peak = mine[mine.name == name].value
        assert len(peak) and peak.min() > 100  # torch alone takes more (MiB)
    memory = mine.pivot(index="step", columns="name", values="value")
    assert (memory.host_anon_mb < memory.host_mem_mb).all()  # a part of the resident peak
    directory = finished / RUN_ID
    assert (directory / "config.yaml").exists() and (directory / "run.json").exists()
    assert sorted(p.name for p in (directory / "checkpoints").iterdir()) == [
        "ckpt-0000000300.pt", "ckpt-0000000400.pt"]


@ONE_WORKER
def test_running_a_finished_run_again_changes_nothing(finished, tmp_path):
    root = tmp_path / "again"
    shutil.copytree(finished, root)
    before = metric_rows(root, RUN_ID)
    row = store(root).run(RUN_ID)
    result = blast(root, "run", *MINIGRID, "--deterministic")
    assert result.returncode == 0, result.stderr
    assert "already done (400 steps): nothing to do" in result.stderr
    assert "resumed" not in result.stderr + result.stdout
    assert metric_rows(root, RUN_ID).equals(before)
    assert store(root).run(RUN_ID) == row  # not even its heartbeat or commit was touched


def moved(source: Path, target: Path, tmp_path: Path) -> Path:
    """`blast export` of the default experiment under `source`, then `blast import` of it into a
    fresh `target` (another machine's results root); returns the export file."""
    out = tmp_path / "default.blast.json.gz"
    made = subprocess.run(blast_cmd("export", "--experiment", "default", "--out", str(out),
                                    "--results", str(source)), capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    took = subprocess.run(blast_cmd("import", str(out), "--results", str(target)),
                          capture_output=True, text=True)
    assert took.returncode == 0 and "1 runs added" in took.stdout, took.stderr
    return out


@ONE_WORKER
def test_an_imported_done_run_is_not_run_again_by_its_ladder(finished, tmp_path):
    """The next session's machine: the exported runs imported into a fresh results root, then the
    same ladder command skips them (their folders are on the machine that ran them)."""
    fresh = tmp_path / "fresh"
    moved(finished, fresh, tmp_path)
    before = metric_rows(fresh, RUN_ID)
    ladder = blast(fresh, "run-ladder", "--env", "minigrid:unmodified", "--rungs", "ar_prior",
                   "--seeds", "1", "--preset", "tiny", "--workers", "1")
    assert ladder.returncode == 0, ladder.stderr
    assert metric_rows(fresh, RUN_ID).equals(before)
    assert store(fresh).run(RUN_ID)["status"] == "done"
    assert not (fresh / RUN_ID).exists()


@ONE_WORKER
def test_an_imported_unfinished_run_starts_again_here_and_ends_as_it_would_have(finished,
                                                                                tmp_path):
    """An export taken while a run was at step 200 of 400, imported on a machine without its
    folder: `blast resume` (or the recipe's next command) starts it again from its first step,
    replacing the imported rows as it goes, and it ends with the rows the whole run made
    (nothing counted twice, nothing lost)."""
    there = tmp_path / "there"
    shutil.copytree(finished, there)
    whole = metric_rows(there, RUN_ID)
    with store(there) as db:  # as the store looked at step 200, while the run was running
        db.truncate_metrics(RUN_ID, 200)
        db.set_status(RUN_ID, "running")
        db.heartbeat(RUN_ID, 200)
    with sqlite3.connect(there / "blast.db") as conn:  # ... on another machine
        conn.execute("UPDATE runs SET run_dir = ?", (f"/elsewhere/{RUN_ID}",))
    here = tmp_path / "here"
    out = moved(there, here, tmp_path)
    assert store(here).run(RUN_ID)["status"] == "interrupted"
    again = blast(here, "resume", RUN_ID, "--deterministic")  # as `finished` ran
    assert again.returncode == 0, again.stderr
    assert "(it ran on " in again.stderr and "starts again here from its first step" in again.stderr
    assert store(here).run(RUN_ID)["status"] == "done"
    assert metric_rows(here, RUN_ID).equals(whole)
    # The database right, the results root wrong: the run's folder is found, not started over.
    (tmp_path / "wrong").mkdir()
    wrong = blast(tmp_path / "wrong", "resume", RUN_ID, "--db", f"sqlite:///{here / 'blast.db'}")
    assert wrong.returncode == 2 and f"--results {here.resolve()}" in wrong.stderr, wrong.stderr
    assert not (tmp_path / "wrong" / RUN_ID).exists()
    # A run imported done has nothing to resume: said in one line, and nothing is written.
    elsewhere = tmp_path / "elsewhere"
    assert subprocess.run(blast_cmd("import", str(out), "--results", str(elsewhere)),
                          capture_output=True).returncode == 0
    with store(elsewhere) as db:
        db.set_status(RUN_ID, "done")
    done = blast(elsewhere, "resume", RUN_ID)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "is done (on " in done.stderr and not (elsewhere / RUN_ID).exists()


def test_dmc_run_end_to_end(tmp_path):
    # Episodes of 50 agent steps so that a 200-step run holds four and trains after 100.
    result = blast(tmp_path, "run", "--env", "dmc:cartpole_swingup", "--rung", "dv2", "--seed",
                   "1", "--preset", "tiny", "--steps", "200", "--set", "env.time_limit=50",
                   "--set", "schedule.prefill=100")
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip().split(":")[0]
    assert run_id.startswith("default/dmc.cartpole_swingup__dv2__tiny__s1__")
    run = store(tmp_path).run(run_id)
    assert run["status"] == "done" and run["step"] == 200
    rows = metric_rows(tmp_path, run_id)
    assert (rows.frames == 2 * rows.step).all()  # DMC's action repeat
    assert sorted(rows[rows.name == "eval_return"].step) == [200]
    assert sorted(rows[rows.name == "train_return"].step) == [50, 100, 150, 200]
    assert {"model_loss", "actor_loss"} <= set(rows.name)


@ONE_WORKER
def test_a_run_continued_on_another_device_says_so(finished, tmp_path):
    root = tmp_path / "moved"
    shutil.copytree(finished, root)
    store(root).set_status(RUN_ID, "interrupted", device="cuda:0")  # as if it ran on a GPU
    resumed = blast(root, "resume", RUN_ID, "--device", "cpu")
    assert resumed.returncode == 0, resumed.stderr
    assert f"note: {RUN_ID} ran on cuda:0 up to step 400 and continues on cpu" in resumed.stderr
    assert store(root).run(RUN_ID)["device"] == "cpu"


@ONE_WORKER
def test_sigkill_after_a_checkpoint_then_resume_equals_an_uninterrupted_run(finished, tmp_path):
    proc = start(tmp_path, "run", *MINIGRID, "--deterministic")
    wait_for_checkpoint(tmp_path / RUN_ID / "checkpoints", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert store(tmp_path).run(RUN_ID)["status"] == "running"  # left for crash detection
    resumed = blast(tmp_path, "resume", RUN_ID, "--deterministic")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stderr and "note:" not in resumed.stderr  # the same device
    assert store(tmp_path).run(RUN_ID)["step"] == 400
    a, b = metric_rows(finished, RUN_ID), metric_rows(tmp_path, RUN_ID)
    assert not b.duplicated(["step", "name"]).any()
    assert a.equals(b)
    wa, wb = weights(finished, RUN_ID), weights(tmp_path, RUN_ID)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    replay = sorted(p.name for p in (tmp_path / RUN_ID / "replay").iterdir())
    assert replay == sorted(p.name for p in (finished / RUN_ID / "replay").iterdir())


def test_sigterm_leaves_a_checkpoint_and_a_clean_exit(tmp_path):
    args = ["run", *MINIGRID, "--steps", "100000"]
    proc = start(tmp_path, *args)
    run_id = run_id_with_steps(100000)
    wait_for_checkpoint(tmp_path / run_id / "checkpoints", proc)
    second = blast(tmp_path, *args)
    assert second.returncode == 2 and "already running" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert "Traceback" not in err and "checkpoint written" in err
    run = store(tmp_path).run(run_id)
    assert run["status"] == "interrupted"
    step, _ = Checkpoints(tmp_path / run_id / "checkpoints").latest()
    assert step == run["step"] and step >= 100


# A stop that comes twice, the second as the run ends (after its checkpoint, before its final
# status): SLURM's scancel signals every process of the step and the job's scheduler forwards its
# own. Here the run signals itself, the first time mid-run and again as it closes its progress.
STOPPED_TWICE = """
import os, signal, sys
from pathlib import Path
from blast_core.run.process import start
from blast_core.run.spec import Options, RunSpec

class Twice:
    sent = False
    def update(self, step, score):
        if step >= 60 and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)
    def close(self):
        os.kill(os.getpid(), signal.SIGTERM)

root = Path(sys.argv[1])
spec = RunSpec.make("minigrid:unmodified", "dv2", 0, "tiny", ["schedule.prefill=50"], steps=150)
start(spec, root, f"sqlite:///{root.resolve() / 'blast.db'}",
      Options(progress=lambda total, step: Twice(), say=lambda m: None))
print(spec.run_id)
"""


def test_a_second_stop_signal_as_the_run_stops_leaves_it_interrupted(tmp_path):
    out = subprocess.run([sys.executable, "-c", STOPPED_TWICE, str(tmp_path)], text=True,
                         capture_output=True, env=clean_env(), timeout=300)
    # Before the fix the second signal found the default handler back and killed the process
    # (-15) with its row still `running`.
    assert out.returncode == 0, (out.returncode, out.stderr)
    run = store(tmp_path).run(out.stdout.strip())
    assert run["status"] == "interrupted", run
    assert 60 <= run["step"] < 150


@ONE_WORKER
def test_truncated_checkpoint_falls_back_to_the_previous_one(finished, tmp_path):
    root = tmp_path / "damaged"
    shutil.copytree(finished, root)
    latest = root / RUN_ID / "checkpoints" / "ckpt-0000000400.pt"
    latest.write_bytes(latest.read_bytes()[:1000])
    result = blast(root, "resume", RUN_ID, "--deterministic")
    assert result.returncode == 0, result.stderr
    assert "ckpt-0000000400.pt" in result.stderr and "falling back" in result.stderr
    assert "resumed" in result.stderr and "step 300" in result.stderr
    assert metric_rows(root, RUN_ID).equals(metric_rows(finished, RUN_ID))


def test_non_finite_loss_fails_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    result = blast(tmp_path, "run", *MINIGRID, "--set", "loss_scales.kl=nan")
    assert result.returncode == 1
    assert "diverged" in result.stderr and "Traceback" not in result.stderr
    (run,) = store(tmp_path).runs()
    assert run["status"] == "failed" and "non-finite" in run["error"]
    paths = Checkpoints(Path(run["run_dir"]) / "checkpoints").paths()
    assert [s for s, _ in paths] == [100]


@ONE_WORKER
def test_a_full_disk_fails_the_run_with_its_reason_and_resume_loses_nothing(
        finished, tmp_path, small_disk):
    """The results root on a disk with room for two and a half checkpoints: the run stops at a
    checkpoint it cannot write with one line, no `.tmp` left, `failed` and why in the database
    (which lives elsewhere, as on a cluster's scratch disk); with room again, `blast resume`
    ends it as an uninterrupted run ends."""
    ckpt = (finished / RUN_ID / "checkpoints" / "ckpt-0000000400.pt").stat().st_size
    root = small_disk((ckpt * 5 // 2 + 200_000) // 1024)
    db = ["--db", f"sqlite:///{tmp_path / 'blast.db'}"]
    result = blast(root, "run", *MINIGRID, "--deterministic", *db)
    assert result.returncode == 1, result.stderr
    assert "disk full: no space left on the disk of" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    run = Store.open(db[1]).run(RUN_ID)
    assert run["status"] == "failed" and run["error"].startswith("disk full: ")
    assert not list(root.rglob("*.tmp"))
    kept = [s for s, _ in Checkpoints(root / RUN_ID / "checkpoints").paths()]
    assert kept and kept[-1] < 400 and f"ckpt-{kept[-1] + 100:010d}.pt" in result.stderr
    small_disk.grow(root, 64 * 1024)
    resumed = blast(root, "resume", RUN_ID, "--deterministic", *db)
    assert resumed.returncode == 0, resumed.stderr
    frame = Store.open(db[1]).metrics_frame()
    frame = frame[(frame.run_id == RUN_ID) & ~frame.name.isin(SPEED_METRICS)]
    rows = frame.sort_values(["step", "name"])[["step", "frames", "name", "value"]]
    assert rows.reset_index(drop=True).equals(metric_rows(finished, RUN_ID))


@ONE_WORKER
def test_a_read_only_results_root_is_one_line_and_writes_nothing(finished, small_disk):
    read_only = small_disk(1024, read_only=True)
    db = f"sqlite:///{finished / 'blast.db'}"
    for args in (["run", *MINIGRID, "--no-progress"], ["report", "--figure", "3", "--db", db]):
        result = subprocess.run(blast_cmd(*args, "--results", str(read_only)),
                                capture_output=True, text=True, env=clean_env(), timeout=300)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"error: the results root {read_only}"), result.stderr
        assert "cannot be written" in result.stderr and result.stderr.count("\n") == 1
    assert not list(read_only.iterdir())


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", *MINIGRID[:2], "--rung", "nope", "--seed", "0"], "unknown rung"),
        (["run", *MINIGRID, "--set", "rssm.nope=1"], "unknown config key"),
        (["run", *MINIGRID, "--device", "cuda:7"], "--device"),
        (["run", *MINIGRID, "--device", "tpu"], "use auto, cpu or cuda:K"),
        (["run", *MINIGRID, "--steps", "0"], "--steps"),
        (["resume", "default/nope"], "no run"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    root = tmp_path / "results"
    result = blast(root, *args)
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not root.exists()


@pytest.mark.parametrize("columns", [80, 160])
def test_progress_bar_on_a_terminal(tmp_path, columns):
    """Steps, speed, score and ETA fit the terminal; at 80 columns the run's name is on a line
    of its own above the bar."""
    import pty

    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        blast_cmd("run", *MINIGRID, "--steps", "150", "--results", str(tmp_path)),
        stdout=secondary, stderr=subprocess.PIPE, env=clean_env() | {"COLUMNS": str(columns)},
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=300) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert "150/150" in screen and "steps/s" in screen
    assert re.search(r"score -?\d+\.\d\d", screen)  # the evaluation at the last step
    lines = re.split(r"[\r\n]", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen))
    assert max(len(line) for line in lines) <= columns
    assert any("150/150" in line and "score" in line and "steps/s" in line for line in lines)
    assert any("minigrid.unmodified__ar_prior" in line for line in lines)


def test_run_identity():
    from blast_core.run.spec import RunSpec

    spec = RunSpec.make("minigrid:unmodified", "ar_prior", 3, "cpu")
    assert spec.run_id == "default/minigrid.unmodified__ar_prior__cpu__s3"
    a = RunSpec.make("dmc:walker_run", "bn", 0, "tiny", ["rssm.stoch=8", "kl.free=2"], None, "x")
    b = RunSpec.make("dmc:walker_run", "bn", 0, "tiny", ["kl.free=2", "rssm.stoch=8"], None, "x")
    c = RunSpec.make("dmc:walker_run", "bn", 0, "tiny", ["kl.free=2", "rssm.stoch=8"], 1000, "x")
    assert a.run_id == b.run_id != c.run_id
    assert a.run_id.startswith("x/dmc.walker_run__bn__tiny__s0__")
    assert len(a.name.split("__")[-1]) == 8
    assert RunSpec.from_dict(c.to_dict()) == c


@ONE_WORKER
def test_a_run_of_an_older_blast_goes_on_with_how_it_executed(finished, tmp_path):
    # As an older blast wrote it: before `replay.mmap` existed, when `cuda_graphs` was off by
    # default. Neither changes what the run computes, so `blast run` goes on with its values.
    root = tmp_path / "older"
    shutil.copytree(finished, root)
    stored = root / RUN_ID / "config.yaml"
    text = stored.read_text()
    assert "cuda_graphs: true" in text and "  mmap: false\n" in text
    stored.write_text(text.replace("cuda_graphs: true", "cuda_graphs: false")
                      .replace("  mmap: false\n", ""))
    store(root).set_status(RUN_ID, "interrupted")  # a done run is not run again at all
    result = blast(root, "run", *MINIGRID)
    assert result.returncode == 0, result.stderr
    assert f"note: {RUN_ID} goes on with its own cuda_graphs=false" in result.stdout + result.stderr
    config = store(root).run(RUN_ID)["config"]
    assert config["cuda_graphs"] is False and config["replay"]["mmap"] is False
    assert metric_rows(root, RUN_ID).equals(metric_rows(finished, RUN_ID))


@ONE_WORKER
def test_a_changed_config_is_refused_rather_than_mixed(finished, tmp_path):
    root = tmp_path / "changed"
    shutil.copytree(finished, root)
    stored = root / RUN_ID / "config.yaml"
    stored.write_text(stored.read_text().replace("discount: 0.99", "discount: 0.9"))
    result = blast(root, "run", *MINIGRID)
    assert result.returncode == 2 and "different config (discount)" in result.stderr
    assert metric_rows(root, RUN_ID).equals(metric_rows(finished, RUN_ID))


def test_a_video_files_frames_are_cached_under_the_runs_results_root(tmp_path):
    # Decoding a user's clip is slow, so a run keeps its frames for the next run: under
    # <--results>/.cache, never in a ./results of wherever the command was started.
    import imageio.v3 as iio  # the `video` env's own reader, to write the clip

    iio.imwrite(tmp_path / "clip.mp4", np.full((8, 32, 32, 3), 90, np.uint8), fps=10)
    elsewhere, root = tmp_path / "cwd", tmp_path / "runs"
    elsewhere.mkdir()
    out = subprocess.run(
        blast_cmd("run", "--env", "minigrid:video", "--rung", "dv2", "--seed", "0", "--preset",
                  "tiny", "--steps", "20", "--set", f"env.video={tmp_path / 'clip.mp4'}",
                  "--results", str(root), "--no-progress"),
        capture_output=True, text=True, env=clean_env(), timeout=300, cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    assert len(list((root / ".cache" / "videos").glob("clip-64px-*.npy"))) == 1
    assert list(elsewhere.iterdir()) == []
