"""One training run: its identity, directory and start or resume (spec), the training loop and
its evaluations (loop), the replay buffer (replay) and checkpoints (checkpoint)."""
