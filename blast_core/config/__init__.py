"""The typed config: frozen nested dataclasses (schema), presets, the ladder's rungs, `--set`
parsing (tree) and the environment ids (ids). Imports neither torch nor the environments."""

from blast_core.config.schema import *  # noqa: F403
