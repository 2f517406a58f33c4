"""User-facing errors: each carries a one-line message that the CLI prints without a traceback."""


class BlastError(Exception):
    """Bad input or a state the user must fix (a missing file, an unknown id)."""


class ConfigError(BlastError, ValueError):
    """A bad env id, rung, preset, key or value. Its message is one line, meant for the user."""


class DiskFull(BlastError):
    """No space left where a run, the results or the database are written. What was being
    written is dropped whole; what was written before (the last good checkpoint) stays."""
