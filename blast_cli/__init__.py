"""The `blast` command line: a thin Typer layer over blast_core."""
