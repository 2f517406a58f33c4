"""The training loop: act, store finished episodes, update, evaluate, log and checkpoint.

One iteration is one agent step. Everything a step produces (its episode, its updates, its
evaluation, its metric rows) happens before that step's checkpoint, so a resume from the
checkpoint of step s drops exactly the rows with step > s and redoes them:

    act -> env step (step += 1) -> finished episode to replay -> updates -> eval -> log
        -> checkpoint

Episodes reset with a seed made from (run seed, stream, episode index), so the episode in
progress is restored by resetting with its seed and re-stepping its stored actions.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from blast_core import envs
from blast_core.agent import Agent
from blast_core.agent.runtime import Runtime
from blast_core.config import Config
from blast_core.run.checkpoint import Checkpoints, rng_state, set_rng_state
from blast_core.run.driver import Driver, act_space_of
from blast_core.run.replay import Replay
from blast_core.run.sinks import Sinks
from blast_core.run.speed import Clock, Speed

# --- interfaces ----------------------------------------------------------------------------------


class Progress(Protocol):
    """A live display of a run: told each step and the last evaluation score."""

    def update(self, step: int, score: float | None) -> None: ...

    def close(self) -> None: ...


class NoProgress:
    def update(self, step: int, score: float | None) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class StopFlag:
    """Set by a signal handler; the loop checkpoints and stops at the end of the current step."""

    signum: int = 0


class Interrupted(Exception):
    """The run stopped on a signal after writing a checkpoint."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(f"interrupted by signal {signum} at step {step}")
        self.signum, self.step = signum, step


class Diverged(Exception):
    """A loss became non-finite; the last good checkpoint is kept and nothing after it saved."""


@dataclass
class RunContext:
    """Where a run lives and what it reports to; the store follows the `blast_core.store` API."""

    run_id: str
    directory: Path
    seed: int
    store: Any
    device: str = "cpu"
    stop: StopFlag = field(default_factory=StopFlag)
    progress: Progress = field(default_factory=NoProgress)
    say: Callable[[str], None] = print
    sinks: Sinks = field(default_factory=lambda: Sinks({}, print))
    """TensorBoard and W&B, when `--log` names them: they get every row the store gets."""
    switches: dict[str, bool] = field(default_factory=dict)
    """The command line's `Runtime` switches (`graph_behavior`, `keep_freed_memory`)."""
    cache: Path | None = None
    """Where runs share what is slow to build (`<results>/.cache`: a video's decoded frames)."""


# --- small helpers -------------------------------------------------------------------------------


def due(step: int, every: int) -> bool:
    """Cadence: whether `step` is a positive multiple of `every` (0 disables)."""
    return every > 0 and step > 0 and step % every == 0


class Mean:
    """Running means of named values between two log rows; its state is a plain dict."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}

    def add(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            total = self.sums.setdefault(name, [0.0, 0.0])
            total[0], total[1] = total[0] + value, total[1] + 1

    def pop(self) -> dict[str, float]:
        means = {k: s / n for k, (s, n) in self.sums.items()}
        self.sums = {}
        return means


class Tracker:
    """Buffers tidy metric rows (step, frames, name, value) and writes them to the store, then
    to the run's sinks (the store first: it is the source of truth)."""

    def __init__(self, store: Any, run_id: str, action_repeat: int, sinks: Sinks) -> None:
        self.store, self.run_id, self.repeat, self.sinks = store, run_id, action_repeat, sinks
        self.rows: list[tuple[int, int, str, float]] = []

    def add(self, step: int, values: dict[str, float]) -> None:
        self.rows += [(step, step * self.repeat, k, float(v)) for k, v in values.items()]

    def flush(self, step: int) -> None:
        if self.rows:
            self.store.append_metrics(self.run_id, self.rows)
            self.sinks.rows(self.rows)
            self.rows = []
        self.store.heartbeat(self.run_id, step)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


_NON_FINITE = re.compile(r"\b(nan|inf)\b", re.IGNORECASE)


def check_finite(metrics: dict[str, float], step: int) -> dict[str, float]:
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:
        raise Diverged(f"non-finite {', '.join(bad)} at step {step}")
    return metrics


