"""Reports: the paper's figures and the ladder's statistics, regenerated from the run database.

`frames` holds the rules (final score, curve binning) as pure functions of the tidy metrics frame,
`figures` draws each figure from those numbers, `stats` wraps rliable, and `build` reads the store
and writes PNG + PDF + CSV for `blast report`.
"""

LAST = 3
"""The default final score: the mean of each run's last LAST evaluations (ReportOptions.last).
Here, outside `build`, so that `blast --help` need not import matplotlib and pandas to show it."""
