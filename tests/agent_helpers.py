"""Synthetic batches for agent tests: structured frames whose reward depends on the image."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from blast_core.config import Config


def make_batch(cfg: Config, actions: int, discrete: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """[B, T] sequences of a bright square moving over a dark frame; reward = its x position."""
    B, T, size = cfg.dataset.batch, cfg.dataset.length, cfg.env.size
    g = torch.Generator().manual_seed(seed)
    pos = torch.randint(0, size - 16, (B, 2), generator=g)
    image = torch.zeros(B, T, size, size, 3, dtype=torch.uint8)
    reward = torch.zeros(B, T)
    for b in range(B):
        for t in range(T):
            x = int(pos[b, 0] + 2 * t) % (size - 16)
            y = int(pos[b, 1])
            image[b, t, y:y + 16, x:x + 16] = torch.tensor([200, 60, 20], dtype=torch.uint8)
            reward[b, t] = x / size
    if discrete:
        action = F.one_hot(torch.randint(0, actions, (B, T), generator=g), actions).float()
    else:
        action = torch.rand(B, T, actions, generator=g) * 2 - 1
    action[:, 0] = 0
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    batch = {"image": image, "action": action, "reward": reward, "is_first": is_first,
             "is_terminal": torch.zeros(B, T, dtype=torch.bool)}
    # The replay's step format, which Agent.update checks too: fail here, where the batch is made.
    assert all(v.shape[:2] == (B, T) for v in batch.values())
    assert action.shape[-1] == actions and image.dtype == torch.uint8
    return batch
