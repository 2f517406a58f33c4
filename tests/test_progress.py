"""Progress where stdout is not a terminal: plain lines on stderr, never a live bar."""

from __future__ import annotations

import re

from blast_cli import run_cmd


def test_plain_lines_name_the_step_speed_score_and_eta(capsys) -> None:
    bar = run_cmd.PlainProgress("dv2 s0", total=200, every=0)
    bar.update(0, None)
    bar.update(50, None)
    bar.update(100, 1.25)
    lines = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d dv2 s0: step 100/200 \(50%\), [\d.]+ steps/s, "
                        r"score 1\.25, eta \d+ min", lines[-1]), lines
    assert "score -" in lines[1]  # no evaluation yet


def test_the_speed_is_the_last_few_lines_so_the_prefill_leaves_the_eta(capsys, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(run_cmd.time, "monotonic", lambda: clock[0])
    bar = run_cmd.PlainProgress("dv2 s0", total=35000, every=60)
    bar.update(0, None)
    for minute in range(1, 12):  # 10,000 random steps in the first minute, then 1 a second
        clock[0] = 60.0 * minute
        bar.update(10000 + 60 * (minute - 1), None)
    speeds = [float(re.search(r"([\d.]+) steps/s", line)[1])
              for line in capsys.readouterr().err.splitlines()]
    assert speeds[0] == 166.7 and speeds[4] > 30  # the prefill still in the window
    assert speeds[-1] == 1.0 and speeds[-5:] == [1.0] * 5  # 5 lines on, only training's pace


def test_lines_come_at_most_once_per_interval(capsys) -> None:
    bar = run_cmd.PlainProgress("x", total=10, every=3600)
    for step in range(10):
        bar.update(step, None)
    bar.close()
    assert capsys.readouterr().err == ""  # a run shorter than the interval prints none


def test_a_run_without_a_terminal_gets_plain_lines_and_no_progress_gets_none() -> None:
    # Under pytest stdout is captured, not a terminal.
    made = run_cmd._options("cpu", False, 1, False, "label").progress(100, 0)
    assert isinstance(made, run_cmd.PlainProgress)
    assert run_cmd._options("cpu", False, 1, True, "label").progress is None


def test_the_ladder_table_lists_runs_in_ladder_order_active_first() -> None:
    from rich.console import Console

    from blast_cli.live import run_table

    def row(rung: str, seed: int, status: str = "done") -> dict:
        return {"id": f"e/{rung}{seed}", "name": f"{rung} s{seed}", "env": "minigrid:unmodified",
                "rung": rung, "seed": seed, "status": status, "step": 1, "config": None}

    rows = [row(r, s) for r in ("target", "ar_prior", "dv2", "bn", "no_recon") for s in (1, 0)]
    rows.append(row("stop_grad", 0, "running"))
    console = Console(width=100, record=True)
    console.print(run_table(rows, {}, {}))
    names = [line.split()[0] + " " + line.split()[1] for line in
             console.export_text().splitlines()[1:] if line.strip()]
    assert names == ["stop_grad s0", "dv2 s0", "dv2 s1", "no_recon s0", "no_recon s1",
                     "target s0", "target s1", "bn s0", "bn s1", "ar_prior s0", "ar_prior s1"]


def test_time_left_is_said_only_for_a_running_run_past_its_prefill() -> None:
    from blast_cli.live import time_left

    def row(step: int, status: str = "running") -> dict:
        return {"status": status, "step": step,
                "config": {"schedule": {"steps": 35000, "prefill": 10000}}}

    assert time_left(row(14000), 3.0) == "1h57m"  # 21,000 steps at 3 per second: 116.7 min
    assert time_left(row(34000), 20.0) == "<1m" and time_left(row(33000), 20.0) == "2m"
    assert time_left(row(9000), 300.0) is None  # random prefill steps say nothing of training's
    assert time_left(row(14000, "interrupted"), 3.0) is None
    assert time_left(row(14000), None) is None and time_left(row(14000), 0.0) is None
    assert time_left({"status": "running", "step": 5, "config": None}, 3.0) is None
