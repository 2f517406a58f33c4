"""The algorithm alone: DreamerV2 and the BLAST ladder's changes to it.

nets, dists and losses are the building blocks; rssm (with made, the masked AR network) the
latent dynamics; world_model and behavior (the actor-critic) the two learners; agent puts them
together. perf and graphs choose how an update executes (fast path, CUDA graphs), never what it
computes. Nothing here imports the harness (runs, envs, store, scheduling).
"""

from blast_core.agent.agent import ActSpace, Agent

__all__ = ["ActSpace", "Agent"]