def to_device(tree: Any, device: str) -> Any:
    """Move the tensors of a nested container (a policy state loaded on the CPU) to `device`."""
    if isinstance(tree, torch.Tensor):
        return tree.to(device)
    if isinstance(tree, dict):
        return {k: to_device(v, device) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(to_device(v, device) for v in tree)
    return tree


# --- the run's state -----------------------------------------------------------------------------


@dataclass
class Session:
    """Everything a checkpoint holds: agent, replay index, the episode in progress, counters, the
    loss means since the last log row, and every RNG state."""

    agent: Any
    replay: Replay
    driver: Driver
    evaluator: Driver
    explore: np.random.Generator  # the prefill's random policy
    device: str = "cpu"
    losses: Mean = field(default_factory=Mean)
    step: int = 0
    updates: int = 0
    pending: int = 0
    """Updates still owed at `step`: a stop signal cut that step's updates short (the pretrain
    is a thousand of them); a resumed run does them before anything else."""
    clock: Clock = field(default_factory=Clock)  # not in a checkpoint: machine, not run

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step, "updates": self.updates, "pending": self.pending,
            "losses": self.losses.sums,
            "agent": self.agent.checkpoint_state(), "replay": self.replay.state_dict(),
            "driver": self.driver.state_dict(), "evaluator": self.evaluator.state_dict(),
            "explore": self.explore.bit_generator.state, "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.updates, self.losses.sums = state["step"], state["updates"], state["losses"]
        self.pending = int(state.get("pending", 0))  # older checkpoints: none
        self.agent.load_checkpoint_state(state["agent"])
        self.replay.load_state_dict(state["replay"])
        self.driver.load_state_dict(state["driver"])
        self.evaluator.load_state_dict(state["evaluator"])
        self.driver.state = to_device(self.driver.state, self.device)
        self.explore.bit_generator.state = state["explore"]
        set_rng_state(state["rng"])  # last: re-stepping the env above may draw from them

    def act(self) -> np.ndarray:
        """A uniform random action until training starts (the prefill), then the policy's sample."""
        if self.updates == 0:
            space = self.driver.space
            if space.discrete:
                return np.eye(space.size, dtype=np.float32)[self.explore.integers(space.size)]
            return self.explore.uniform(-1, 1, space.size).astype(np.float32)
        obs = self.driver.obs(self.device)
        action, self.driver.state = self.agent.policy(obs, self.driver.state, "train")
        return action[0].cpu().numpy()

    def updates_due(self, prefill: int, pretrain: int, train_every: int) -> int:
        """`pretrain` updates once prefill is over and the replay can cut a window, then one
        every `train_every` agent steps."""
        if self.updates == 0:
            return max(1, pretrain) if self.step >= prefill and self.replay.ready else 0
        return int(due(self.step, train_every))

    def update(self, count: int, stop: StopFlag | None = None) -> None:
        """`count` updates; a stop flag raised meanwhile leaves the rest in `pending`."""
        for done in range(count):
            if stop is not None and stop.signum:
                self.pending = count - done
                return
            with self.clock("replay"):
                batch = {k: torch.as_tensor(v) for k, v in self.replay.sample().items()}
            try:
                with self.clock("update"):
                    metrics = self.agent.update(batch)
            except RuntimeError as e:
                # Non-finite weights can fail inside the update (e.g. sampling from NaN
                # probabilities) before any loss is returned: the same divergence.
                if not _NON_FINITE.search(str(e)):
                    raise
                reason = str(e).splitlines()[0]
                raise Diverged(f"non-finite values at step {self.step}: {reason}") from e
            self.losses.add(check_finite(metrics, self.step))
            self.updates += 1

    def evaluate(self, episodes: int) -> dict[str, float]:
        """Greedy episodes on the evaluation env: the means of their score and return."""
        scores, returns = [], []
        self.evaluator.state = None
        while len(scores) < episodes:
            obs = self.evaluator.obs(self.device)
            action, self.evaluator.state = self.agent.policy(obs, self.evaluator.state, "eval")
            done = self.evaluator.step(action[0].cpu().numpy())
            if done:
                scores.append(done["score"])
                returns.append(done["return"])
        self.evaluator.state = None
        return {"eval_score": float(np.mean(scores)), "eval_return": float(np.mean(returns))}


def probe_image(s: Session, context: int = 5, horizon: int = 10) -> np.ndarray | None:
    """Figure 8's pair for the live view: the newest replay episode's frame `context + horizon`
    beside the probe decoder's view of it after imagining `horizon` steps from `context` true
    ones, uint8 [64, 128, 3]; None before an episode that long is in the replay. Its latent
    samples come from a forked RNG, so the run computes what it would without it."""
    episodes = [e for e in s.replay.episodes.values() if len(e["image"]) >= context + horizon]
    if not episodes:
        return None
    episode = episodes[-1]
    batch = {k: torch.as_tensor(np.asarray(episode[k][:context + horizon]))[None].to(s.device)
             for k in ("image", "action", "is_first")}
    devices = [torch.device(s.device)] if s.device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        truth, recon = s.agent.world_model.open_loop(batch, context=context, horizon=horizon)
    return np.concatenate([truth[0, -1].cpu().numpy(), recon[0, -1].cpu().numpy()], axis=1)


# --- the loop ------------------------------------------------------------------------------------


def train(cfg: Config, run: RunContext) -> None:
    """Train for `cfg.schedule.steps` agent steps, resuming from the run's last checkpoint.

    Raises Interrupted (after a checkpoint) when `run.stop` is set, Diverged on a non-finite loss.
    """
    sched = cfg.schedule
    seed_everything(run.seed)  # before the agent exists: its initial weights come from torch's RNG
    env, eval_env = (envs.make(cfg.env.id, run.seed, cfg.env, run.cache) for _ in range(2))
    space = act_space_of(env.action_space)
    s = Session(
        agent=Agent(cfg, space, runtime=Runtime.of(cfg, run.device, **run.switches)),
        replay=Replay(run.directory / "replay", cfg.replay, cfg.dataset.batch,
                      cfg.dataset.length, run.seed),
        driver=Driver(env, space, run.seed, stream=0),
        evaluator=Driver(eval_env, space, run.seed, stream=1),
        explore=np.random.default_rng(np.random.SeedSequence([run.seed, 0xAC7])),
        device=run.device,
    )
    ckpts = Checkpoints(run.directory / "checkpoints", warn=run.say)
    tracker = Tracker(run.store, run.run_id, cfg.env.action_repeat, run.sinks)
    try:
        _restore(s, ckpts, run)
        speed, score = Speed(s.step, s.updates, _gpu_peak(s.device)), None
        while s.step < sched.steps or s.pending:
            if run.stop.signum:  # a checkpoint cut inside a step records the updates it owes
                _save(s, ckpts, tracker, run)
                raise Interrupted(run.stop.signum, s.step)
            if s.pending:
                # A signal cut this step's updates short: finish the step where it stopped.
                count, s.pending = s.pending, 0
            else:
                with s.clock("act"):
                    action = s.act()
                with s.clock("env"):
                    finished = s.driver.step(action)
                s.step += 1
                if finished:
                    with s.clock("replay"):
                        s.replay.add(finished["episode"], finished["index"])
                    tracker.add(s.step, {"train_score": finished["score"],
                                         "train_return": finished["return"]})
                count = s.updates_due(sched.prefill, sched.pretrain, sched.train_every)
            s.update(count, run.stop)
            if s.pending:
                continue  # stopped between two updates: no evaluation or rows for this step yet
            if due(s.step, sched.eval_every) or s.step == sched.steps:
                with s.clock("eval"):
                    results = s.evaluate(sched.eval_eps)
                tracker.add(s.step, results)
                score = results["eval_score"]
                run.sinks.image(s.step, "probe/imagined_frame", lambda: probe_image(s))
            if due(s.step, sched.log_every):
                with s.clock("save"):
                    tracker.add(s.step, s.losses.pop() | speed.rates(s.step, s.updates)
                                | s.clock.pop())
                    tracker.flush(s.step)
            if due(s.step, sched.checkpoint_every) or s.step == sched.steps:
                with s.clock("save"):
                    _save(s, ckpts, tracker, run)
            run.progress.update(s.step, score)
    except Diverged:
        tracker.flush(s.step)  # the finite rows up to the failure help to diagnose it
        raise
    finally:
        env.close()
        eval_env.close()
        run.sinks.close()


def _gpu_peak(device: str) -> Callable[[], float] | None:
    """What CUDA's allocator has reserved at most so far on a run's GPU, in MiB (None on CPU)."""
    if not device.startswith("cuda"):
        return None
    return lambda: torch.cuda.max_memory_reserved(device) / 2**20


def _restore(s: Session, ckpts: Checkpoints, run: RunContext) -> None:
    """Continue from the last loadable checkpoint, or start afresh; either way drop the metric rows
    and replay episodes that a previous process wrote after that point."""
    latest = ckpts.latest()
    if latest is None:
        s.replay.load_state_dict(s.replay.state_dict())  # an empty index deletes stray episodes
        s.driver.reset()
        s.evaluator.reset()
        run.store.truncate_metrics(run.run_id, -1)
        run.sinks.open(None, [])
        return
    step, state = latest
    s.load_state_dict(state)
    dropped = run.store.truncate_metrics(run.run_id, step)
    run.sinks.open(step, run.store.metric_rows(run.run_id) if run.sinks.sinks else [])
    run.say(f"resumed {run.run_id} at step {step} (dropped {dropped} metric rows after it)")


def _save(s: Session, ckpts: Checkpoints, tracker: Tracker, run: RunContext) -> None:
    tracker.flush(s.step)  # every row of steps <= s.step is in the store before the checkpoint
    path = ckpts.save(s.step, s.state_dict())
    s.replay.on_checkpoint()
    run.store.add_checkpoint(run.run_id, s.step, str(path))
