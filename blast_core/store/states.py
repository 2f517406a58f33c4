"""The states a run can be in: the contract between the runs, the scheduler and the CLI.

Apart from the tables so that code which only reasons about states (the scheduler's plan, the
CLI's status colours) need not import SQLAlchemy.
"""

STATUSES = ("queued", "running", "done", "failed", "crashed", "interrupted", "cancelled")
"""Every state a run can be in."""
ACTIVE = ("queued", "running")
"""States of a run that is waiting for or holding a process."""
RESUMABLE = ("crashed", "failed", "interrupted")
"""States that `blast resume --all` restarts from the last checkpoint."""
