"""blast: the BLAST ablation ladder on DreamerV2 — agent, environments, runs and reports."""
