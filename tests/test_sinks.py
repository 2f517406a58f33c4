"""`--log tensorboard --log wandb`: the real packages (W&B offline, no network) get every metric
row the database gets, once, across a SIGKILL and a resume; a broken backend is one warning."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from blast_core.run.sinks import offline_steps, read_wandb_records, recorded_backends, wandb_id
from tests.test_run_cli import (
    MINIGRID,
    RUN_ID,
    SPEED_METRICS,
    blast,
    run_id_with_steps,
    start,
    store,
    wait_for_checkpoint,
)

LOG = ["--log", "tensorboard", "--log", "wandb"]
TB_FOLDER = Path("default/tensorboard/minigrid.unmodified/ar_prior/s0-tiny")


def db_rows(root: Path) -> dict[tuple[str, int], float]:
    frame = store(root).metrics_frame()
    frame = frame[frame.run_id == RUN_ID]
    return {(r.name, int(r.step)): float(r.value) for r in frame.itertuples()}


def tensorboard_rows(root: Path) -> tuple[Counter, dict[tuple[str, int], float], EventAccumulator]:
    """What TensorBoard's own reader shows: (how often each (tag, step) appears, the values)."""
    events = EventAccumulator(str(root / TB_FOLDER), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    seen, values = Counter(), {}
    for tag in events.Tags()["scalars"]:
        for e in events.Scalars(tag):
            seen[(tag, e.step)] += 1
            values[(tag, e.step)] = e.value
    return seen, values, events


def wandb_history(root: Path) -> list[tuple[int, dict[str, float]]]:
    """(step, values) of every history record in the run's offline W&B files, in order."""
    out = []
    for path in sorted((root / RUN_ID / "wandb").glob("offline-run-*/*.wandb")):
        for record in read_wandb_records(path):
            if record.WhichOneof("record_type") == "history":
                items = {"/".join(i.nested_key) or i.key: i.value_json for i in record.history.item}
                out.append((record.history.step.num,
                            {k: float(v) for k, v in items.items() if not k.startswith("_")}))
    return out


def assert_sinks_match_the_database(root: Path) -> None:
    rows = db_rows(root)
    seen, values, events = tensorboard_rows(root)
    assert set(seen) == set(rows) and set(seen.values()) == {1}
    for key, value in rows.items():
        assert values[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
    steps = sorted({step for _, step in rows})
    history = wandb_history(root)
    assert [step for step, _ in history] == steps  # each step once, none missing, in order
    for step, logged in history:
        for name, value in logged.items():
            if name != "frames" and name not in SPEED_METRICS:
                assert value == pytest.approx(rows[(name, step)], rel=1e-6, abs=1e-6)
    assert offline_steps(root / RUN_ID, wandb_id(RUN_ID)) == steps
    # Figure 8's pair at every evaluation, and the resolved config as text.
    assert [e.step for e in events.Images("probe/imagined_frame")] == \
        sorted(step for name, step in rows if name == "eval_score")
    assert events.Images("probe/imagined_frame")[0].width == 128
    assert "config/text_summary" in events.Tags()["tensors"]


def test_every_row_reaches_both_once_across_a_sigkill_and_a_resume(tmp_path):
    """What the database holds, TensorBoard's reader and the offline W&B files hold too, each
    (metric, step) once, after the first process was killed past a checkpoint."""
    proc = start(tmp_path, "run", *MINIGRID, "--deterministic", *LOG)
    wait_for_checkpoint(tmp_path / RUN_ID / "checkpoints", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = blast(tmp_path, "resume", RUN_ID, "--deterministic")  # no --log: the run's own
    assert resumed.returncode == 0, resumed.stderr
    assert "dropped" in resumed.stderr and "warning" not in resumed.stderr
    assert len(list((tmp_path / RUN_ID / "wandb").glob("offline-run-*"))) == 2
    assert_sinks_match_the_database(tmp_path)


def test_a_broken_backend_is_one_warning_and_the_run_completes(tmp_path):
    run_id = run_id_with_steps(150)
    (tmp_path / "default" / "tensorboard").parent.mkdir(parents=True)
    (tmp_path / "default" / "tensorboard").write_text("a file where the event folder goes\n")
    (tmp_path / run_id).mkdir(parents=True)
    (tmp_path / run_id / "wandb").write_text("a file where W&B's folder goes\n")
    result = blast(tmp_path, "run", *MINIGRID, "--steps", "150", *LOG)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, result.stderr
    assert any(w.startswith("warning: tensorboard logging stopped") for w in warnings)
    assert any(w.startswith("warning: wandb logging stopped") for w in warnings)
    run = store(tmp_path).run(run_id)
    assert run["status"] == "done" and run["step"] == 150


def test_an_unknown_backend_is_one_line_and_writes_nothing(tmp_path):
    result = blast(tmp_path, "run", *MINIGRID, "--log", "mlflow")
    assert result.returncode == 2
    assert result.stderr == "error: --log mlflow: unknown backend; valid: tensorboard, wandb\n"
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


@pytest.mark.parametrize("text", ["{not json", "7", '["tensorboard", "nope"]'])
def test_a_damaged_log_record_is_a_warning_and_written_again(tmp_path, text):
    (tmp_path / "log.json").write_text(text)
    said: list[str] = []
    assert recorded_backends(tmp_path, ["wandb"], said.append) == ("wandb",)
    assert len(said) == 1 and "log.json is damaged" in said[0]
    assert recorded_backends(tmp_path, [], said.append) == ("wandb",) and len(said) == 1
