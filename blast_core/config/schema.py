"""Typed, frozen configuration: defaults (DreamerV2), env-family presets, and the BLAST ladder.

A config is resolved in this order, each step a small named delta on the one before:

    Config() (DreamerV2 defaults, spec §2.7)
      -> FAMILY[family]          paper values for MiniGrid or DMC (paper A.2 + spec §3.1)
      -> PRESETS[preset]         sizes: `paper` (none), `cpu` (~1 h on 2 cores), `tiny`
      -> RUNGS[r] for r in the ladder up to the requested rung (cumulative)
      -> --set key=value overrides

Every BLAST switch defaults to off, so `Config()` with the DV2 rung is DreamerV2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from blast_core.config import tree as T
from blast_core.config.ids import ENV_IDS, VARIANTS
from blast_core.config.tree import Delta, apply
from blast_core.errors import ConfigError

Norm = Literal["none", "batch"]


@dataclass(frozen=True)
class EnvConfig:
    id: str = "minigrid:unmodified"
    """Environment id: `minigrid:VARIANT` or `dmc:DOMAIN_TASK`."""
    action_repeat: int = 1
    """Agent steps repeat each action this many times; rewards are summed (DMC: 2)."""
    size: int = 64
    """Observation side in pixels; observations are (size, size, 3) uint8."""
    time_limit: int = 100
    """Agent steps per episode (MiniGrid: the paper's fixed horizon; DMC: 1000 frames / repeat)."""
    video: str = ""
    """Background video file for MiniGrid's video variants; empty means the procedural video."""
    matting: Literal["pixel", "channel"] = "pixel"
    """Background mask: pixels black in all channels, or the official code's per-channel quirk."""
    shadows: bool = True
    """DMC: render shadows, as standard DMC images do; false is a non-standard ~2x faster render."""

    @property
    def family(self) -> str:
        return self.id.split(":", 1)[0]


@dataclass(frozen=True)
class EncoderConfig:
    depth: int = 48
    """Channels of the first convolution; each of the next doubles it."""
    kernels: tuple[int, ...] = (4, 4, 4, 4)
    """Kernel size of each stride-2 'valid' convolution."""
    norm: Norm = "none"
    """Normalisation after each convolution, before ELU (+BN sets `batch`)."""


@dataclass(frozen=True)
class DecoderConfig:
    depth: int = 48
    """Channels of the last transposed convolution; earlier ones double it."""
    kernels: tuple[int, ...] = (5, 5, 6, 6)
    """Kernel size of each stride-2 transposed convolution."""
    probe_fraction: float = 0.25
    """Share of the batch's sequences the decoder trains on when it is only a probe (−recon
    onwards, where it reads stop-gradient features and has its own optimiser, so the agent is
    the same whatever this is). 1 trains it on the whole batch, as the BLAST code does."""

    def __post_init__(self) -> None:
        if not 0.0 < self.probe_fraction <= 1.0:
            raise ConfigError(f"decoder.probe_fraction={self.probe_fraction} must lie in (0, 1]")


@dataclass(frozen=True)
class RSSMConfig:
    hidden: int = 1024
    """Units of the RSSM's hidden dense layers."""
    deter: int = 1024
    """Size of the deterministic state h (the LayerNorm GRU)."""
    stoch: int = 32
    """Number of categorical latent variables in z."""
    discrete: int = 32
    """Classes per categorical latent variable."""
    ar_steps: int = 1
    """Groups the prior samples one after another (+AR); 1 is DreamerV2's independent prior."""
    ar_net: Literal["gru", "made"] = "gru"
    """The AR prior's network: `gru`, BLAST's second GRU stepping over the groups (the paper);
    `made`, a masked MLP over [h, z] with the same factorisation at about one pass per imagined
    step (not the paper's network; blast_core/agent/made.py). Read only when ar_steps > 1."""
    ar_hidden: int = 0
    """Units of each of made's two hidden layers; 0 takes `hidden`. Read only with ar_net made."""
    ar_direct: bool = False
    """made's direct connections: a masked linear map from the groups before i to group i's
    logits, beside the hidden layers (MADE's direct input-output connections). Read only with
    ar_net made."""
    ar_h_share: float = 0.5
    """Share of made's hidden units of degree 0 (they see h only, and are all that the first
    group reads); the rest are spread over degrees 1..ar_steps-1, and only degree i carries
    z_{i-1} to group i (a degree left with no units cuts that link unless ar_direct). Read only
    with ar_net made."""
    obs_out_norm: Norm = "none"
    """Normalisation of the posterior's hidden layer, per time step (+BN sets `batch`)."""

    @property
    def feat(self) -> int:
        """Size of feat = concat(z flattened, h)."""
        return self.stoch * self.discrete + self.deter

    @property
    def ar_h_units(self) -> int:
        """made's units of degree 0 in each hidden layer: ar_h_share of them, rounded up."""
        return math.ceil((self.ar_hidden or self.hidden) * self.ar_h_share - 1e-9)

    @property
    def latent(self) -> tuple[int, int]:
        """(stoch, discrete): the shape of z, whose flattened one-hot groups open feat."""
        return self.stoch, self.discrete

    def __post_init__(self) -> None:
        if self.ar_hidden < 0:
            raise ConfigError(f"rssm.ar_hidden={self.ar_hidden} must be >= 0 (0: rssm.hidden)")
        if not 0 < self.ar_h_share < 1:
            raise ConfigError(f"rssm.ar_h_share={self.ar_h_share} must be in (0, 1)")
        if self.ar_steps < 1 or self.stoch % self.ar_steps:
            raise ConfigError(
                f"rssm.ar_steps={self.ar_steps} must be >= 1 and divide rssm.stoch={self.stoch}"
            )


@dataclass(frozen=True)
class MLPConfig:
    layers: int = 4
    """Hidden layers."""
    units: int = 400
    """Units per hidden layer."""


@dataclass(frozen=True)
class ActorConfig:
    layers: int = 4
    """Hidden layers."""
    units: int = 400
    """Units per hidden layer."""
    dist: Literal["auto", "onehot", "trunc_normal"] = "auto"
    """Action distribution; auto: onehot for discrete actions, trunc_normal for continuous."""
    grad: Literal["auto", "reinforce", "dynamics", "both"] = "auto"
    """Actor gradient; auto: reinforce for discrete actions, dynamics for continuous."""
    grad_mix: float = 0.1
    """Weight of the dynamics term when grad is `both`."""
    ent: float = 2e-3
    """Entropy bonus scale (eta)."""
    min_std: float = 0.1
    """Lower bound of the truncated normal's scale."""
    init_std: float = 0.0
    """Offset of the scale's pre-activation."""


@dataclass(frozen=True)
class CriticConfig:
    layers: int = 4
    """Hidden layers."""
    units: int = 400
    """Units per hidden layer."""
    slow_update: int = 100
    """Copy the critic into the slow critic every this many updates (update 0 included)."""
    slow_fraction: float = 1.0
    """Fraction mixed in at each copy (1.0: a hard copy)."""


@dataclass(frozen=True)
class OptConfig:
    lr: float = 1e-4
    """Adam learning rate."""
    eps: float = 1e-5
    """Adam epsilon."""
    clip: float = 100.0
    """Global gradient-norm clip of this optimiser's parameters."""
    wd: float = 1e-6
    """Decoupled weight decay: every parameter is scaled by (1 - wd) before each step."""


@dataclass(frozen=True)
class KLConfig:
    balance: float = 0.8
    """alpha: weight of KL(sg(post) || prior); 1 - alpha trains the posterior (+SG sets 1.0)."""
    free: float = 0.0
    """Free nats: each KL term is clamped below at this value."""
    free_avg: bool = True
    """Clamp after averaging over batch and time (DreamerV2) rather than per element."""


@dataclass(frozen=True)
class LossScales:
    kl: float = 1.0
    """Scale of the KL loss."""
    reward: float = 1.0
    """Scale of the reward head's negative log-likelihood."""
    discount: float = 1.0
    """Scale of the discount head's negative log-likelihood."""
    image: float = 1.0
    """Scale of the decoder's negative log-likelihood."""


@dataclass(frozen=True)
class TargetConfig:
    use: bool = False
    """Use a target encoder whose posterior is the KL target (+EMA)."""
    ema: float = 1.0
    """tau: target <- tau * target + (1 - tau) * online after each model step (+EMA: 0.99)."""
    input_p: float = 0.0
    """Fraction of the batch (its last sequences) whose posterior chain uses the target encoder."""


@dataclass(frozen=True)
class ReplayConfig:
    capacity: int = 2_000_000
    """Steps kept on disk; the oldest episodes are dropped first."""
    minlen: int = 50
    """Episodes shorter than this are not stored."""
    prioritize_ends: bool = True
    """Oversample windows that end at the episode's end (DreamerV2's MiniGrid default)."""
    mmap: bool = False
    """Read stored frames from the episode files, memory-mapped, instead of holding them in the
    run's memory: episodes are written uncompressed (~12 KiB per 64x64 step on disk; ~11.5 GiB
    for a paper DMC run) and the kernel's page cache keeps what sampling reads, reclaimable
    under memory pressure. For packing many DMC runs on one machine."""


@dataclass(frozen=True)
class DatasetConfig:
    batch: int = 16
    """Sequences per batch (B)."""
    length: int = 50
    """Steps per sequence (T)."""


@dataclass(frozen=True)
class ScheduleConfig:
    steps: int = 100_000_000
    """Agent steps of the run, prefill included."""
    prefill: int = 10_000
    """Agent steps with a uniform random policy before training."""
    pretrain: int = 1
    """Updates right after prefill."""
    train_every: int = 5
    """One update every this many agent steps."""
    eval_every: int = 100_000
    """Agent steps between greedy evaluations."""
    eval_eps: int = 1
    """Episodes per evaluation."""
    log_every: int = 1_000
    """Agent steps between training-metric rows."""
    checkpoint_every: int = 10_000
    """Agent steps between checkpoints."""


@dataclass(frozen=True)
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    """The environment."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """The convolutional image encoder."""
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    """The image decoder (a stop-gradient probe when `decoder` is not in grad_heads)."""
    rssm: RSSMConfig = field(default_factory=RSSMConfig)
    """The recurrent state-space model."""
    heads: MLPConfig = field(default_factory=MLPConfig)
    """The reward and discount heads."""
    actor: ActorConfig = field(default_factory=ActorConfig)
    """The policy."""
    critic: CriticConfig = field(default_factory=CriticConfig)
    """The value function."""
    model_opt: OptConfig = field(default_factory=lambda: OptConfig(lr=1e-4))
    """World-model optimiser (also used, as a separate instance, by the probe decoder)."""
    actor_opt: OptConfig = field(default_factory=lambda: OptConfig(lr=8e-5))
    """Actor optimiser."""
    critic_opt: OptConfig = field(default_factory=lambda: OptConfig(lr=2e-4))
    """Critic optimiser."""
    kl: KLConfig = field(default_factory=KLConfig)
    """KL balancing and free nats."""
    loss_scales: LossScales = field(default_factory=LossScales)
    """Weights of the world-model loss terms."""
    grad_heads: tuple[str, ...] = ("decoder", "reward", "discount")
    """Heads whose loss reaches encoder and RSSM; the others train on stop-gradient features."""
    pred_discount: bool = True
    """Learn a discount head; without it imagination uses the constant `discount`."""
    clip_rewards: Literal["tanh", "identity"] = "tanh"
    """Transform of rewards before the reward head is trained on them."""
    target: TargetConfig = field(default_factory=TargetConfig)
    """The EMA target encoder (+EMA)."""
    imag_horizon: int = 15
    """H: imagined steps per start state."""
    discount: float = 0.99
    """gamma."""
    discount_lambda: float = 0.95
    """lambda of the lambda-return."""
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    """The on-disk episode replay."""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """Training batches."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """When to act, train, evaluate and checkpoint."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Arithmetic of updates and acting. bf16: matmuls and convolutions under bf16 autocast;
    the recurrent state, norms, distributions, KL, losses and weights stay fp32."""
    cuda_graphs: bool = True
    """On a GPU in fp32, replay the world-model step (forward, backward, clip, Adam, EMA) and
    the imagination rollout of REINFORCE actors (no gradients through it) as CUDA graphs: the
    same kernels with one launch each (blast_core/agent/graphs.py; 1.6-4.7x faster updates on an
    H100, docs/benchmarks.md). Ignored on CPU and under bf16; the samples differ from eager
    ones, not their law. false: every kernel launched from Python, as in eager PyTorch."""

    def __post_init__(self) -> None:
        unknown = set(self.grad_heads) - {"decoder", "reward", "discount"}
        if unknown:
            raise ConfigError(f"grad_heads: unknown head(s) {sorted(unknown)}")
        if not 0.0 <= self.target.input_p <= 1.0:
            raise ConfigError(f"target.input_p={self.target.input_p} must lie in [0, 1]")
        if not 0.0 <= self.kl.balance <= 1.0:
            raise ConfigError(f"kl.balance={self.kl.balance} must lie in [0, 1]")


# --- deltas --------------------------------------------------------------------------------------

EXECUTION_KEYS = frozenset({"cuda_graphs", "replay.mmap"})
"""Keys that choose how a run executes, not what it computes. A run started with other values
(by an older blast, with other defaults) goes on with its own; any other key that differs from
the run's stored config makes `blast run` refuse to mix the two (blast_core/run/spec.py)."""

FAMILIES = ("minigrid", "dmc")

FAMILY: dict[str, Delta] = {
    # Paper A.2 "Gym-MiniGrid" plus the official code's minigrid-repeat block (spec §3.1).
    "minigrid": {
        "env.action_repeat": 1,
        "env.time_limit": 100,
        "schedule.steps": 50_000,
        "schedule.prefill": 10_000,
        "schedule.train_every": 1,
        "schedule.eval_every": 2_500,
        "schedule.eval_eps": 5,
        "schedule.log_every": 500,
        "schedule.checkpoint_every": 2_500,
        "pred_discount": False,
        "grad_heads": ("decoder", "reward"),
        "rssm.hidden": 600,
        "rssm.deter": 600,
        "rssm.stoch": 16,
        "rssm.discrete": 64,
        "actor.dist": "onehot",
        "actor.grad": "reinforce",
        "actor.grad_mix": 0.0,
        "actor.ent": 0.1,
        "model_opt.lr": 4e-4,
        "actor_opt.lr": 8e-5,
        "critic_opt.lr": 1e-4,
        "discount": 0.99,
        "loss_scales.kl": 0.1,
        "loss_scales.reward": 100.0,
        "clip_rewards": "tanh",
    },
    # Paper A.2 "DMC" plus DreamerV2's dmc_vision block (spec §2.7, §5).
    "dmc": {
        "env.action_repeat": 2,
        "env.time_limit": 500,
        "schedule.steps": 1_000_000,
        "schedule.prefill": 1_000,
        "schedule.pretrain": 100,
        "schedule.train_every": 5,
        "schedule.eval_every": 10_000,
        "schedule.eval_eps": 1,
        "schedule.log_every": 1_000,
        "schedule.checkpoint_every": 10_000,
        "pred_discount": False,
        "grad_heads": ("decoder", "reward"),
        "rssm.hidden": 200,
        "rssm.deter": 200,
        "rssm.stoch": 8,
        "rssm.discrete": 64,
        "actor.dist": "trunc_normal",
        "actor.grad": "dynamics",
        "actor.ent": 1e-4,
        "model_opt.lr": 3e-4,
        "actor_opt.lr": 8e-5,
        "critic_opt.lr": 8e-5,
        "kl.free": 1.0,
        "clip_rewards": "identity",
        "replay.prioritize_ends": False,
    },
}

PRESETS: dict[str, Delta] = {
    "paper": {},
    # Reduced until a MiniGrid run fits about 45 minutes on one CPU core (docs/results.md documents
    # each cut): a 3x narrower CNN, a 10x smaller RSSM and heads, and 8 x 16 batches. MiniGrid's
    # further changes are in PRESET_FAMILY.
    "cpu": {
        "encoder.depth": 16,
        "decoder.depth": 16,
        "rssm.hidden": 64,
        "rssm.deter": 64,
        "rssm.stoch": 8,
        "rssm.discrete": 8,
        "heads.units": 128,
        "heads.layers": 2,
        "actor.units": 128,
        "actor.layers": 2,
        "critic.units": 128,
        "critic.layers": 2,
        "dataset.batch": 8,
        "dataset.length": 16,
        "replay.minlen": 16,
        "schedule.steps": 50_000,
        "schedule.prefill": 2_500,
        "schedule.train_every": 5,
    },
    # Every size shrunk so one update takes milliseconds: tests and demos.
    "tiny": {
        "env.time_limit": 100,  # DMC's 500-step episodes would not end within a tiny run
        "encoder.depth": 4,
        "decoder.depth": 4,
        "rssm.hidden": 16,
        "rssm.deter": 16,
        "rssm.stoch": 4,
        "rssm.discrete": 4,
        "heads.units": 16,
        "heads.layers": 1,
        "actor.units": 16,
        "actor.layers": 1,
        "critic.units": 16,
        "critic.layers": 1,
        "critic.slow_update": 4,
        "imag_horizon": 4,
        "dataset.batch": 4,
        "dataset.length": 8,
        "replay.minlen": 8,
        "replay.capacity": 100_000,
        "schedule.steps": 400,
        "schedule.prefill": 200,
        "schedule.pretrain": 1,
        "schedule.train_every": 10,
        "schedule.eval_every": 200,
        "schedule.eval_eps": 1,
        "schedule.log_every": 50,
        "schedule.checkpoint_every": 100,
    },
}


# What a preset changes in one family only, applied after the preset (docs/results.md: on
# MiniGrid, DreamerV2 learns at `cpu` sizes only with these).
PRESET_FAMILY: dict[tuple[str, str], Delta] = {
    ("cpu", "minigrid"): {
        # The paper's prefill: 4x more goal transitions in replay when training starts.
        "schedule.prefill": 10_000,
        # World-model updates on the prefill before the first policy step (DreamerV2's option).
        "schedule.pretrain": 1_000,
        # 16 x 32 latents: 8 x 8 left the reward head unable to tell a goal from a collision.
        "rssm.stoch": 16,
        "rssm.discrete": 32,
        # DreamerV2's default KL scale, 10x the paper's MiniGrid 0.1: with these small networks
        # 0.1 left the independent prior near uniform (KL 20+ nats), imagination noise.
        "loss_scales.kl": 1.0,
        # One update every 2 agent steps, not 5: with 5, dv2 stayed near the safe policy (+0.76
        # over 3 seeds at 50k); with 2 it learns (+3.98 over 3 seeds at 35k).
        "schedule.train_every": 2,
        # 35k agent steps (13,500 updates): a dv2 run in about 45 minutes on one core.
        "schedule.steps": 35_000,
    },
}


@dataclass(frozen=True)
class Rung:
    id: str
    label: str
    """The paper's label."""
    delta: Delta


# The ladder (spec §3.1), cumulative: each rung adds its delta to every rung before it.
LADDER: tuple[Rung, ...] = (
    Rung("dv2", "DV2", {}),
    Rung("no_recon", "−recon", {"grad_heads": lambda c: tuple(h for h in c.grad_heads
                                                               if h != "decoder")}),
    Rung("stop_grad", "+SG", {"kl.balance": 1.0}),
    Rung("target", "+EMA", {"target.use": True, "target.ema": 0.99, "target.input_p": 0.5}),
    Rung("bn", "+BN", {"encoder.norm": "batch", "rssm.obs_out_norm": "batch"}),
    Rung("ar_prior", "+AR", {"rssm.ar_steps": lambda c: c.rssm.stoch}),
)
# Appendix A.3: BLAST learning from latent prediction alone (no reward or discount gradient).
LATENT_ONLY = Rung("latent_only", "latent only", {"grad_heads": ()})

RUNGS: dict[str, Rung] = {r.id: r for r in (*LADDER, LATENT_ONLY)}
RUNG_IDS: tuple[str, ...] = tuple(RUNGS)
LADDER_IDS: tuple[str, ...] = tuple(r.id for r in LADDER)


def rung_chain(rung: str) -> list[Rung]:
    """The rungs whose deltas make up `rung`, in order."""
    if rung not in RUNGS:
        raise ConfigError(f"unknown rung {rung!r}; valid: {', '.join(RUNG_IDS)}")
    if rung == LATENT_ONLY.id:
        return [*LADDER, LATENT_ONLY]
    return list(LADDER[: LADDER_IDS.index(rung) + 1])


# --- resolving --------------------------------------------------------------------------------


def family_of(env_id: str) -> str:
    """The env family of an id; MiniGrid variants are checked here, DMC tasks when made."""
    family, sep, name = env_id.partition(":")
    valid = f"valid: {', '.join(ENV_IDS)}, or dmc:DOMAIN_TASK for any dm_control suite task"
    if not sep or family not in FAMILIES or not name:
        raise ConfigError(f"bad env id {env_id!r}; {valid}")
    if family == "minigrid" and name not in VARIANTS:
        raise ConfigError(f"unknown MiniGrid variant {name!r}; {valid}")
    return family


# Ranges of the numeric fields, checked on the resolved config (after presets, rungs and --set):
# a value out of range is a one-line error naming its key, not a torch error deep in the model.
# (low, high, low_open, high_open); None: unbounded on that side.
_Range = tuple[float | None, float | None, bool, bool]
_POSITIVE: _Range = (0, None, True, False)
_NON_NEGATIVE: _Range = (0, None, False, False)
_UNIT: _Range = (0, 1, False, False)
_UNIT_OPEN_LOW: _Range = (0, 1, True, False)
RANGES: dict[str, _Range] = {
    **{k: _POSITIVE for k in (
        "env.action_repeat", "env.size", "env.time_limit", "encoder.depth", "decoder.depth",
        "rssm.hidden", "rssm.deter", "rssm.stoch", "rssm.discrete", "heads.units",
        "actor.units", "critic.units", "critic.slow_update", "imag_horizon",
        "replay.capacity", "replay.minlen", "dataset.batch", "dataset.length", "schedule.steps",
        "schedule.train_every", "schedule.eval_every", "schedule.log_every",
        "schedule.checkpoint_every", "model_opt.lr", "actor_opt.lr", "critic_opt.lr",
        "model_opt.eps", "actor_opt.eps", "critic_opt.eps", "model_opt.clip",
        "actor_opt.clip", "critic_opt.clip")},
    **{k: _NON_NEGATIVE for k in (
        "heads.layers", "actor.layers", "critic.layers", "actor.ent", "actor.min_std",
        "kl.free", "loss_scales.kl", "loss_scales.reward", "loss_scales.discount",
        "loss_scales.image", "schedule.prefill", "schedule.pretrain", "schedule.eval_eps")},
    **{k: _UNIT for k in ("model_opt.wd", "actor_opt.wd", "critic_opt.wd", "target.ema",
                          "discount_lambda", "actor.grad_mix")},
    **{k: _UNIT_OPEN_LOW for k in ("discount", "critic.slow_fraction")},
}


def check_ranges(cfg: Config) -> None:
    """ConfigError for the first field of `cfg` outside its range in `RANGES`, and for kernel
    lists that are empty or hold a size below 1."""
    flat = T.flatten(T.to_dict(cfg))
    for key, (low, high, low_open, high_open) in RANGES.items():
        value = flat[key]
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if below or above:
            if high is None:
                rule = f"be {'>' if low_open else '>='} {low}"
            else:
                rule = f"lie in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
            raise ConfigError(f"{key}={value} is out of range: it must {rule}")
    for key in ("encoder.kernels", "decoder.kernels"):
        if not flat[key] or min(flat[key]) < 1:
            raise ConfigError(f"{key}={list(flat[key])}: give one kernel size >= 1 per layer")


def make_config(
    env_id: str,
    rung: str = "dv2",
    preset: str = "paper",
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Resolve the config of one run. Raises ConfigError with a one-line message on bad input."""
    family = family_of(env_id)
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    overrides = dict(overrides or {})
    try:
        cfg = apply(Config(env=EnvConfig(id=env_id)), FAMILY[family])
        cfg = apply(cfg, PRESETS[preset])
        cfg = apply(cfg, PRESET_FAMILY.get((preset, family), {}))
        # Overrides go in before the rungs too, so that a rung's derived values (ar_steps = stoch)
        # follow an overridden size, and again after, so that an override always wins.
        cfg = apply(cfg, overrides)
        for r in rung_chain(rung):
            cfg = apply(cfg, r.delta)
        cfg = apply(cfg, overrides)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(str(e).splitlines()[0]) from None
    check_ranges(cfg)
    if family == "dmc" and cfg.env.video:
        raise ConfigError(f"env.video={cfg.env.video!r}: video backgrounds are MiniGrid's "
                          f"(minigrid:video); {env_id} has none")
    return cfg
