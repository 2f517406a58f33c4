"""`blast bench`: one update per rung with its FLOPs and the machine's peak (models), and one
whole run and where its time goes (run). Environment steps/s: blast_core.envs.bench."""
