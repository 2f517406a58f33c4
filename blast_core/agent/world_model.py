"""The world model: encoder, RSSM, reward and discount heads, decoder, and BLAST's target encoder.

With every BLAST switch off this is DreamerV2's world model. The switches (config):
  grad_heads without `decoder`  −recon: the decoder becomes a probe on stop-gradient features with
                                its own optimiser, outside the model's gradient clip, trained on
                                `decoder.probe_fraction` of the batch's sequences
  kl.balance = 1                +SG: no KL gradient reaches the posterior
  target.use                    +EMA: an EMA copy of the encoder gives the KL target; the last
                                input_p of the batch also filters with it (spec §3.4)
  encoder.norm, obs_out_norm    +BN
  rssm.ar_steps > 1             +AR: teacher-forced with the (target) posterior's samples
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from blast_core.agent import graphs
from blast_core.agent.dists import OneHot, bernoulli_log_prob, normal_nll
from blast_core.agent.losses import kl_loss
from blast_core.agent.nets import MLP, Decoder, Encoder, preprocess
from blast_core.agent.optim import Optimizer
from blast_core.agent.perf import autocast
from blast_core.agent.rssm import RSSM, State
from blast_core.agent.runtime import Runtime
from blast_core.config import Config


class WorldModel(nn.Module):
    def __init__(self, cfg: Config, actions: int, runtime: Runtime | None = None):
        super().__init__()
        self.cfg = cfg
        self.runtime = runtime or Runtime.of(cfg)
        self.encoder = Encoder(cfg.encoder, cfg.env.size)
        self.target_encoder = None
        if cfg.target.use:
            # The project's decision (spec §7.3): the target starts as a copy of the online encoder.
            self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.rssm = RSSM(cfg.rssm, self.encoder.out, actions)
        feat, heads = cfg.rssm.feat, cfg.heads
        onehot = cfg.rssm.latent
        self.heads = nn.ModuleDict({"reward": MLP(feat, 1, heads.layers, heads.units, onehot)})
        if cfg.pred_discount:
            self.heads["discount"] = MLP(feat, 1, heads.layers, heads.units, onehot)
        self.decoder = Decoder(cfg.decoder, feat, onehot=onehot)
        self.probe = "decoder" not in cfg.grad_heads
        model = [*self.encoder.parameters(), *self.rssm.parameters(), *self.heads.parameters()]
        if not self.probe:
            model += list(self.decoder.parameters())
        self.opt = Optimizer("model", model, cfg.model_opt)
        self.probe_opt = Optimizer("probe", self.decoder.parameters(), cfg.model_opt) \
            if self.probe else None
        self.graphed_step: graphs.Graphed | None = None

    def observe(self, data: dict[str, Tensor]) -> tuple[State, State, Tensor]:
        """Posterior chains. Returns (post for the heads, KL target, image in [-0.5, 0.5])."""
        image = preprocess(data["image"])
        action, is_first = data["action"], data["is_first"]
        embed = self.encoder(image)
        if self.target_encoder is None:
            post = self.rssm.observe(embed, action, is_first)
            return post, post, image
        with torch.no_grad():
            embed_tgt = self.target_encoder(image)
        # Two chains through the same RSSM layers (so BatchNorm statistics stay per chain); the
        # first (1 − input_p) of the sequences use the online chain, the rest the target chain.
        post_tgt = self.rssm.observe(embed_tgt, action, is_first)
        post_on = self.rssm.observe(embed, action, is_first)
        n_on = int(embed.shape[0] * (1 - self.cfg.target.input_p))
        post = {k: torch.cat([post_on[k][:n_on], post_tgt[k][n_on:]], 0) for k in post_on}
        return post, {k: v.detach() for k, v in post_tgt.items()}, image

    def loss(self, data: dict[str, Tensor]) -> tuple[Tensor, Tensor, State, dict[str, Tensor]]:
        """(model loss, probe loss, imagination starts [B, T, ...], metrics). Spec §2.4, §3.4."""
        cfg = self.cfg
        post, target, image = self.observe(data)
        # The prior needs only h_t, so it runs once over all B·T positions; the AR prior is
        # teacher-forced with the KL target's samples (the same z the KL compares against).
        teacher = target["stoch"].detach() if cfg.rssm.ar_steps > 1 else None
        prior_logits, _ = self.rssm.prior(post["deter"], teacher)
        kl, kl_value = kl_loss(target["logits"], prior_logits, cfg.kl.balance, cfg.kl.free,
                               cfg.kl.free_avg)
        feat = self.rssm.feat(post)

        def inp(head: str) -> Tensor:
            return feat if head in cfg.grad_heads else feat.detach()

        losses = {"kl": kl}
        reward = self.heads["reward"](inp("reward")).squeeze(-1)
        losses["reward"] = normal_nll(reward, clip_reward(data["reward"], cfg), 0).mean()
        if cfg.pred_discount:
            logits = self.heads["discount"](inp("discount")).squeeze(-1)
            target_disc = (1 - data["is_terminal"].float()) * cfg.discount
            losses["discount"] = -bernoulli_log_prob(logits, target_disc).mean()
        if self.probe:
            # The probe learns from the first sequences only: they are a random draw from
            # replay, and nothing else reads the decoder, so only the probe's own noise changes.
            n = max(1, round(cfg.decoder.probe_fraction * image.shape[0]))
            image_loss = normal_nll(self.decoder(feat[:n].detach()), image[:n], 3).mean()
            probe_loss = image_loss
        else:
            image_loss = normal_nll(self.decoder(inp("decoder")), image, 3).mean()
            probe_loss = torch.zeros(())
            losses["image"] = image_loss
        scales = vars(cfg.loss_scales)
        model_loss = sum(scales[k] * v for k, v in losses.items())
        metrics = {f"{k}_loss": v.detach() for k, v in losses.items() if k != "kl"}
        metrics.update(
            model_loss=model_loss.detach(), kl=kl_value.mean().detach(),
            image_loss=image_loss.detach(),
            prior_ent=OneHot(prior_logits.detach(), dims=1).entropy().mean(),
            post_ent=OneHot(post["logits"].detach(), dims=1).entropy().mean(),
        )
        start = target if self.target_encoder is not None else post
        return model_loss, probe_loss, {k: v.detach() for k, v in start.items()}, metrics

    def train_step(self, data: dict[str, Tensor]) -> tuple[State, dict[str, Tensor]]:
        """One step of the model (and probe) optimiser and the target's EMA; returns the
        imagination starts and the step's metrics. With `cuda_graphs` on a GPU in fp32, the
        whole step (forward, backward, clip, Adam, EMA) is a replayed CUDA graph."""
        self.train()  # here, not in the graph: a replay runs no Python
        if not self.runtime.graphs(data["image"]):
            return self._step(data)
        if self.graphed_step is None:
            for opt in (self.opt, self.probe_opt):
                if opt is not None:
                    opt.capturable()
            self.graphed_step = graphs.Graphed(self._step)
        return self.graphed_step(data)

    def _step(self, data: dict[str, Tensor]) -> tuple[State, dict[str, Tensor]]:
        with autocast(self.cfg.precision, data["image"].device):
            model_loss, probe_loss, start, metrics = self.loss(data)
        self.opt.zero_grad()
        if self.probe_opt:
            self.probe_opt.zero_grad()
        # The probe's loss reaches only the decoder (its input is detached), so one backward
        # pass serves both optimisers.
        (model_loss + probe_loss).backward()
        metrics.update(self.opt.step())
        if self.probe_opt:
            metrics.update(self.probe_opt.step())
        self.update_target()
        return start, metrics

    @torch.no_grad()
    def update_target(self) -> None:
        """target <- tau · target + (1 − tau) · online, parameters only: BatchNorm running
        statistics are the target's own (spec §3.4)."""
        if self.target_encoder is None:
            return
        tau = self.cfg.target.ema
        torch._foreach_lerp_(list(self.target_encoder.parameters()),
                             list(self.encoder.parameters()), 1 - tau)

    def acting_encoder(self) -> Encoder:
        return self.target_encoder if self.target_encoder is not None else self.encoder

    def filtered(self, image: Tensor, action: Tensor, is_first: Tensor) -> State:
        """The posterior states of [B, T] frames (uint8) as acting filters them: through the
        acting encoder, and in whatever mode the caller put the model (eval for BatchNorm's
        running statistics)."""
        return self.rssm.observe(self.acting_encoder()(preprocess(image)), action, is_first)

    @torch.no_grad()
    def open_loop(self, data: dict[str, Tensor], context: int = 5, horizon: int = 10,
                  sample: bool = True, seen: bool = False) -> tuple[Tensor, Tensor]:
        """The probe decoder's view of an imagined rollout: filter `context` frames, then imagine
        `horizon` steps with the replayed actions, each latent sampled (as imagination in training
        draws them) or, with `sample=False`, its most likely class. Returns (truth, recon), uint8
        [B, H, h, w, 3]; with `seen`, H + 1 frames whose first is the last filtered one (decoded
        from its posterior: what the latent holds of a frame it has seen)."""
        was_training = self.training
        self.eval()
        try:
            post = self.filtered(*(data[k][:, :context] for k in ("image", "action", "is_first")))
            state = {k: v[:, -1] for k, v in post.items()}
            feats = [self.rssm.feat(state)] if seen else []
            for t in range(context, context + horizon):
                state = self.rssm.img_step(state, data["action"][:, t], sample=sample)
                feats.append(self.rssm.feat(state))
            recon = self.decoder(torch.stack(feats, 1))
        finally:
            self.train(was_training)
        recon = ((recon + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).movedim(-3, -1)
        return data["image"][:, context - int(seen):context + horizon], recon


def clip_reward(reward: Tensor, cfg: Config) -> Tensor:
    return torch.tanh(reward) if cfg.clip_rewards == "tanh" else reward
